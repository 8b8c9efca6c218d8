"""TFDS ``eurosat/rgb`` and ``uc_merced`` with our 70/30 split.

Both TFDS builders expose a single ``train`` split holding every image with its
``filename``. We rebuild our split keys ``"<class>/<stem>"`` from (label,
filename), split them with `splits.split_files` (so TFDS, the local folder and
the numpy path agree), and filter the TFDS records with a lookup table.

Three ways to get the data:
- ``download=True``: TFDS downloads and prepares it into ``tfds_data_dir``;
- ``manual_dir=<folder holding EuroSAT.zip / UCMerced_LandUse.zip>``: TFDS
  prepares it from the official zip without network (sha256 checked);
- already prepared in ``tfds_data_dir`` (default ``~/tensorflow_datasets``):
  read with ``download=False``.
"""
from __future__ import annotations

import os

from remotetrimmer_tf.data import splits as splits_lib
from remotetrimmer_tf.data.folder import DatasetNotFoundError
from remotetrimmer_tf.data.registry import get_spec


def _builder(spec, tfds_data_dir):
    import tensorflow_datasets as tfds

    return tfds.builder(spec.tfds_name, data_dir=tfds_data_dir)


def _not_found(spec, tfds_data_dir, manual_dir, err):
    where = tfds_data_dir or os.path.join("~", "tensorflow_datasets")
    extra = f"; manual_dir={manual_dir}" if manual_dir else ""
    return DatasetNotFoundError(
        f"Dataset '{spec.name}' (TFDS '{spec.tfds_name}') is not prepared in "
        f"{where}{extra} ({type(err).__name__}: {str(err).splitlines()[0][:200]}).\n"
        f"Provide it in one of two ways:\n"
        f"  1. download: load('{spec.name}', ..., source='tfds', download=True);\n"
        f"  2. offline: pass data_dir=<dir> holding the extracted folder "
        f"{spec.root_names[0]}/{spec.image_folder}/<class>/..., or "
        f"manual_dir=<dir> holding '{spec.zip_name}'.")


def raw_dataset(name, tfds_data_dir=None, download=False, manual_dir=None):
    """The whole TFDS ``train`` split, images left encoded.

    Returns ``(builder, dataset of dicts with 'image' (bytes), 'label',
    'filename')``. Raises `DatasetNotFoundError` with instructions if the data
    is neither prepared nor obtainable.
    """
    import tensorflow_datasets as tfds

    spec = get_spec(name)
    builder = _builder(spec, tfds_data_dir)
    try:
        if download or manual_dir:
            cfg = tfds.download.DownloadConfig(
                manual_dir=os.fspath(manual_dir) if manual_dir else None)
            builder.download_and_prepare(download_config=cfg)
        ds = builder.as_dataset(split="train", shuffle_files=False,
                                decoders={"image": tfds.decode.SkipDecoding()})
    except Exception as err:  # not prepared, no network, bad checksum, ...
        raise _not_found(spec, tfds_data_dir, manual_dir, err) from err
    return builder, ds


def _key_fn(spec):
    import tensorflow as tf

    names = tf.constant(list(spec.class_names))

    def key(label, filename):
        stem = tf.strings.regex_replace(filename, r"\.[^./]*$", "")
        base = tf.strings.regex_replace(stem, r"^.*/", "")
        return tf.strings.join([tf.gather(names, tf.cast(label, tf.int32)), base],
                               separator="/")

    return key


def list_keys(spec, ds) -> list:
    """All split keys of a TFDS dataset (reads labels and filenames only)."""
    import tensorflow as tf

    key = _key_fn(spec)
    keys = []
    meta = ds.map(lambda ex: key(ex["label"], ex["filename"]),
                  num_parallel_calls=tf.data.AUTOTUNE).batch(8192)
    for batch in meta.as_numpy_iterator():
        keys.extend(k.decode("utf-8") for k in batch)
    return keys


def split_dataset(name, split, *, image_size, seed=0, val_fraction=0.0,
                  tfds_data_dir=None, download=False, manual_dir=None):
    """``(dataset of (uint8 image, int32 label), num_examples, keys)`` for a split."""
    import tensorflow as tf

    from remotetrimmer_tf.data.pipeline import resize_uint8

    spec = get_spec(name)
    split = splits_lib.normalize_split(split)
    builder, ds = raw_dataset(spec, tfds_data_dir, download, manual_dir)
    keys = list_keys(spec, ds)
    chosen = splits_lib.split_files(keys, seed=seed, val_fraction=val_fraction)[split]
    if not chosen:
        raise ValueError(f"split {split!r} of {spec.name} is empty "
                         f"(val needs val_fraction > 0)")
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(chosen), tf.ones([len(chosen)], tf.int32)), default_value=0)
    key = _key_fn(spec)
    image_feature = builder.info.features["image"]
    size = int(image_size)

    def keep(ex):
        return tf.equal(table.lookup(key(ex["label"], ex["filename"])), 1)

    def decode(ex):
        img = image_feature.decode_example(ex["image"])
        if img.shape.rank == 3 and img.shape[-1] == 1:
            img = tf.image.grayscale_to_rgb(img)
        return resize_uint8(img, size), tf.cast(ex["label"], tf.int32)

    out = ds.filter(keep).map(decode, num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
    out = out.apply(tf.data.experimental.assert_cardinality(len(chosen)))
    return out, len(chosen), chosen


def has_prepared(name, tfds_data_dir=None) -> bool:
    """Whether TFDS already holds the prepared dataset (no network)."""
    try:
        return bool(_builder(get_spec(name), tfds_data_dir).is_prepared())
    except Exception:
        return False
