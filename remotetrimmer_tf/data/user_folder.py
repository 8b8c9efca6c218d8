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
- GeoTIFF tiles (`data.geotiff`, ``tifffile`` or ``rasterio``): any band
  count and dtype (uint16 reflectances, float) are band arrays, every band
  kept (a 4-band R, G, B, NIR tile stays 4 bands, a 1-band tile 1 band); an
  8-bit RGB or palette TIFF is an ordinary image. Without a TIFF reader only
  the latter are read (Pillow) and the others are refused naming
  ``pip install tifffile``.

``bands=(3, 2, 1)`` keeps those bands of every array tile, in that order
(0-based indices; ``--config.data.bands``). A tile with NaN / infinite
values or pixels equal to its declared nodata value is refused. All files of
a folder must be one kind (images, or arrays with one band count): the tile
whose band count differs from the others is named. A folder that only wraps
the class folders (one subfolder and no files, as archives unpack:
``EuroSAT_MS/ds/.../tif/<Class>/``) is descended into. Every problem is raised
as `UserDataError` (a ``ValueError``) whose first line names the file, folder
or flag and the fix.

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

import collections
import dataclasses
import os
import pathlib

import numpy as np

from remotetrimmer_tf.data import geotiff
from remotetrimmer_tf.errors import first_line
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
        channels: what the model sees: 3 for images, the selected band count
            for arrays.
        bands: the selected band indices (0-based), or None for every band.
        file_channels: the band count of the files.
    """

    root: pathlib.Path
    class_names: tuple
    files: tuple
    kind: str
    channels: int
    bands: tuple = None
    file_channels: int = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def tiff_reader_available() -> bool:
    """Whether multi-band TIFFs can be read (``tifffile`` or ``rasterio``)."""
    return geotiff.reader_available()


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


def parse_bands(bands):
    """``"3,2,1"`` / a sequence / an int / None -> tuple of 0-based band
    indices, or None (every band).

    Raises:
        UserDataError: naming ``--config.data.bands`` (not whole numbers >= 0,
            or a band listed twice).
    """
    if bands is None or bands == "" or bands == ():
        return None
    items = str(bands).strip("()[] ").split(",") if isinstance(bands, str) else \
        (list(bands) if isinstance(bands, (list, tuple)) else [bands])
    try:
        out = tuple(int(str(b).strip()) for b in items if str(b).strip() != "")
        if any(isinstance(b, float) and b != int(b) for b in items):
            raise ValueError
    except ValueError:
        raise UserDataError(f"--config.data.bands={bands!r} is not a list of band "
                            "indices; pass 0-based indices, e.g. "
                            "--config.data.bands=3,2,1") from None
    if not out or min(out) < 0:
        raise UserDataError(f"--config.data.bands={bands!r}: band indices are "
                            "0-based and >= 0; pass e.g. --config.data.bands=3,2,1")
    dup = sorted({b for b in out if out.count(b) > 1})
    if dup:
        raise UserDataError(f"--config.data.bands lists band {dup[0]} twice; "
                            "name every band once")
    return out


def check_bands(bands, kind, channels, where):
    """The selected bands exist in tiles of ``channels`` bands.

    Raises:
        UserDataError: naming ``--config.data.bands``, the band count and the
            valid range (or, for RGB images, that there is nothing to select).
    """
    if bands is None:
        return
    flag = f"--config.data.bands={','.join(str(b) for b in bands)}"
    if kind == "image":
        raise UserDataError(
            f"{flag}: the files in {where} are RGB images, not band tiles; leave "
            "--config.data.bands out (it selects bands of .tif / .npy tiles)")
    bad = [b for b in bands if b >= channels]
    if bad:
        raise UserDataError(
            f"{flag}: band {bad[0]} is out of range; the tiles in {where} have "
            f"{channels} bands, indices 0-{channels - 1}")


def find_class_root(root):
    """``root``, or the folder it only wraps: while it holds one subfolder
    (itself holding folders) and no file, that subfolder (``EuroSAT_MS/ds/
    images/.../tif`` as the archive unpacks)."""
    root = pathlib.Path(os.fspath(root)).expanduser()
    for _ in range(8):
        if not root.is_dir():
            return root
        entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
        dirs = [e for e in entries if e.is_dir()]
        if len(dirs) != 1 or len(entries) != 1:
            return root
        inner = root / dirs[0].name
        if not any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(inner)):
            return root
        root = inner
    return root


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


def _tiff_kind(path):
    """A TIFF: an 8-bit 3-band (RGB) or palette one is an image, any other a
    band array (every band kept)."""
    if tiff_reader_available():
        bands, dtype, palette = geotiff.tiff_info(path)
        if palette or (dtype == np.uint8 and bands == 3):
            return "image", 3
        return "array", int(bands)
    from PIL import Image
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        mode = img.mode
    if mode not in ("RGB", "P"):
        raise OSError(f"a {mode} TIFF is read as band tiles only by a TIFF reader")
    return "image", 3


def _file_kind(path):
    """``("image", 3)`` or ``("array", bands)`` from a file's header."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext in ARRAY_EXTENSIONS:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.ndim not in (2, 3) or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"expected a numeric (H, W) or (H, W, bands) "
                             f"array, got shape {arr.shape} dtype {arr.dtype}")
        return "array", 1 if arr.ndim == 2 else int(arr.shape[-1])
    if ext in TIFF_EXTENSIONS:
        return _tiff_kind(path)
    from PIL import Image
    with Image.open(path) as img:
        img.verify()
    return "image", 3


def _says(kind):
    return "an RGB image" if kind[0] == "image" else f"a {kind[1]}-band array"


# what a reader raises for a file it cannot read (tifffile: KeyError or
# ValueError for a codec that needs imagecodecs)
_READ_ERRORS = (OSError, ValueError, KeyError, SyntaxError, ImportError)


def _unreadable(path, e):
    """The one-line error for a file that cannot be read, with its fix: a
    TIFF compressed with a codec tifffile decodes only through imagecodecs
    (LZW, PackBits, JPEG, a floating-point predictor) needs that package;
    a multi-band TIFF without any TIFF reader needs tifffile."""
    text = first_line(str(e).strip().strip("'\""), 120)
    said = f"{type(e).__name__}: {text}" if text else type(e).__name__
    if "imagecodecs" in str(e):
        fix = "pip install imagecodecs (part of remotetrimmer_tf[geo])"
    elif os.path.splitext(str(path))[1].lower() in TIFF_EXTENSIONS and \
            not tiff_reader_available():
        fix = "multi-band TIFFs need `pip install tifffile`; or replace or remove the file"
    else:
        fix = "replace or remove the file"
    return UserDataError(f"{path}: unreadable ({said}); {fix}")


def _header(root, f):
    try:
        return _file_kind(root / f)
    except _READ_ERRORS as e:
        raise _unreadable(root / f, e) from None


def check_file_headers(root, files):
    """Opens every file's header: unreadable files and mixed kinds fail here.

    Returns:
        ``(kind, channels)`` shared by all files.

    Raises:
        UserDataError: naming the first unreadable file, or the first file
            whose kind / band count differs from most files'.
    """
    root = pathlib.Path(root)
    kinds = {f: _header(root, f) for f in files}
    if not kinds:
        return "image", 3
    counts = collections.Counter(kinds.values())
    common, n = counts.most_common(1)[0]
    odd = next((f for f in files if kinds[f] != common), None)
    if odd is not None:
        example = next(f for f in files if kinds[f] == common)
        raise UserDataError(
            f"{root / odd} is {_says(kinds[odd])} but {n} other file(s) are "
            f"{_says(common)} (e.g. {root / example}); a folder must hold one kind "
            "of file with one band count: replace or remove it")
    return common


def _value_problem(path):
    arr = read_raw(path)
    nodata = geotiff.nodata_of(path) if str(path).lower().endswith(TIFF_EXTENSIONS) \
        else None
    return geotiff.value_problem(arr, nodata)


def check_array_values(root, files, num_workers=None):
    """Every band tile's values are usable (no NaN / infinite / nodata).

    Raises:
        UserDataError: naming the first bad tile, what is wrong and the fix.
    """
    import concurrent.futures
    paths = [pathlib.Path(root) / f for f in files]
    workers = num_workers or min(8, 2 * (os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        problems = list(pool.map(_value_problem, paths))
    for p, problem in zip(paths, problems):
        if problem:
            raise UserDataError(f"{p}: {problem}; fill those pixels (e.g. with the "
                                "band's mean) or remove the tile")


def open_folder(root, classes=None, check_headers=True, bands=None) -> FolderSource:
    """Lists and checks a user folder.

    Args:
        root: folder holding ``<class>/`` subfolders (or a folder that only
            wraps it, see `find_class_root`).
        classes: class names in label order (list or ``"a,b,c"``), or None
            for the sorted subfolder names.
        check_headers: open every file's header now, and read every band
            tile's values (unreadable, mixed, NaN / nodata files fail before
            any training).
        bands: 0-based band indices to keep of every band tile (list or
            ``"3,2,1"``), or None for every band.

    Returns:
        A `FolderSource`.
    """
    bands = parse_bands(bands)
    root = find_class_root(pathlib.Path(os.fspath(root)).expanduser().resolve())
    names, files = list_class_files(root, classes)
    if check_headers:
        kind, channels = check_file_headers(root, files)
    else:
        kind, channels = _header(root, files[0])
    check_bands(bands, kind, channels, root)
    if check_headers and kind == "array":
        check_array_values(root, files)
    return FolderSource(root=root, class_names=tuple(names), files=tuple(files),
                        kind=kind, channels=len(bands) if bands else int(channels),
                        bands=bands, file_channels=int(channels))


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


def read_raw(path):
    """A band tile as stored: ``(H, W, bands)`` of its own dtype."""
    ext = os.path.splitext(str(path))[1].lower()
    try:
        arr = np.load(path, allow_pickle=False) if ext in ARRAY_EXTENSIONS \
            else geotiff.read_tiff(path)
    except _READ_ERRORS as e:
        raise _unreadable(path, e) from None
    return arr[..., None] if arr.ndim == 2 else arr


def read_array(path, image_size, bands=None, expect=None):
    """One band tile -> float32 ``(image_size, image_size, len(bands))``.

    Args:
        path: a ``.npy`` or TIFF tile.
        image_size: output height and width (bilinear per band).
        bands: 0-based indices to keep (None: every band).
        expect: the band count the tile must have (None: any).

    Raises:
        UserDataError: naming the file: unreadable, another band count,
            NaN / infinite / nodata values.
    """
    arr = read_raw(path)
    if expect is not None and arr.shape[-1] != expect:
        raise UserDataError(
            f"{path} has {arr.shape[-1]} bands but the folder's tiles have "
            f"{expect}; a folder must hold one band count: replace or remove it")
    nodata = geotiff.nodata_of(path) if str(path).lower().endswith(TIFF_EXTENSIONS) \
        else None
    problem = geotiff.value_problem(arr, nodata)
    if problem:
        raise UserDataError(f"{path}: {problem}; fill those pixels (e.g. with the "
                            "band's mean) or remove the tile")
    if bands is not None:
        if max(bands) >= arr.shape[-1]:
            raise UserDataError(
                f"{path} has {arr.shape[-1]} bands; --config.data.bands="
                f"{','.join(str(b) for b in bands)} asks for band {max(bands)}")
        arr = arr[..., list(bands)]
    return _resize_bands(np.asarray(arr, np.float32), int(image_size))


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
        out[i] = read_array(p, image_size, source.bands,
                            source.file_channels or source.channels)
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
