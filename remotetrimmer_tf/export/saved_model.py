"""SavedModel export for TF Serving, with a parity check.

Uses ``keras.export.ExportArchive`` (what ``model.export(path,
format="tf_saved_model")`` does) with a ``serving_default`` signature taking
``input`` (float32, dynamic batch) and returning ``output``. The directory is
written next to the destination under a temporary name, reloaded with
``tf.saved_model.load`` and compared with Keras, then renamed into place.
TensorFlow is imported lazily.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from remotetrimmer_tf.export import _io
from remotetrimmer_tf.export.litert import ParityError, _check_model
from remotetrimmer_tf.utils.batches import as_sample_array
from remotetrimmer_tf.utils.files import atomic_path


@dataclasses.dataclass
class SavedModelExport:
    """Result of :func:`to_saved_model`.

    Attributes:
        path: the SavedModel directory.
        size_bytes: total size of its files.
        max_abs_diff: max |SavedModel - Keras| on the checked inputs.
        num_checked: number of compared samples.
    """

    path: str
    size_bytes: int
    max_abs_diff: float | None = None
    num_checked: int = 0

    def as_dict(self):
        return dataclasses.asdict(self)


def _dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def to_saved_model(  # long: export, reload, parity check in order
    model,
    path,
    *,
    check=True,
    check_data=None,
    num_check=8,
    atol=1e-5,
    overwrite=False,
    seed=0,
):
    """Export ``model`` as a TF Serving SavedModel directory and verify it.

    The ``serving_default`` signature takes ``input`` (float32, shape
    ``(None, *input_shape)``) and returns ``{"output": ...}``; it runs the
    model in inference mode.

    Args:
        model: single-input, single-output ``keras.Model`` (TF backend).
        path: destination directory (must not exist unless ``overwrite``).
        check: reload and compare with Keras (default ``True``).
        check_data: inputs for the check (default seeded random normal).
        num_check: number of random check inputs.
        atol: max abs difference allowed, else :class:`ParityError`.
        overwrite: replace an existing directory.
        seed: seed of the random check inputs.

    Returns:
        :class:`SavedModelExport`.

    Example:

        ```python
        res = to_saved_model(model, "serving/resnet18/1")
        # tensorflow_model_server --model_base_path=serving/resnet18
        ```
    """
    import keras
    import tensorflow as tf

    path = _io.check_target(path, overwrite=overwrite, what="directory")
    shape = _check_model(model)
    # a temporary name next to `path`, not created (ExportArchive creates it)
    with atomic_path(path) as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        fn = functools.partial(model.__call__, training=False)

        def serve(input):  # noqa: A002 - the signature's input name
            return {"output": fn(input)}

        archive.add_endpoint(
            "serve",
            serve,
            input_signature=[
                tf.TensorSpec((None,) + tuple(shape[1:]), tf.float32, name="input")
            ],
        )
        archive.write_out(tmp, verbose=False)
        result = SavedModelExport(path=path, size_bytes=_dir_size(tmp))
        if check:
            if check_data is not None:
                x = as_sample_array(
                    check_data, limit=num_check, name="check_data", ndim=len(shape)
                )
            else:
                rng = np.random.default_rng(seed)
                x = rng.standard_normal((num_check,) + tuple(shape[1:]))
                x = x.astype(np.float32)
            loaded = tf.saved_model.load(tmp)
            sig = loaded.signatures["serving_default"]
            got = sig(input=tf.constant(x))["output"].numpy()
            ref = np.asarray(model(x, training=False))
            diff = float(np.max(np.abs(got - ref)))
            result.max_abs_diff, result.num_checked = diff, len(x)
            del loaded, sig
            if not diff <= atol:
                raise ParityError(
                    f"SavedModel of '{model.name}' differs from Keras by "
                    f"{diff:.3g} > atol={atol}; nothing written to '{path}'."
                )
        if os.path.exists(path) and not overwrite:
            raise ValueError(f"'{path}' appeared during export; not replaced.")
    return result
