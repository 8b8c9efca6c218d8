"""Model weights as one ``.npz`` of named arrays, in a chosen float dtype.

Every weight of every layer (trainable or not: BatchNorm moving statistics
too) is stored under ``<layer name>/<index in layer.weights>``. Writing in
float16 halves a float32 model's file (the demo model ships so); reading
casts each array back to its variable's dtype. Any mismatch (a layer missing
from the file or from the model, another shape, a value float16 cannot hold)
is an error naming the weight, never a silently different model.

Example:

>>> import os, tempfile
>>> x = keras.Input((4,))
>>> model = keras.Model(x, keras.layers.Dense(3, name="fc")(x))
>>> path = write_weights_npz(model, os.path.join(tempfile.mkdtemp(), "w.npz"))
>>> sorted(np.load(path).files), np.load(path)["fc/0"].dtype
(['fc/0', 'fc/1'], dtype('float16'))
>>> twin = keras.Model(x, keras.layers.Dense(3, name="fc")(x))
>>> _ = load_weights_npz(twin, path)
>>> bool(np.allclose(twin.get_weights()[0], model.get_weights()[0], atol=1e-3))
True
"""
import io

import numpy as np

from remotetrimmer_tf.utils.files import write_bytes_atomic

__all__ = ["weights_to_arrays", "write_weights_npz", "load_weights_npz"]


def _named_weights(model):
    """``[(key, variable)]`` over the model's top-level layers, in order."""
    out = []
    for layer in model.layers:
        for i, var in enumerate(layer.weights):
            out.append((f"{layer.name}/{i}", var))
    return out


def weights_to_arrays(model, dtype="float16"):
    """``{"<layer>/<i>": array}`` of every weight, cast to ``dtype``.

    Raises:
        ValueError: a value is not finite in ``dtype`` (float16 holds
            magnitudes up to 65504).
    """
    arrays = {}
    for key, var in _named_weights(model):
        value = np.asarray(var.numpy() if hasattr(var, "numpy") else var)
        with np.errstate(over="ignore"):   # an overflow is refused just below
            cast = value.astype(dtype) if dtype else value
        if np.issubdtype(cast.dtype, np.floating) and not np.all(np.isfinite(cast)) \
                and np.all(np.isfinite(value)):
            raise ValueError(
                f"weight {key} of {model.name!r} does not fit in {dtype} "
                f"(largest magnitude {float(np.max(np.abs(value))):.4g}); "
                "store it as float32")
        arrays[key] = cast
    return arrays


def write_weights_npz(model, path, dtype="float16"):
    """Writes every weight of ``model`` to ``path`` (compressed, atomic).

    Returns:
        ``path``.
    """
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **weights_to_arrays(model, dtype))
    return write_bytes_atomic(path, buffer.getvalue())


def load_weights_npz(model, path):
    """Sets ``model``'s weights from a file of `write_weights_npz` (in place).

    Returns:
        ``model``.

    Raises:
        ValueError: the file and the model do not hold the same weights
            (a key missing on either side, or another shape).
    """
    with np.load(path) as data:
        stored = {k: data[k] for k in data.files}
    named = _named_weights(model)
    missing = [k for k, _ in named if k not in stored]
    extra = sorted(set(stored) - {k for k, _ in named})
    if missing or extra:
        what = (f"the model's weight {missing[0]} is not in the file" if missing
                else f"the file's weight {extra[0]} is not in the model")
        raise ValueError(f"{path}: {what} ({len(missing)} missing, {len(extra)} "
                         "extra); pass weights of the same architecture")
    for key, var in named:
        if tuple(stored[key].shape) != tuple(var.shape):
            raise ValueError(f"{path}: weight {key} has shape "
                             f"{tuple(stored[key].shape)}, the model's "
                             f"{tuple(var.shape)}; pass weights of the same "
                             "architecture, classes and input shape")
    for key, var in named:
        var.assign(stored[key].astype(var.dtype))
    return model
