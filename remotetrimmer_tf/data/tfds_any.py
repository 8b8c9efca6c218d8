"""Any TFDS image-classification builder (``--config.data.name=tfds:<builder>``).

Every split the builder has is pooled, each example gets the split key
``"<class>/<running index>"``, and our seeded stratified split
(`splits.split_files`) is applied, exactly as for a folder. The input is the
builder's supervised input (else ``image``): an ``Image`` feature is decoded
to RGB, a band-array ``Tensor`` feature (``eurosat/all``: ``sentinel2``, 13
float32 bands) keeps its bands (``bands=`` selects some, 0-based) and is
normalised per band on raw values, as band tiles of a folder are. Nothing is
downloaded unless ``download=True``: without it a builder is only prepared
from ``manual_dir`` (handed to TFDS for builders that read a manually
downloaded archive, e.g. ``resisc45``), with every network connection
refused while it runs (`no_network`), so a builder that would download
fails with one line saying to pass ``--config.data.download=True``.
Prepared data lives in ``tfds_data_dir`` (default: ``$TFDS_DATA_DIR`` or
``~/tensorflow_datasets``). The builder must have an image (or band array)
and a ClassLabel feature.

Example:

```python
from remotetrimmer_tf.data import tfds_any

src = tfds_any.open_builder("resisc45", manual_dir="~/Downloads")
ds = tfds_any.load(src, "train", image_size=64, norm=(src.mean, src.std))
```
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import socket

import numpy as np

from remotetrimmer_tf.data import splits as splits_lib
from remotetrimmer_tf.data.user_folder import UserDataError, check_bands, parse_bands

PREFIX = "tfds:"


def is_tfds_name(name) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX) and \
        len(name) > len(PREFIX)


class NetworkRefused(RuntimeError):
    """A network connection attempted inside `no_network` (not an OSError,
    so HTTP clients do not catch it and retry)."""


@contextlib.contextmanager
def no_network():
    """Refuses every name lookup and socket connection in this process while active.

    Yields:
        A list that records the refused addresses (empty: none attempted).
    """
    attempts = []
    saved = (socket.socket.connect, socket.socket.connect_ex,
             socket.create_connection, socket.getaddrinfo)

    def refuse(*args, **kwargs):
        address = args[1] if len(args) > 1 and isinstance(args[0], socket.socket) \
            else (args[0] if args else kwargs.get("address"))
        attempts.append(address)
        raise NetworkRefused(f"network access to {address!r} refused (no "
                             "download was asked for)")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    try:
        yield attempts
    finally:
        (socket.socket.connect, socket.socket.connect_ex,
         socket.create_connection, socket.getaddrinfo) = saved


def default_tfds_data_dir():
    """Where TFDS keeps prepared datasets when no folder is given."""
    return os.environ.get("TFDS_DATA_DIR",
                          os.path.join("~", "tensorflow_datasets"))


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A prepared TFDS builder with our split keys.

    Args:
        name: the builder name (``"resisc45"``).
        builder: the ``tfds`` builder.
        class_names: label names.
        keys: split keys ``"<class>/<index>"`` in dataset order.
        channels: channels the model sees (3 for images: grayscale is
            promoted; the selected band count for band arrays).
        image_key, label_key: the input and label features.
        kind: ``"image"`` or ``"array"`` (a band-array Tensor feature).
        bands: selected band indices, or None for every band.
        file_channels: the band count of the feature.
    """

    name: str
    builder: object
    class_names: tuple
    keys: tuple
    channels: int = 3
    image_key: str = "image"
    label_key: str = "label"
    kind: str = "image"
    bands: tuple = None
    file_channels: int = 3

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _keys_of(feats, supervised):
    """``(input key, label key, kind, bands)`` of a builder's features."""
    import tensorflow_datasets as tfds
    image, label = supervised if supervised else ("image", "label")
    if image not in feats or label not in feats or not hasattr(feats[label], "names"):
        return None
    feat = feats[image]
    shape = tuple(feat.shape)
    if isinstance(feat, tfds.features.Image):
        return image, label, "image", 3
    if isinstance(feat, tfds.features.Tensor) and len(shape) == 3 and shape[-1] \
            and np.issubdtype(np.dtype(feat.np_dtype), np.number):
        return image, label, "array", int(shape[-1])
    return None


def _prepare(builder, name, manual_dir, download):
    """download_and_prepare from ``manual_dir`` (network refused unless asked)."""
    import tensorflow_datasets as tfds
    cfg = tfds.download.DownloadConfig(
        manual_dir=os.path.expanduser(os.fspath(manual_dir)) if manual_dir else None)
    guard = contextlib.nullcontext([]) if download else no_network()
    with guard as attempts:
        try:
            builder.download_and_prepare(download_config=cfg)
            failure = None
        except Exception as e:  # noqa: BLE001 - tfds raises many kinds
            failure = e
    if failure is not None and attempts:
        raise UserDataError(
            f"--config.data.name=tfds:{name} needs to download files "
            f"(its manual folder --config.data.data_dir={manual_dir} is "
            "not enough); pass --config.data.download=True to download "
            "it") from None
    if failure is not None:
        text = str(failure).strip().splitlines()
        raise UserDataError(
            f"--config.data.name=tfds:{name}: preparing failed "
            f"({type(failure).__name__}: {text[0][:160] if text else ''}); "
            "check --config.data.data_dir (the manual download folder) or "
            "pass --config.data.download=True") from None


def _builder(tfds, name, tfds_data_dir):
    try:
        return tfds.builder(name, data_dir=tfds_data_dir)
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds
        import difflib
        try:
            known = tfds.list_builders(with_community_datasets=False)
        except Exception:  # noqa: BLE001
            known = []
        close = difflib.get_close_matches(name.split("/")[0], known, n=1)
        hint = f"did you mean tfds:{close[0]}? " if close else ""
        raise UserDataError(
            f"--config.data.name=tfds:{name}: no such TFDS builder "
            f"({type(e).__name__}); {hint}see tfds.list_builders()") from None


def open_builder(  # long: one branch per way a builder is found
        name, manual_dir=None, download=False, tfds_data_dir=None, bands=None):
    """Opens a TFDS builder, preparing it from ``manual_dir`` if needed.

    Args:
        name: ``"tfds:<builder>"`` or ``"<builder>"`` (``"eurosat/all"``).
        manual_dir: the folder holding the builder's manual download.
        download: allow TFDS to download (otherwise every network connection
            is refused while the builder is prepared).
        tfds_data_dir: where prepared datasets live (default
            `default_tfds_data_dir`).
        bands: 0-based band indices to keep of a band-array feature.

    Raises:
        UserDataError: unknown builder (did-you-mean), not prepared, needs a
            download that was not asked for, not an image classification
            dataset, or ``bands`` out of range / given for RGB images.
    """
    import tensorflow_datasets as tfds
    bands = parse_bands(bands)
    name = name[len(PREFIX):] if is_tfds_name(name) else name
    tfds_data_dir = os.path.expanduser(os.fspath(tfds_data_dir or
                                                 default_tfds_data_dir()))
    builder = _builder(tfds, name, tfds_data_dir)
    found = _keys_of(builder.info.features, builder.info.supervised_keys)
    if found is None:
        raise UserDataError(
            f"--config.data.name=tfds:{name} has no image (or band array) + "
            "ClassLabel features; pick an image-classification builder")
    image_key, label_key, kind, channels = found
    check_bands(bands, kind, channels, f"tfds:{name}")
    if download or (manual_dir and not builder.is_prepared()):
        _prepare(builder, name, manual_dir, download)
    elif not builder.is_prepared():
        raise UserDataError(
            f"--config.data.name=tfds:{name} is not prepared in {tfds_data_dir} and "
            "nothing is downloaded unless asked; pass "
            "--config.data.download=True to download it, or "
            "--config.data.data_dir=<folder with its manual download>")
    names = tuple(builder.info.features[label_key].names)
    labels = []
    decoders = {image_key: tfds.decode.SkipDecoding()} if kind == "image" else None
    for split_name in sorted(builder.info.splits):
        ds = builder.as_dataset(split=split_name, shuffle_files=False, decoders=decoders)
        for batch in ds.map(lambda ex: ex[label_key]).batch(8192).as_numpy_iterator():
            labels.extend(int(v) for v in batch)
    keys = tuple(f"{names[lab]}/{i:08d}" for i, lab in enumerate(labels))
    return TfdsSource(name=name, builder=builder, class_names=names, keys=keys,
                      channels=3 if kind == "image" else len(bands or range(channels)),
                      image_key=image_key, label_key=label_key, kind=kind,
                      bands=bands, file_channels=channels)


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
        img = ex[source.image_key]
        label = tf.cast(ex[source.label_key], tf.int32)
        if source.kind == "array":
            return _bands_of(img, source.bands, size), label
        if img.shape.rank == 3 and img.shape[-1] == 1:
            img = tf.image.grayscale_to_rgb(img)
        elif img.shape.rank == 3 and img.shape[-1] == 4:
            img = img[..., :3]
        return pipeline.resize_uint8(img, size), label

    ds = _pooled(source).enumerate().filter(
        lambda i, ex: tf.equal(table.lookup(i), 1)).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = pipeline.finish(ds, num_examples=len(idx), batch_size=batch_size,
                         shuffle=shuffle,
                         seed=seed if shuffle_seed is None else shuffle_seed,
                         cache=cache, norm=norm, drop_remainder=False,
                         scale=255.0 if source.kind == "image" else 1.0)
    ds.class_names = list(source.class_names)
    ds.num_examples = int(len(idx))
    return ds


def _bands_of(x, bands, size):
    """A band-array example -> float32 ``(size, size, bands)`` (bilinear)."""
    import tensorflow as tf
    x = tf.cast(x, tf.float32)
    if bands is not None:
        x = tf.gather(x, list(bands), axis=-1)
    if x.shape[0] != size or x.shape[1] != size:
        x = tf.image.resize(x, [size, size], method="bilinear", antialias=True)
    x.set_shape([size, size, len(bands) if bands else x.shape[-1]])
    return x


def measure_normalization(source, image_size, seed=0, train_fraction=0.7,
                          val_fraction=0.0, max_images=2000):
    """Per-channel ``(mean, std)`` of (up to ``max_images`` of) the train
    split: on 0..1 for images, on the raw values for band arrays.

    Raises:
        UserDataError: a train example holds NaN / infinite values.
    """
    ds = load(source, "train", image_size=image_size, norm=None, batch_size=256,
              shuffle=False, seed=seed, train_fraction=train_fraction,
              val_fraction=val_fraction, cache=False)
    total, total2, n = 0.0, 0.0, 0
    for x, _ in ds.as_numpy_iterator():
        x = x.astype(np.float64) / (255.0 if source.kind == "image" else 1.0)
        if not np.all(np.isfinite(x)):
            raise UserDataError(
                f"--config.data.name=tfds:{source.name}: a train example holds NaN / "
                "infinite values (nodata); clean the dataset or use a folder of "
                "tiles without them")
        flat = x.reshape(-1, x.shape[-1])
        total = total + flat.sum(0)
        total2 = total2 + (flat ** 2).sum(0)
        n += flat.shape[0]
        if n >= max_images * x.shape[1] * x.shape[2]:
            break
    mean = total / n
    std = np.sqrt(np.maximum(total2 / n - mean ** 2, 1e-12))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
