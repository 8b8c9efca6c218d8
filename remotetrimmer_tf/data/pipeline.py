"""tf.data input pipeline: parallel decode, resize, cache, shuffle, batch, normalise.

Order of operations (chosen so that a CPU epoch is compute-bound):

1. (train) the file list is permuted once with the seed, so the cache does not
   hold class-sorted data;
2. parallel decode (``AUTOTUNE``, deterministic order) and resize to
   ``image_size`` (antialiased bilinear, rounded back to uint8; skipped at the
   native size);
3. ``cache()`` of the uint8 images (4x smaller than float32) — in memory, or in
   a file if ``cache`` is a path;
4. per-epoch seeded shuffle;
5. batch, then normalise the whole batch at once (float32, ``(x/255-mean)/std``);
6. ``prefetch(AUTOTUNE)``.

TensorFlow is imported inside the functions.
"""
from __future__ import annotations

import os

import numpy as np

_TF_JPEG = (".jpg", ".jpeg")
_TF_DECODABLE = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _decoder(paths):
    """Picks the decoder for a file list: TF JPEG, TF generic, or Pillow."""
    exts = {os.path.splitext(str(p))[1].lower() for p in paths}
    if exts <= set(_TF_JPEG):
        return "jpeg"
    if exts <= set(_TF_DECODABLE):
        return "image"
    return "pillow"  # e.g. the TIFFs of the original UC Merced zip


def resize_uint8(image, image_size: int):
    """uint8 HWC -> uint8 (image_size, image_size, 3); no-op at that size."""
    import tensorflow as tf

    size = int(image_size)
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))

    def _resize():
        out = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

    out = tf.cond(same, lambda: tf.cast(image, tf.uint8), _resize)
    out.set_shape([size, size, 3])
    return out


def _decode_map(kind: str, image_size: int):
    import tensorflow as tf

    def pillow_decode(path):
        from remotetrimmer_tf.data.numpy_source import decode_image_file
        return decode_image_file(path.decode("utf-8"), image_size)

    def fn(path, label):
        if kind == "pillow":
            img = tf.numpy_function(pillow_decode, [path], tf.uint8, stateful=False)
            img.set_shape([image_size, image_size, 3])
            return img, label
        raw = tf.io.read_file(path)
        if kind == "jpeg":
            img = tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE")
        else:
            img = tf.io.decode_image(raw, channels=3, expand_animations=False)
        return resize_uint8(img, image_size), label

    return fn


def normalize_batch(images, norm, scale=255.0):
    """uint8 batch -> float32, normalised with ``norm = (mean, std)`` or raw 0..255.

    ``scale``: what ``mean`` / ``std`` are relative to (255: pixels on 0..1;
    1: raw band values, ``(x - mean) / std``)."""
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    if norm is None:
        return x
    mean, std = norm
    scale = tf.constant(1.0 / (float(scale) * np.asarray(std, np.float32)), tf.float32)
    shift = tf.constant(np.asarray(mean, np.float32) / np.asarray(std, np.float32),
                        tf.float32)
    return x * scale - shift


def finish(ds, *, num_examples: int, batch_size: int, shuffle: bool, seed: int,
           cache, norm, drop_remainder: bool, shuffle_buffer=None, scale=255.0):
    """Cache, shuffle, batch, normalise and prefetch a (uint8 image, label)
    dataset (float32 band arrays with ``scale=1``)."""
    import tensorflow as tf

    if cache:
        ds = ds.cache(cache if isinstance(cache, (str, os.PathLike)) else "")
    if shuffle:
        buf = int(shuffle_buffer or max(1, num_examples))
        ds = ds.shuffle(buf, seed=int(seed), reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=bool(drop_remainder),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda x, y: (normalize_batch(x, norm, scale), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def from_files(paths, labels, *, image_size: int, batch_size: int = 64,
               shuffle: bool = False, seed: int = 0, cache=True, norm=None,
               drop_remainder: bool = False, shuffle_buffer=None):
    """A batched, prefetched ``tf.data.Dataset`` of ``(float32 NHWC, int32)``.

    Args:
        paths: absolute image paths.
        labels: integer labels, same length.
        image_size: output square size.
        batch_size, drop_remainder: batching.
        shuffle, seed, shuffle_buffer: per-epoch seeded shuffle (the file list
            is also permuted once with ``seed`` before decoding).
        cache: True (memory), a file path, or False.
        norm: ``(mean, std)`` on 0..1, or None for raw 0..255 values.
    """
    import tensorflow as tf

    paths = [os.fspath(p) for p in paths]
    labels = np.asarray(labels, dtype=np.int32)
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    if batch_size is None or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if shuffle and len(paths):
        perm = np.random.RandomState(int(seed)).permutation(len(paths))
        paths = [paths[i] for i in perm]
        labels = labels[perm]
    kind = _decoder(paths)
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(labels, tf.int32)))
    ds = ds.map(_decode_map(kind, int(image_size)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return finish(ds, num_examples=len(paths), batch_size=batch_size,
                  shuffle=shuffle, seed=seed, cache=cache, norm=norm,
                  drop_remainder=drop_remainder, shuffle_buffer=shuffle_buffer)
