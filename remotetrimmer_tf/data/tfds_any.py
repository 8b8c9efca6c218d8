"""Any TFDS image-classification builder (``--config.data.name=tfds:<builder>``).

Every split the builder has is pooled, each example gets the split key
``"<class>/<running index>"``, and our seeded stratified split
(`splits.split_files`) is applied, exactly as for a folder. Nothing is
downloaded unless ``download=True``; ``manual_dir`` is handed to TFDS for
builders that read a manually downloaded archive (e.g. ``resisc45``).
The builder must have an ``image`` and a ``label`` (ClassLabel) feature.

Example:

```python
from remotetrimmer_tf.data import tfds_any

src = tfds_any.open_builder("resisc45", manual_dir="~/Downloads")
ds = tfds_any.load(src, "train", image_size=64, norm=(src.mean, src.std))
```
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from remotetrimmer_tf.data import splits as splits_lib
from remotetrimmer_tf.data.user_folder import UserDataError

PREFIX = "tfds:"


def is_tfds_name(name) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX) and \
        len(name) > len(PREFIX)


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A prepared TFDS builder with our split keys.

    Args:
        name: the builder name (``"resisc45"``).
        builder: the ``tfds`` builder.
        class_names: label names.
        keys: split keys ``"<class>/<index>"`` in dataset order.
        channels: image channels after decoding (3: grayscale is promoted).
    """

    name: str
    builder: object
    class_names: tuple
    keys: tuple
    channels: int = 3

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def open_builder(name, manual_dir=None, download=False, tfds_data_dir=None):
    """Opens (and only with ``download=True`` prepares) a TFDS builder.

    Raises:
        UserDataError: unknown builder, not prepared, or not an image
            classification dataset.
    """
    import tensorflow_datasets as tfds
    name = name[len(PREFIX):] if is_tfds_name(name) else name
    try:
        builder = tfds.builder(name, data_dir=tfds_data_dir)
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds
        raise UserDataError(
            f"--config.data.name=tfds:{name}: no such TFDS builder "
            f"({type(e).__name__}); see tfds.list_builders()") from None
    feats = builder.info.features
    if "image" not in feats or "label" not in feats or \
            not hasattr(feats["label"], "names"):
        raise UserDataError(
            f"--config.data.name=tfds:{name} has no 'image' + ClassLabel "
            "'label' features; pick an image-classification builder")
    if download or manual_dir:
        try:
            cfg = tfds.download.DownloadConfig(
                manual_dir=os.path.expanduser(os.fspath(manual_dir))
                if manual_dir else None)
            builder.download_and_prepare(download_config=cfg)
        except Exception as e:  # noqa: BLE001
            raise UserDataError(
                f"--config.data.name=tfds:{name}: preparing failed "
                f"({type(e).__name__}: {str(e).strip().splitlines()[0][:160]}); "
                "check --config.data.data_dir (the manual dir) or pass "
                "--config.data.download=True") from None
    elif not builder.is_prepared():
        raise UserDataError(
            f"--config.data.name=tfds:{name} is not prepared in "
            f"{tfds_data_dir or '~/tensorflow_datasets'}; pass "
            "--config.data.download=True to download it, or "
            "--config.data.data_dir=<folder with its manual download>")
    names = tuple(feats["label"].names)
    labels = []
    for split_name in sorted(builder.info.splits):
        ds = builder.as_dataset(split=split_name, shuffle_files=False,
                                decoders={"image": tfds.decode.SkipDecoding()})
        for batch in ds.map(lambda ex: ex["label"]).batch(8192).as_numpy_iterator():
            labels.extend(int(v) for v in batch)
    keys = tuple(f"{names[lab]}/{i:08d}" for i, lab in enumerate(labels))
    shape = feats["image"].shape
    return TfdsSource(name=name, builder=builder, class_names=names, keys=keys,
                      channels=3 if shape[-1] in (None, 1, 3, 4) else int(shape[-1]))


def _pooled(source):
    out = None
    for split_name in sorted(source.builder.info.splits):
        ds = source.builder.as_dataset(split=split_name, shuffle_files=False)
        out = ds if out is None else out.concatenate(ds)
    return out


def split_indices(source, split="train", seed=0, train_fraction=0.7,
                  val_fraction=0.0):
    """Dataset positions of one split (same protocol as folders)."""
    chosen = splits_lib.split_files(source.keys, seed=int(seed),
                                    train_fraction=float(train_fraction),
                                    val_fraction=float(val_fraction))
    chosen = chosen[splits_lib.normalize_split(split)]
    return np.asarray(sorted(int(k.rsplit("/", 1)[1]) for k in chosen), np.int64)


def load(source, split="train", *, image_size, norm=None, batch_size=64,
         shuffle=None, seed=0, train_fraction=0.7, val_fraction=0.0,
         cache=True, shuffle_seed=None):
    """``tf.data.Dataset`` of ``(float32 NHWC normalised, int32)`` for a split."""
    import tensorflow as tf
    from remotetrimmer_tf.data import pipeline
    split_name = splits_lib.normalize_split(split)
    shuffle = (split_name == "train") if shuffle is None else bool(shuffle)
    idx = split_indices(source, split_name, seed, train_fraction, val_fraction)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(idx), tf.ones([len(idx)], tf.int32)), default_value=0)
    size = int(image_size)

    def decode(i, ex):
        img = ex["image"]
        if img.shape.rank == 3 and img.shape[-1] == 1:
            img = tf.image.grayscale_to_rgb(img)
        elif img.shape.rank == 3 and img.shape[-1] == 4:
            img = img[..., :3]
        return pipeline.resize_uint8(img, size), tf.cast(ex["label"], tf.int32)

    ds = _pooled(source).enumerate().filter(
        lambda i, ex: tf.equal(table.lookup(i), 1)).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = pipeline.finish(ds, num_examples=len(idx), batch_size=batch_size,
                         shuffle=shuffle,
                         seed=seed if shuffle_seed is None else shuffle_seed,
                         cache=cache, norm=norm, drop_remainder=False)
    ds.class_names = list(source.class_names)
    ds.num_examples = int(len(idx))
    return ds


def measure_normalization(source, image_size, seed=0, train_fraction=0.7,
                          val_fraction=0.0, max_images=2000):
    """``(mean, std)`` on 0..1 of (up to ``max_images`` of) the train split."""
    ds = load(source, "train", image_size=image_size, norm=None, batch_size=256,
              shuffle=False, seed=seed, train_fraction=train_fraction,
              val_fraction=val_fraction, cache=False)
    total, total2, n = 0.0, 0.0, 0
    for x, _ in ds.as_numpy_iterator():
        x = x.astype(np.float64) / 255.0
        flat = x.reshape(-1, x.shape[-1])
        total = total + flat.sum(0)
        total2 = total2 + (flat ** 2).sum(0)
        n += flat.shape[0]
        if n >= max_images * x.shape[1] * x.shape[2]:
            break
    mean = total / n
    std = np.sqrt(np.maximum(total2 / n - mean ** 2, 1e-12))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
