"""The loader API: `load` (tf.data) and `load_numpy` (numpy, no TensorFlow).

Both select files with the same deterministic split (`splits.split_files`) so
the TF and the JAX paths train and test on identical images.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from remotetrimmer_tf.data import folder as folder_lib
from remotetrimmer_tf.data import splits as splits_lib
from remotetrimmer_tf.data.registry import get_spec, resolve_normalization

SOURCES = ("auto", "folder", "tfds")


def _check_size(spec, image_size):
    size = spec.image_size if image_size is None else image_size
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"image_size must be an int or a square (s, s), got {size!r}")
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    return int(size)


def split_file_list(name, split="train", data_dir=None, seed=0, val_fraction=0.0,
                    check_files=True, skip_bad_files=False):
    """The files of a split of a local folder.

    The split is drawn first and then its images are checked
    (`checks.filter_bad_images`: empty, unreadable or truncated files), so
    leaving a bad file out never moves a good one to another split.

    Args:
        check_files: check the split's images (header decode, size, channels,
            end marker); cached, so repeated calls are cheap.
        skip_bad_files: leave bad images out instead of raising.

    Raises:
        checks.BadImageError: a bad image, unless ``skip_bad_files``.

    Returns:
        ``(root, files, labels)``: the image folder (``.../2750``), the sorted
        relative paths ``"<class>/<file>"`` of the split, and int32 labels.

    Example:
        >>> from remotetrimmer_tf.data import sample_dir
        >>> root, files, labels = split_file_list("eurosat", "test",
        ...                                       data_dir=sample_dir())
        >>> len(files), files[0], labels[:3].tolist()
        (240, 'AnnualCrop/AnnualCrop_1107.jpg', [0, 0, 0])
    """
    spec = get_spec(name)
    split = splits_lib.normalize_split(split)
    if split == "val" and not val_fraction:
        raise ValueError("split='val' needs val_fraction > 0 (carved out of train)")
    root = folder_lib.find_root(spec, data_dir)
    files = folder_lib.list_files(spec, root)
    chosen = splits_lib.split_files(files, seed=seed, val_fraction=val_fraction)[split]
    labels = np.asarray(folder_lib.labels_for(spec, chosen), dtype=np.int32)
    if check_files:
        from remotetrimmer_tf.data import checks
        chosen, labels, _ = checks.filter_bad_images(root, chosen, labels,
                                                     skip=skip_bad_files)
    return root, chosen, labels


def _pick_source(spec, source, data_dir, download, manual_dir, tfds_data_dir):
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source == "tfds" and manual_dir is None and data_dir is not None:
        return source, folder_lib.find_zip_dir(spec, data_dir)  # official zip, if any
    if source != "auto":
        return source, manual_dir
    if manual_dir is not None or download:
        if folder_lib.find_root(spec, data_dir, required=False) is None:
            return "tfds", manual_dir
    if folder_lib.find_root(spec, data_dir, required=False) is not None:
        return "folder", None
    zip_dir = folder_lib.find_zip_dir(spec, data_dir)
    if zip_dir is not None:
        return "tfds", zip_dir
    from remotetrimmer_tf.data import tfds_source
    if tfds_source.has_prepared(spec, tfds_data_dir):
        return "tfds", None
    raise folder_lib.DatasetNotFoundError(
        folder_lib.missing_message(spec, folder_lib.candidate_dirs(data_dir))
        + f"\n  (TFDS '{spec.tfds_name}' is not prepared in "
          f"{tfds_data_dir or '~/tensorflow_datasets'} either.)")


def load(  # long: one branch per data source; mostly docstring
        name, split="train", data_dir=None, source="auto", batch_size=64,
         image_size=None, shuffle=None, seed=0, cache=True, val_fraction=0.0,
         normalize=True, drop_remainder=False, download=False, manual_dir=None,
         tfds_data_dir=None, shuffle_seed=None, shuffle_buffer=None,
         skip_bad_files=False):
    """A batched, prefetched ``tf.data.Dataset`` of ``(float32 NHWC, int32)``.

    Args:
        name: ``"eurosat"`` (RGB) or ``"uc_merced"``.
        split: ``"train"``, ``"test"``, ``"val"`` (with ``val_fraction``) or ``"all"``.
        data_dir: local folder (image folder, dataset root or its parent);
            None searches ``$REMOTETRIMMER_DATA`` then ``../shared/data``.
        source: ``"auto"`` (local folder, else official zip via TFDS manual
            dir, else prepared TFDS), ``"folder"`` or ``"tfds"``.
        batch_size, drop_remainder: batching.
        image_size: square size; None = dataset default (64 EuroSAT, 256 UC Merced).
        shuffle: per-epoch shuffle; None means ``split == "train"``.
        seed: split seed (and shuffle seed unless ``shuffle_seed`` is given).
        cache: cache decoded uint8 images in memory (True), in a file (path), or not.
        val_fraction: fraction of each class's train part carved out as ``val``.
        normalize: True (registry constants), ``"measured"``, ``(mean, std)``,
            or False (raw 0..255 float32).
        download: let TFDS download the dataset (source ``"tfds"``/``"auto"``).
        manual_dir: folder holding the official zip, for TFDS without network.
        tfds_data_dir: TFDS data dir (default ``~/tensorflow_datasets``).
        skip_bad_files: leave out unreadable/empty/truncated images of a local
            folder instead of raising `checks.BadImageError`.

    Returns:
        ``tf.data.Dataset`` with attributes ``class_names`` and ``num_examples``.

    Raises:
        DatasetNotFoundError: naming the dataset, the places searched and how
            to provide it.

    Example:
        >>> from remotetrimmer_tf.data import sample_dir
        >>> ds = load("eurosat", "train", data_dir=sample_dir(), batch_size=32)
        >>> ds.num_examples, ds.class_names[:2]
        (560, ['AnnualCrop', 'Forest'])
    """
    spec = get_spec(name)
    split = splits_lib.normalize_split(split)
    if split == "val" and not val_fraction:
        raise ValueError("split='val' needs val_fraction > 0 (carved out of train)")
    size = _check_size(spec, image_size)
    norm = resolve_normalization(spec, normalize)
    shuffle = (split == "train") if shuffle is None else bool(shuffle)
    sseed = seed if shuffle_seed is None else shuffle_seed
    src, manual = _pick_source(spec, source, data_dir, download, manual_dir,
                               tfds_data_dir)
    from remotetrimmer_tf.data import pipeline

    if src == "folder":
        root, files, labels = split_file_list(spec, split, data_dir, seed, val_fraction,
                                              skip_bad_files=skip_bad_files)
        paths = [os.path.join(root, f) for f in files]
        ds = pipeline.from_files(
            paths, labels, image_size=size, batch_size=batch_size, shuffle=shuffle,
            seed=sseed, cache=cache, norm=norm, drop_remainder=drop_remainder,
            shuffle_buffer=shuffle_buffer)
        n = len(files)
    else:
        from remotetrimmer_tf.data import tfds_source
        if batch_size is None or int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        raw, n, _ = tfds_source.split_dataset(
            spec, split, image_size=size, seed=seed, val_fraction=val_fraction,
            tfds_data_dir=tfds_data_dir, download=download, manual_dir=manual)
        ds = pipeline.finish(raw, num_examples=n, batch_size=batch_size,
                             shuffle=shuffle, seed=sseed, cache=cache, norm=norm,
                             drop_remainder=drop_remainder,
                             shuffle_buffer=shuffle_buffer)
    ds.class_names = list(spec.class_names)
    ds.num_examples = n
    return ds


def load_numpy(name, split="train", data_dir=None, image_size=None, seed=0,
               val_fraction=0.0, normalize=True, shuffle=False, shuffle_seed=None,
               num_workers=None, return_files=False, skip_bad_files=False):
    """A split as numpy arrays ``(x, y)`` — Pillow decode, TensorFlow never imported.

    Args:
        name, split, data_dir, image_size, seed, val_fraction: as in `load`
            (local folder only; same files as `load`).
        normalize: True / ``"measured"`` / ``(mean, std)`` -> float32 normalised;
            False -> uint8 0..255 (4x less memory; normalise per batch later
            with `normalize_numpy`).
        shuffle, shuffle_seed: permute the returned order (default: sorted by
            class, then file).
        num_workers: decode threads (default ``min(4, cpus)``).
        return_files: also return the relative file paths.
        skip_bad_files: leave out unreadable images instead of raising.

    Returns:
        ``(x, y)`` with x (N, S, S, 3) and y int32 (N,), or ``(x, y, files)``.
    """
    from remotetrimmer_tf.data import numpy_source

    spec = get_spec(name)
    size = _check_size(spec, image_size)
    norm = resolve_normalization(spec, normalize)
    root, files, labels = split_file_list(spec, split, data_dir, seed, val_fraction,
                                          skip_bad_files=skip_bad_files)
    if shuffle:
        perm = np.random.RandomState(seed if shuffle_seed is None else shuffle_seed
                                     ).permutation(len(files))
        files = [files[i] for i in perm]
        labels = labels[perm]
    x = numpy_source.decode_files([pathlib.Path(root) / f for f in files], size,
                                  num_workers=num_workers)
    if norm is not None:
        x = numpy_source.normalize_uint8(x, *norm)
    y = np.asarray(labels, dtype=np.int32)
    return (x, y, list(files)) if return_files else (x, y)


def normalize_numpy(images, name="eurosat", normalize=True):
    """uint8 images from ``load_numpy(..., normalize=False)`` -> normalised float32."""
    from remotetrimmer_tf.data import numpy_source

    norm = resolve_normalization(get_spec(name), normalize)
    if norm is None:
        return np.asarray(images, dtype=np.float32)
    return numpy_source.normalize_uint8(images, *norm)
