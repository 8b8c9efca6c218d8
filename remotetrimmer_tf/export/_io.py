"""Small shared helpers for the export package: safe paths, atomic writes and
input-data normalisation. TensorFlow is never imported here at module level.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np


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


def temp_sibling(path, *, directory=False):
    """Create and return a fresh temporary path next to ``path`` (same
    filesystem, so that ``os.replace`` is atomic)."""
    parent, base = os.path.split(path)
    if directory:
        return tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    os.close(fd)
    return tmp


def write_bytes_atomic(path, data, *, overwrite=False):
    """Write ``data`` to ``path`` via a temporary sibling and ``os.replace``."""
    path = check_target(path, overwrite=overwrite)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    return path


def remove_quietly(path):
    """Remove a file or directory if it exists; never raises."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
    except OSError:
        pass


def as_sample_array(data, *, limit=None, name="data", ndim=None):
    """Turn user data into one float32 NHWC numpy array of samples.

    Accepts a numpy array ``(N, ...)``, a ``(x, y)`` tuple, a
    ``tf.data.Dataset`` or any iterable yielding arrays or ``(x, y)`` batches,
    or a zero-argument callable returning such an iterable (the
    ``representative_dataset`` convention). At most ``limit`` samples are
    read.

    Raises:
        TypeError: an element is not array-like.
        ValueError: no samples.
    """
    if data is None:
        raise ValueError(f"`{name}` is None.")
    if callable(data) and not hasattr(data, "__iter__"):
        data = data()
    if isinstance(data, np.ndarray):
        arr = data
    elif (
        isinstance(data, tuple)
        and len(data) == 2
        and isinstance(data[0], np.ndarray)
        and isinstance(data[1], np.ndarray)
        and len(data[0]) == len(data[1])
    ):
        arr = data[0]
    else:
        chunks, count = [], 0
        try:
            iterator = iter(data)
        except TypeError:
            raise TypeError(
                f"`{name}` must be a numpy array, an (x, y) tuple, a "
                "tf.data.Dataset, an iterable of batches or a callable "
                f"returning one; got {type(data).__name__}."
            ) from None
        for item in iterator:
            if isinstance(item, dict):
                raise TypeError(
                    f"`{name}` yielded a dict; yield image arrays or "
                    "(images, labels) tuples."
                )
            if isinstance(item, (tuple, list)):
                item = item[0]
                if isinstance(item, (tuple, list)):
                    item = item[0]
            item = np.asarray(item, dtype=np.float32)
            if item.ndim == 0:
                raise TypeError(f"`{name}` yielded a scalar, expected images.")
            if ndim is not None and item.ndim == ndim - 1:
                item = item[None]
            chunks.append(item)
            count += len(item)
            if limit is not None and count >= limit:
                break
        if not chunks:
            raise ValueError(f"`{name}` yielded no samples.")
        arr = np.concatenate(chunks, axis=0)
    arr = np.asarray(arr, dtype=np.float32)
    if ndim is not None and arr.ndim == ndim - 1:
        arr = arr[None]
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"`{name}` has samples of rank {arr.ndim - 1} (array shape "
            f"{arr.shape}); the model expects batches of rank {ndim}."
        )
    if limit is not None:
        arr = arr[:limit]
    if len(arr) == 0:
        raise ValueError(f"`{name}` holds no samples.")
    return arr
