"""Fast checks of image files, run when a split's file list is built.

A corrupt, empty or truncated image must stop a run *before* training, with
the file's name, instead of a TensorFlow traceback deep inside an epoch
(``Input is empty [[{{node DecodeJpeg}}]]``). Decoding every image would take
as long as an epoch, so each file gets a cheap check instead:

1. the file is not empty;
2. Pillow parses its header (format, size, mode), without decoding pixels;
3. the size is positive and the mode converts to 3 RGB channels;
4. JPEG and PNG files end with their end marker (``FFD9`` / ``IEND``), which
   catches truncated downloads and partial copies.

Files are checked by a thread pool (the work is I/O and header parsing); a
result is cached per ``(path, size, mtime)``, so the several loads of one run
check each file once. No TensorFlow here (the numpy/JAX path uses it too).

Example:
  bad = find_bad_images(["data/2750/Forest/Forest_1.jpg", ...])
  # -> {"data/2750/Forest/Forest_1.jpg": "empty file (0 bytes)"}
  files, labels, skipped = filter_bad_images(root, files, labels, skip=True)
"""
from __future__ import annotations

import concurrent.futures
import os
import threading

# Modes Pillow converts to RGB without guessing (P/PA palettes, L/LA grey,
# I;16 greys, CMYK, YCbCr, ...); anything else is reported.
_CONVERTIBLE = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX",
                "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "I;16", "I;16B",
                "I;16L", "I;16N"}
_TAIL = 64 * 1024   # bytes searched for the end marker (JPEGs may carry padding)

_cache = {}
_cache_lock = threading.Lock()

FIX = ("replace or delete the file, or pass --config.data.skip_bad_files=True "
       "to leave such files out")


class BadImageError(ValueError):
    """Unreadable images in a dataset; ``files`` maps each path to the reason.

    The message names the first file, the reason and the fix, in one line.
    """

    def __init__(self, files, fix=FIX):
        self.files = dict(files)
        first = sorted(self.files)[0]
        more = (f" (and {len(self.files) - 1} more bad image files)"
                if len(self.files) > 1 else "")
        super().__init__(f"{first}: unreadable image ({self.files[first]})"
                         f"{more}; {fix}")


def _ends_with(path, size, marker, trailing=b"\x00\r\n \t"):
    with open(path, "rb") as f:
        f.seek(max(0, size - _TAIL))
        tail = f.read().rstrip(trailing)
    return tail.endswith(marker)


def check_image(path):
    """The reason ``path`` is not a usable image, or None if it looks fine.

    Args:
      path: an image file.

    Returns:
      None, or a short reason such as ``"empty file (0 bytes)"``,
      ``"not an image Pillow can read"``, ``"truncated JPEG (no end marker)"``.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    key = (path, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    reason = _check_uncached(path, st.st_size)
    with _cache_lock:
        _cache[key] = reason
    return reason


def _check_uncached(path, size):
    if size == 0:
        return "empty file (0 bytes)"
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            fmt, (w, h), mode = img.format, img.size, img.mode
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (OSError, ValueError, SyntaxError) as e:   # SyntaxError: bad headers
        return f"damaged header ({str(e).strip() or type(e).__name__})"
    if w < 1 or h < 1:
        return f"image size {w}x{h}"
    if mode not in _CONVERTIBLE:
        return f"pixel mode {mode} cannot be converted to 3 RGB channels"
    try:
        if fmt == "JPEG" and not _ends_with(path, size, b"\xff\xd9"):
            return "truncated JPEG (no end marker)"
        if fmt == "PNG" and not _ends_with(path, size, b"IEND\xaeB`\x82"):
            return "truncated PNG (no IEND chunk)"
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    return None


def find_bad_images(paths, num_workers=None):
    """Checks image files in parallel; returns ``{path: reason}`` of the bad ones.

    Args:
      paths: image file paths.
      num_workers: threads (default ``min(8, 2 * cpus)``).

    Returns:
      A dict of the unusable files (empty when all are fine).
    """
    paths = [os.fspath(p) for p in paths]
    workers = num_workers or min(8, 2 * (os.cpu_count() or 1))
    if workers <= 1 or len(paths) < 64:
        reasons = [check_image(p) for p in paths]
    else:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            reasons = list(pool.map(check_image, paths, chunksize=64))
    return {p: r for p, r in zip(paths, reasons) if r is not None}


def filter_bad_images(root, files, labels, skip=False, num_workers=None):
    """Drops (``skip=True``) or refuses unusable images of a split's file list.

    Args:
      root: the folder the relative ``files`` are under.
      files: relative paths (``"<class>/<file>"``).
      labels: their labels (any sequence or array of the same length).
      skip: leave bad files out instead of raising.
      num_workers: checking threads.

    Returns:
      ``(files, labels, skipped)``: the usable files and labels (same types as
      given) and the sorted relative paths that were left out.

    Raises:
      BadImageError: a bad file was found and ``skip`` is False.
    """
    full = [os.path.join(os.fspath(root), f) for f in files]
    bad = find_bad_images(full, num_workers=num_workers)
    if not bad:
        return files, labels, []
    if not skip:
        raise BadImageError(bad)
    keep = [i for i, p in enumerate(full) if p not in bad]
    skipped = sorted(files[i] for i, p in enumerate(full) if p in bad)
    new_files = [files[i] for i in keep]
    try:
        new_labels = labels[keep]          # numpy arrays
    except TypeError:
        new_labels = [labels[i] for i in keep]
    return new_files, new_labels, skipped
