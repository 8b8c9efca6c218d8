"""Decode a split into numpy arrays with Pillow — no TensorFlow (JAX/GPU path).

Images are decoded by a thread pool straight into one preallocated uint8 array
(27k EuroSAT images at 64x64 are 332 MB as uint8; normalising converts to
float32 chunk by chunk, so peak memory is the uint8 array plus the float32
result). Resizing uses Pillow's antialiased bilinear filter, the counterpart of
``tf.image.resize(..., antialias=True)`` in the tf.data path; at the native size
(EuroSAT 64x64) no resize happens and the pixels equal the tf.data path's
(JPEGs decoded with the accurate integer DCT in both).
"""
from __future__ import annotations

import concurrent.futures
import os

import numpy as np


def decode_image_file(path, image_size: int) -> np.ndarray:
    """One image file -> uint8 array (image_size, image_size, 3)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot decode image {path}: {err}") from err


def decode_files(paths, image_size: int, num_workers=None) -> np.ndarray:
    """Decodes ``paths`` into a uint8 array (N, image_size, image_size, 3)."""
    paths = [os.fspath(p) for p in paths]
    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    if not paths:
        return out
    workers = num_workers or min(4, os.cpu_count() or 1)

    def work(i):
        out[i] = decode_image_file(paths[i], image_size)

    if workers <= 1:
        for i in range(len(paths)):
            work(i)
    else:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            # chunked submission keeps the future count small
            for _ in pool.map(work, range(len(paths)), chunksize=64):
                pass
    return out


def normalize_uint8(images: np.ndarray, mean, std, chunk: int = 2048) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 ``(x / 255 - mean) / std``, chunk by chunk."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images (N, H, W, 3), got shape {images.shape}")
    out = np.empty(images.shape, dtype=np.float32)
    n, h, w, c = images.shape
    # per-channel constants tiled along W*C: long inner loops (a broadcast over a
    # last axis of 3 is ~20x slower)
    scale = np.tile(1.0 / (255.0 * np.asarray(std, np.float64)), w).astype(np.float32)
    shift = np.tile(np.asarray(mean, np.float64) / np.asarray(std, np.float64),
                    w).astype(np.float32)
    flat_in = images.reshape(n * h, w * c)
    flat_out = out.reshape(n * h, w * c)
    rows = max(1, chunk * h)
    for s in range(0, n * h, rows):
        block = flat_out[s:s + rows]  # a view: no temporaries
        np.copyto(block, flat_in[s:s + rows], casting="unsafe")
        block *= scale
        block -= shift
    return out


def numpy_batches(x, y, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
                  drop_remainder: bool = False, epoch: int = 0, normalize=None):
    """Yields ``(x_batch, y_batch)`` numpy batches (the JAX-path counterpart of tf.data).

    Args:
        x, y: arrays from `load_numpy`.
        batch_size, drop_remainder: batching.
        shuffle, seed, epoch: the order is ``RandomState([seed, epoch])``'s
            permutation, so every epoch differs and every run repeats.
        normalize: None, or ``(mean, std)`` applied per batch to uint8 ``x``
            (keeps the full split in memory as uint8).

    Example:
        >>> from remotetrimmer_tf.data import load_numpy, sample_dir
        >>> from remotetrimmer_tf.data.registry import EUROSAT
        >>> x, y = load_numpy("eurosat", "train", data_dir=sample_dir(), normalize=False)
        >>> norm = (EUROSAT.mean, EUROSAT.std)
        >>> xb, yb = next(iter(numpy_batches(x, y, 64, shuffle=True, normalize=norm)))
        >>> x.dtype, xb.shape, xb.dtype, yb.shape
        (dtype('uint8'), (64, 64, 64, 3), dtype('float32'), (64,))
    """
    n = len(y)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} rows but y has {n}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    order = (np.random.RandomState([int(seed), int(epoch)]).permutation(n)
             if shuffle else np.arange(n))
    stop = n - n % batch_size if drop_remainder else n
    for s in range(0, stop, batch_size):
        idx = order[s:s + batch_size]
        if shuffle:
            idx = np.sort(idx)  # faster gathers; order inside a batch is irrelevant
        xb = x[idx] if shuffle else x[s:s + batch_size]
        if normalize is not None:
            xb = normalize_uint8(xb, *normalize)
        yield xb, y[idx]
