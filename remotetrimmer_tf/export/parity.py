"""The parity check shared by every export format (``export.formats``).

An exported artifact is run on check inputs by its own runtime and compared
with the Keras model: within ``atol``, or -- for a model that amplifies
float32 rounding -- no further from the model's float64 outputs than Keras'
own float32 outputs are (``litert.rounding_check``, the rule the LiteRT
export already applies). Otherwise :class:`~remotetrimmer_tf.export.litert.ParityError`.

Example:
    >>> import keras, numpy as np
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> x = np.ones((4, 3), "float32")
    >>> compare(m, x, np.asarray(m(x)), atol=1e-5, label="copy")["max_abs_diff"]
    0.0
"""

from __future__ import annotations

import numpy as np

from remotetrimmer_tf.export.litert import ParityError, rounding_check, top1_agreement

__all__ = ["compare", "keras_outputs"]


def keras_outputs(model, x, batch_size=64):
    """``model``'s float32 outputs on ``x`` (inference mode, in batches)."""
    outs = []
    for start in range(0, len(x), batch_size):
        y = model(x[start:start + batch_size], training=False)
        outs.append(np.asarray(y, dtype=np.float32))
    return np.concatenate(outs, axis=0)


def compare(model, x, got, *, atol, label, ref=None):
    """Compare ``got`` (an artifact's outputs on ``x``) with ``model``.

    Args:
        model: the Keras model.
        x: the check inputs (float32 array).
        got: the artifact's outputs on ``x``.
        atol: allowed max abs difference (then the float64 rounding rule).
        label: what is compared, for the error (``"ONNX export of 'm'"``).
        ref: Keras' outputs on ``x`` when already computed.

    Returns:
        ``{"max_abs_diff", "top1_agreement", "num_checked"}`` (plus
        ``"float64_reference"`` when the rounding rule was needed).

    Raises:
        ParityError: shapes differ, or the outputs differ beyond both rules.
    """
    ref = keras_outputs(model, x) if ref is None else ref
    got = np.asarray(got, dtype=np.float32).reshape(np.shape(got))
    if got.shape != ref.shape:
        raise ParityError(f"{label}: output shape {got.shape} != Keras output shape "
                          f"{ref.shape}.")
    diff = float(np.max(np.abs(got - ref))) if got.size else 0.0
    result = {"max_abs_diff": diff,
              "top1_agreement": top1_agreement(got, ref) if ref.ndim == 2 else None,
              "num_checked": int(len(x))}
    if diff <= atol:
        return result
    rounding = rounding_check(model, x, ref, got, atol)
    if rounding is not None:
        result["float64_reference"] = rounding
    if rounding is None or not rounding["passed"]:
        raise ParityError(f"{label} differs from Keras by {diff:.3g} > atol={atol} on "
                          f"{len(x)} inputs; nothing was written.")
    return result
