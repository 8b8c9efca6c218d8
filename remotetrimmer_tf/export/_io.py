"""The export package's output-path check (``check_target``) and its atomic
write of a checked path; the atomic writes and data adapters themselves live
in ``remotetrimmer_tf.utils``. TensorFlow is never imported here.
"""

from __future__ import annotations

import os

from remotetrimmer_tf.utils import files


def check_target(path, *, suffix=None, overwrite=False, what="file"):
    """Validate an output path and return it as an absolute ``str``.

    Args:
        path: Output path (``str`` or ``os.PathLike``).
        suffix: Required file name ending (e.g. ``".tflite"``), or ``None``.
        overwrite: If ``False`` (default) an existing path is an error.
        what: Word used in error messages ("file" or "directory").

    Raises:
        TypeError: ``path`` is not a string or path-like.
        ValueError: wrong suffix, or the path exists and ``overwrite=False``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"`path` must be a str or os.PathLike, got {type(path).__name__}."
        )
    path = os.path.abspath(os.fspath(path))
    if suffix is not None and not path.endswith(suffix):
        raise ValueError(
            f"`path` must end with '{suffix}' for this export, got '{path}'."
        )
    if os.path.exists(path) and not overwrite:
        raise ValueError(
            f"The {what} '{path}' already exists; pass overwrite=True to "
            "replace it, or choose another path."
        )
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ValueError(
            f"The directory '{parent}' for the exported {what} does not "
            "exist; create it first."
        )
    return path


def write_bytes_atomic(path, data, *, overwrite=False):
    """:func:`check_target` then ``utils.files.write_bytes_atomic``."""
    return files.write_bytes_atomic(check_target(path, overwrite=overwrite), data)
