"""The trained SE-ResNet-18 the default run starts from, shipped in the package.

``remotetrimmer_tf/assets/demo_model/`` holds two files, written by
``tools/pack_demo_model.py`` from a run folder of the command line:

- ``weights.npz``: every weight of ``models.resnet18(se=True)`` in float16
  (`utils.npz_weights`; about half the bytes of float32);
- ``model.json``: the architecture (``arch``, ``se``, ``num_classes``,
  ``input_shape``, ``classes``), how it was trained (``training_command``,
  the data it saw and the 800 sample images it did not), and its accuracy
  (``accuracy``: on the full test split of that data, and on the embedded
  sample, all measured with the float16 weights).

``configs/demo.py`` (the no-flag default) passes ``weights_path()`` as
``--config.model.weights`` with zero training epochs: the run prunes this
model instead of training one. This module imports no Keras until `load`.

Example (any architecture of `models.arch_registry` packs; the demo's is
``resnet18`` with SE gates, see ``info()``):

>>> import tempfile
>>> meta = {"arch": "MobileNetV3Small", "se": False, "num_classes": 3,
...         "input_shape": [32, 32, 3]}
>>> folder = tempfile.mkdtemp()
>>> _, written = pack(build(meta), meta, folder=folder)
>>> available(folder), info(folder)["weights_dtype"]
(True, 'float16')
>>> load(folder).output_shape
(None, 3)
>>> weights_path().endswith("weights.npz")
True
"""
import hashlib
import json
import os
import pathlib

__all__ = ["DEFAULT_DIR", "weights_path", "info", "available", "build", "load",
           "pack"]

DEFAULT_DIR = pathlib.Path(__file__).resolve().parent / "assets" / "demo_model"
WEIGHTS = "weights.npz"
INFO = "model.json"


def _folder(folder):
    return pathlib.Path(folder) if folder is not None else DEFAULT_DIR


def weights_path(folder=None):
    """Path of the float16 weights file (a string, for configs)."""
    return str(_folder(folder) / WEIGHTS)


def available(folder=None):
    """Whether both files of the packed model are present."""
    f = _folder(folder)
    return (f / WEIGHTS).is_file() and (f / INFO).is_file()


def info(folder=None):
    """The packed model's ``model.json`` as a dict.

    Raises:
        FileNotFoundError: the model was never packed into ``folder``.
    """
    path = _folder(folder) / INFO
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no packed demo model; run tools/pack_demo_model.py "
            "--run=<run folder of a finished train stage>")
    return json.loads(path.read_text(encoding="utf-8"))


def build(meta):
    """A fresh (untrained) model of the architecture ``meta`` describes."""
    from remotetrimmer_tf.models import arch_registry
    return arch_registry.build(meta["arch"], num_classes=int(meta["num_classes"]),
                               input_shape=tuple(meta["input_shape"]),
                               se=bool(meta["se"]))


def load(folder=None):
    """The packed model as a float32 ``keras.Model`` (weights from float16).

    Example:

    ```python
    from remotetrimmer_tf import demo_model
    model = demo_model.load()      # SE-ResNet-18, 64x64 RGB, 10 EuroSAT classes
    ```
    """
    from remotetrimmer_tf.utils.npz_weights import load_weights_npz
    meta = info(folder)
    return load_weights_npz(build(meta), weights_path(folder))


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(model, record, folder=None, dtype="float16"):
    """Writes ``model``'s weights (``dtype``) and ``record`` into ``folder``.

    The folder is replaced as a whole (both files or neither), and only
    after the weights were read back into a freshly built model of
    ``record``'s architecture: weights that do not fit it are never written.

    Args:
        model: the trained Keras model.
        record: the ``model.json`` fields (``arch``, ``se``, ``num_classes``,
            ``input_shape`` at least; training command, accuracies, ...).
        folder: target folder (default: the package's asset folder).
        dtype: the stored float dtype.

    Returns:
        ``(fresh model loaded from the written weights, the written record)``.
    """
    from remotetrimmer_tf.utils.files import atomic_path, write_json_atomic
    from remotetrimmer_tf.utils.npz_weights import (load_weights_npz,
                                                    write_weights_npz)
    folder = _folder(folder)
    with atomic_path(folder, directory=True) as tmp:   # both files, or neither
        weights = os.path.join(tmp, WEIGHTS)
        write_weights_npz(model, weights, dtype=dtype)
        fresh = load_weights_npz(build(record), weights)
        record = dict(record, weights_dtype=str(dtype), weights_file=WEIGHTS,
                      weights_bytes=os.path.getsize(weights),
                      weights_sha256=_sha256(weights))
        write_json_atomic(os.path.join(tmp, INFO), record)
    return fresh, record
