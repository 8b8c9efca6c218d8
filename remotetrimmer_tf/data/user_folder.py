"""Your own data: any ``DIR/<class>/*`` folder of images or band arrays.

The generic counterpart of the EuroSAT / UC Merced specs: classes are the
sorted subfolder names (or a list you give), the split is the same seeded,
stratified one (`splits.split_files`), decoding reuses `pipeline.from_files`
(tf.data) and `numpy_source` (Pillow), and the normalisation is measured on
the train split unless given. No TensorFlow is imported at module level.

Supported files:

- images: ``.jpg .jpeg .png .tif .tiff .bmp`` — grayscale is promoted to RGB
  and RGBA (or palette) images lose alpha: the model always sees 3 channels.
  Images of mixed sizes are resized to ``image_size``.
- band arrays: ``.npy`` tiles of shape ``(H, W)`` or ``(H, W, N)`` — any
  number of bands, any numeric dtype; the model sees N channels, normalised
  per band with the train split's mean / std of the raw values.
- multi-band GeoTIFF: read as band arrays only when ``tifffile`` is
  importable (``pip install tifffile``); Pillow reads 1-, 3- and 4-band TIFFs
  as images but not multispectral ones. ``rasterio`` is not used.

All files of a folder must be one kind (images, or arrays with one band
count). Every problem is raised as `UserDataError` (a ``ValueError``) whose
first line names the file or folder and the fix.

Example:

```python
from remotetrimmer_tf.data import user_folder

src = user_folder.open_folder("my_scenes")              # DIR/<class>/*
files, labels = user_folder.split(src, "train", seed=0)
norm = user_folder.measure_normalization(src, files, image_size=64)
ds = user_folder.load(src, "train", image_size=64, norm=norm)   # tf.data
x, y = user_folder.load_numpy(src, "test", image_size=64, norm=norm)
```
"""
from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from remotetrimmer_tf.data import splits as splits_lib
from remotetrimmer_tf.data.registry import IMAGE_EXTENSIONS

ARRAY_EXTENSIONS = (".npy",)
TIFF_EXTENSIONS = (".tif", ".tiff")
EXTENSIONS = IMAGE_EXTENSIONS + ARRAY_EXTENSIONS
MAX_NORM_IMAGES = 2000   # train images the normalisation is measured on


class UserDataError(ValueError):
    """A user folder that cannot be used; the message names file and fix."""


@dataclasses.dataclass(frozen=True)
class FolderSource:
    """A user folder, listed and checked.

    Args:
        root: the folder holding ``<class>/`` subfolders.
        class_names: the classes, in label order.
        files: sorted relative paths ``"<class>/<file>"`` of every sample.
        kind: ``"image"`` (decoded to RGB uint8) or ``"array"`` (band arrays).
        channels: 3 for images, the band count for arrays.
    """

    root: pathlib.Path
    class_names: tuple
    files: tuple
    kind: str
    channels: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def tiff_reader_available() -> bool:
    """Whether multi-band TIFFs can be read (``tifffile`` importable)."""
    try:
        import tifffile  # noqa: F401
        return True
    except ImportError:
        return False


def parse_classes(classes):
    """``"a,b,c"`` / a sequence / None -> tuple of names or None."""
    if classes is None or classes == "" or classes == ():
        return None
    if isinstance(classes, str):
        names = [c.strip() for c in classes.split(",")]
    else:
        names = [str(c).strip() for c in classes]
    names = [c for c in names if c]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise UserDataError(f"--config.data.classes lists {dup} twice; "
                            "name every class once")
    return tuple(names) or None


def discover_classes(root, classes=None) -> tuple:
    """The class names of ``root``: ``classes`` if given, else sorted subfolders.

    Raises:
        UserDataError: missing folder, fewer than two classes, or a listed
            class without a subfolder.
    """
    root = pathlib.Path(os.fspath(root)).expanduser()
    if not root.is_dir():
        raise UserDataError(
            f"{root}: no such folder; pass --config.data.data_dir=<folder "
            "holding one subfolder per class>")
    subdirs = sorted(e.name for e in os.scandir(root)
                     if e.is_dir() and not e.name.startswith("."))
    wanted = parse_classes(classes)
    if wanted is None:
        names = tuple(subdirs)
    else:
        missing = [c for c in wanted if c not in subdirs]
        if missing:
            raise UserDataError(
                f"{root}: no subfolder for class(es) {missing} of "
                f"--config.data.classes; the subfolders are {subdirs}")
        names = wanted
    if len(names) < 2:
        found = f"only {list(names)}" if names else "no class subfolders"
        raise UserDataError(
            f"{root}: {found}; a classifier needs at least two classes, laid "
            "out as <data_dir>/<class>/<image> (one subfolder per class)")
    return names


def list_class_files(root, classes=None) -> tuple:
    """Lists a user folder: ``(class_names, files)``.

    The one listing function of user folders (validation and loaders call
    it): ``files`` are sorted relative paths ``"<class>/<file>"`` with a
    supported extension; hidden files are skipped, other files are ignored.

    Raises:
        UserDataError: see `discover_classes`; a class folder with no file
            of a supported type.
    """
    root = pathlib.Path(os.fspath(root)).expanduser()
    names = discover_classes(root, classes)
    files = []
    for cls in names:
        found = sorted(
            e.name for e in os.scandir(root / cls)
            if e.is_file() and not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in EXTENSIONS)
        if not found:
            raise UserDataError(
                f"{root / cls}: no images ({', '.join(EXTENSIONS)}) in this "
                "class folder; add images or leave the class out with "
                "--config.data.classes")
        files.extend(f"{cls}/{n}" for n in found)
    return names, sorted(files)


def check_class_sizes(files, train_fraction=0.7, val_fraction=0.0):
    """Every class must give at least one train, test (and val) sample.

    Raises:
        UserDataError: naming the smallest offending class and the count.
    """
    counts = {}
    for f in files:
        counts[splits_lib.split_key(f).split("/", 1)[0]] = counts.get(
            splits_lib.split_key(f).split("/", 1)[0], 0) + 1
    need = 3 if float(val_fraction) > 0 else 2
    small = sorted((n, c) for c, n in counts.items() if n < need)
    if small:
        n, cls = small[0]
        what = "train, val and test" if need == 3 else "train and test"
        raise UserDataError(
            f"class folder '{cls}' has {n} image(s) but the split needs at "
            f"least {need} per class (one each for {what}); add images to it "
            "or leave it out with --config.data.classes")


def _file_kind(path):
    """``("image", 3)`` or ``("array", bands)`` from a file's header."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext in ARRAY_EXTENSIONS:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.ndim not in (2, 3) or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"expected a numeric (H, W) or (H, W, bands) "
                             f"array, got shape {arr.shape} dtype {arr.dtype}")
        return "array", 1 if arr.ndim == 2 else int(arr.shape[-1])
    from PIL import Image
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            bands = len(img.getbands())
            if ext in TIFF_EXTENSIONS and bands not in (1, 3, 4):
                raise OSError(f"{bands}-band TIFF")
        return "image", 3
    except OSError:
        if ext in TIFF_EXTENSIONS and tiff_reader_available():
            import tifffile
            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
            return "array", 1 if len(shape) == 2 else int(shape[-1])
        raise


def check_file_headers(root, files):
    """Opens every file's header: unreadable files and mixed kinds fail here.

    Returns:
        ``(kind, channels)`` shared by all files.

    Raises:
        UserDataError: naming the first unreadable file, or two files of
            different kinds / band counts.
    """
    root = pathlib.Path(root)
    first = None
    for f in files:
        try:
            kind = _file_kind(root / f)
        except (OSError, ValueError, SyntaxError) as e:
            hint = ""
            if os.path.splitext(f)[1].lower() in TIFF_EXTENSIONS and \
                    not tiff_reader_available():
                hint = " (multi-band TIFFs need `pip install tifffile`)"
            raise UserDataError(
                f"{root / f}: unreadable ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0][:120] if str(e).strip() else ''})"
                f"{hint}; replace or remove the file") from None
        if first is None:
            first = (f, kind)
        elif kind != first[1]:
            def _says(k):
                return "an RGB image" if k[0] == "image" else f"a {k[1]}-band array"
            raise UserDataError(
                f"{root / f} is {_says(kind)} but {root / first[0]} is "
                f"{_says(first[1])}; a folder must hold one kind of file with "
                "one band count")
    return first[1] if first else ("image", 3)


def open_folder(root, classes=None, check_headers=True) -> FolderSource:
    """Lists and checks a user folder.

    Args:
        root: folder holding ``<class>/`` subfolders.
        classes: class names in label order (list or ``"a,b,c"``), or None
            for the sorted subfolder names.
        check_headers: open every file's header now (unreadable or mixed
            files fail before any training).

    Returns:
        A `FolderSource`.
    """
    root = pathlib.Path(os.fspath(root)).expanduser().resolve()
    names, files = list_class_files(root, classes)
    if check_headers:
        kind, channels = check_file_headers(root, files)
    else:
        ext = os.path.splitext(files[0])[1].lower()
        kind, channels = ("array", _file_kind(root / files[0])[1]) \
            if ext in ARRAY_EXTENSIONS else ("image", 3)
    return FolderSource(root=root, class_names=tuple(names), files=tuple(files),
                        kind=kind, channels=int(channels))


def split(source: FolderSource, split="train", seed=0, train_fraction=0.7,
          val_fraction=0.0):
    """``(files, labels)`` of one split (the seeded stratified split).

    Raises:
        UserDataError: a class too small for the split.
    """
    split_name = splits_lib.normalize_split(split)
    if split_name == "val" and not val_fraction:
        raise UserDataError("split 'val' needs --config.data.val_fraction > 0")
    check_class_sizes(source.files, train_fraction, val_fraction)
    chosen = splits_lib.split_files(source.files, seed=int(seed),
                                    train_fraction=float(train_fraction),
                                    val_fraction=float(val_fraction))[split_name]
    index = {c: i for i, c in enumerate(source.class_names)}
    labels = np.asarray([index[f.split("/", 1)[0]] for f in chosen], np.int32)
    return list(chosen), labels


# ---------------------------------------------------------------- decoding
def _resize_bands(arr, size):
    """float32 (H, W, N) -> (size, size, N), bilinear per band (Pillow 'F')."""
    from PIL import Image
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr
    out = np.empty((size, size, arr.shape[-1]), np.float32)
    for b in range(arr.shape[-1]):
        out[..., b] = np.asarray(
            Image.fromarray(np.ascontiguousarray(arr[..., b]), mode="F").resize(
                (size, size), Image.BILINEAR), np.float32)
    return out


def read_array(path, image_size):
    """One band-array file -> float32 (image_size, image_size, bands)."""
    ext = os.path.splitext(str(path))[1].lower()
    try:
        if ext in ARRAY_EXTENSIONS:
            arr = np.load(path, allow_pickle=False)
        else:
            import tifffile
            arr = tifffile.imread(path)
    except (OSError, ValueError) as e:
        raise UserDataError(f"{path}: unreadable ({e}); replace or remove "
                            "the file") from None
    arr = np.asarray(arr, np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    return _resize_bands(arr, int(image_size))


def decode(source: FolderSource, files, image_size, num_workers=None):
    """Decodes files: uint8 RGB for images, float32 bands for arrays."""
    from remotetrimmer_tf.data import numpy_source
    paths = [source.root / f for f in files]
    if source.kind == "image":
        try:
            return numpy_source.decode_files(paths, int(image_size), num_workers)
        except ValueError as e:
            raise UserDataError(f"{str(e).splitlines()[0]}; replace or remove "
                                "the file") from None
    out = np.empty((len(paths), int(image_size), int(image_size),
                    source.channels), np.float32)
    for i, p in enumerate(paths):
        arr = read_array(p, image_size)
        if arr.shape[-1] != source.channels:
            raise UserDataError(
                f"{p} has {arr.shape[-1]} bands but the folder's files have "
                f"{source.channels}; a folder must hold one band count")
        out[i] = arr
    return out


def measure_normalization(source: FolderSource, train_files, image_size,
                          max_images=MAX_NORM_IMAGES):
    """Per-channel ``(mean, std)`` of the train split.

    Images: on pixel values scaled to 0..1 (the loaders compute
    ``(x / 255 - mean) / std``); arrays: on the raw band values (the
    loaders compute ``(x - mean) / std``). At most ``max_images`` files,
    evenly spaced over the sorted train list, are decoded.

    Returns:
        ``(mean, std)``, tuples of ``channels`` floats (std floored at 1e-6).
    """
    files = list(train_files)
    if not files:
        raise UserDataError(f"{source.root}: the train split is empty")
    if len(files) > max_images:
        idx = np.linspace(0, len(files) - 1, max_images).round().astype(int)
        files = [files[i] for i in idx]
    x = decode(source, files, image_size).astype(np.float64)
    if source.kind == "image":
        x /= 255.0
    flat = x.reshape(-1, x.shape[-1])
    mean = flat.mean(axis=0)
    std = np.maximum(flat.std(axis=0), 1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def normalize(source: FolderSource, x, norm):
    """Decoded samples -> float32 normalised with ``norm = (mean, std)``."""
    x = np.asarray(x, np.float32)
    if norm is None:
        return x
    mean = np.asarray(norm[0], np.float32)
    std = np.asarray(norm[1], np.float32)
    if mean.shape != (x.shape[-1],) or std.shape != (x.shape[-1],):
        raise UserDataError(
            f"normalisation has {mean.size} mean / {std.size} std values but "
            f"the data has {x.shape[-1]} channels; give one per channel")
    if source.kind == "image":
        x = x / 255.0
    return (x - mean) / std


def load_numpy(source: FolderSource, split_name="train", *, image_size, norm=None,
               seed=0, train_fraction=0.7, val_fraction=0.0, shuffle=False,
               shuffle_seed=None):
    """A split as numpy ``(x float32 NHWC normalised, y int32)``."""
    files, labels = split(source, split_name, seed, train_fraction, val_fraction)
    if shuffle:
        perm = np.random.RandomState(seed if shuffle_seed is None
                                     else shuffle_seed).permutation(len(files))
        files = [files[i] for i in perm]
        labels = labels[perm]
    x = normalize(source, decode(source, files, image_size), norm)
    return x, labels


def load(source: FolderSource, split_name="train", *, image_size, norm=None,
         batch_size=64, shuffle=None, seed=0, train_fraction=0.7,
         val_fraction=0.0, cache=True, shuffle_seed=None):
    """A batched, prefetched ``tf.data.Dataset`` of ``(float32 NHWC, int32)``.

    Images go through `pipeline.from_files` (parallel decode, resize,
    cache); band arrays are decoded with numpy once and sliced.

    Returns:
        The dataset, with attributes ``class_names`` and ``num_examples``.
    """
    split_name = splits_lib.normalize_split(split_name)
    shuffle = (split_name == "train") if shuffle is None else bool(shuffle)
    sseed = seed if shuffle_seed is None else shuffle_seed
    files, labels = split(source, split_name, seed, train_fraction, val_fraction)
    if source.kind == "image":
        from remotetrimmer_tf.data import pipeline
        ds = pipeline.from_files([source.root / f for f in files], labels,
                                 image_size=int(image_size),
                                 batch_size=int(batch_size), shuffle=shuffle,
                                 seed=sseed, cache=cache, norm=norm)
    else:
        import tensorflow as tf
        x = normalize(source, decode(source, files, image_size), norm)
        if shuffle:
            perm = np.random.RandomState(int(sseed)).permutation(len(files))
            x, labels = x[perm], labels[perm]
        ds = tf.data.Dataset.from_tensor_slices((x, labels))
        if shuffle:
            ds = ds.shuffle(max(1, len(files)), seed=int(sseed),
                            reshuffle_each_iteration=True)
        ds = ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
    ds.class_names = list(source.class_names)
    ds.num_examples = len(files)
    return ds
