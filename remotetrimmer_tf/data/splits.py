"""Deterministic, stratified train/test (and optional validation) splits.

Pure python + numpy (no TensorFlow), so the tf.data path and the numpy/JAX path
select exactly the same files.

Protocol (the published random 70/30 split, made reproducible):

1. Every image is identified by its *split key* ``"<class>/<file stem>"``
   (relative path without extension: the JPEG folder and the TIFF-based TFDS
   ``uc_merced`` therefore split identically).
2. Keys are grouped by class and sorted (plain string sort).
3. Per class, a permutation is drawn from ``numpy.random.RandomState`` seeded
   with ``[seed, crc32(class name)]`` (RandomState's stream is frozen by NumPy's
   compatibility policy, so the split is the same on every machine and version);
   the first ``round_half_up(n * train_fraction)`` keys of the permutation go to
   train, the rest to test.
4. Optional validation carve-out: the last ``round_half_up(n_train *
   val_fraction)`` keys of each class's train part become ``val`` (test is never
   touched).

EuroSAT (class sizes 2000/2500/3000) gives 18,900 / 8,100 and UC Merced
(21 x 100) gives 1,470 / 630 exactly.
"""
from __future__ import annotations

import hashlib
import math
import posixpath
import zlib

import numpy as np

SPLITS = ("train", "test", "val", "all")
_SPLIT_ALIASES = {"train": "train", "test": "test", "val": "val",
                  "validation": "val", "valid": "val", "all": "all"}


def normalize_split(split: str) -> str:
    """Canonical split name (``train``, ``test``, ``val`` or ``all``)."""
    key = _SPLIT_ALIASES.get(str(split).strip().lower())
    if key is None:
        raise ValueError(
            f"unknown split {split!r}; use one of 'train', 'test', 'val' "
            f"(needs val_fraction > 0) or 'all'")
    return key


def split_key(relpath: str) -> str:
    """``"Forest/Forest_12.jpg"`` -> ``"Forest/Forest_12"`` (the split key).

    Accepts ``\\``-separated paths too. The key is ``<class>/<stem>``.
    """
    parts = str(relpath).replace("\\", "/").strip("/").split("/")
    if len(parts) < 2:
        raise ValueError(
            f"expected a relative path '<class>/<file>', got {relpath!r}")
    cls, fname = parts[-2], parts[-1]
    stem = posixpath.splitext(fname)[0]
    return f"{cls}/{stem}"


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def _class_seed(seed: int, cls: str):
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2 ** 32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    return [int(seed), zlib.crc32(cls.encode("utf-8"))]


def split_files(files, seed: int = 0, train_fraction: float = 0.7,
                val_fraction: float = 0.0) -> dict:
    """Stratified, seeded split of relative image paths.

    Args:
        files: iterable of relative paths ``"<class>/<file>"`` (order does not
            matter; duplicates of a split key are an error).
        seed: split seed (part of the experiment config).
        train_fraction: fraction of each class that goes to train (0.7).
        val_fraction: fraction of each class's *train* part moved to ``val``.

    Returns:
        ``{"train": [...], "val": [...], "test": [...], "all": [...]}``, each a
        list of the given paths sorted by split key (so class-grouped). The
        three splits are disjoint and cover ``all``.

    Example:
        >>> files = [f"A/{i}.jpg" for i in range(10)] + [f"B/{i}.jpg" for i in range(10)]
        >>> s = split_files(files, seed=0)
        >>> len(s["train"]), len(s["test"])
        (14, 6)
    """
    if not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    files = [str(f) for f in files]
    by_class = {}
    seen = {}
    for f in files:
        key = split_key(f)
        if key in seen:
            raise ValueError(
                f"two files share the split key {key!r}: {seen[key]!r} and {f!r}")
        seen[key] = f
        by_class.setdefault(key.split("/", 1)[0], []).append((key, f))
    out = {"train": [], "val": [], "test": []}
    for cls in sorted(by_class):
        items = sorted(by_class[cls])
        n = len(items)
        n_train = _round_half_up(n * float(train_fraction))
        if n >= 2:  # every class in both splits
            n_train = min(max(n_train, 1), n - 1)
        perm = np.random.RandomState(_class_seed(seed, cls)).permutation(n)
        train_idx = perm[:n_train]
        test_idx = perm[n_train:]
        n_val = _round_half_up(len(train_idx) * float(val_fraction))
        if val_fraction > 0 and len(train_idx) >= 2:
            n_val = min(max(n_val, 1), len(train_idx) - 1)
        elif val_fraction > 0:
            n_val = 0
        val_idx = train_idx[len(train_idx) - n_val:] if n_val else train_idx[:0]
        train_idx = train_idx[:len(train_idx) - n_val]
        for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
            out[name].extend(items[i] for i in np.sort(idx))
    result = {k: [f for _, f in sorted(v)] for k, v in out.items()}
    result["all"] = [f for _, f in sorted(seen.items())]
    return result


def split_fingerprint(files) -> str:
    """sha256 (first 16 hex) of the split keys of ``files`` — stable identity."""
    h = hashlib.sha256()
    for key in sorted(split_key(f) for f in files):
        h.update(key.encode("utf-8") + b"\n")
    return h.hexdigest()[:16]
