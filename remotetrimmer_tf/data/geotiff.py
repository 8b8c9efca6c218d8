"""GeoTIFF tiles as band arrays: any band count, any numeric dtype.

Multispectral tiles (Sentinel-2: 13 bands of uint16 reflectances, or float)
are read with ``tifffile`` (the ``geo`` extra), or with ``rasterio`` when only
that is installed, into a ``(H, W, bands)`` array, every band kept: a 4-band
R, G, B, NIR tile stays 4 bands (Pillow would read it as RGB and drop NIR).

Layout: what ``tifffile.imread`` returns is taken as ``(H, W, bands)``, as
TFDS' ``eurosat/all`` does (a file written with ``tifffile.imwrite(path,
arr_hwc)`` reads back as written); a band-sequential file (planar
configuration ``separate``: axes ``SYX``) is moved to bands-last.

:func:`value_problem` says why a tile's values cannot be trained on: NaN or
infinite values, or pixels equal to the file's declared nodata value
(``GDAL_NODATA`` tag); the loaders refuse such a tile naming it.

Example:

    ```python
    arr = read_tiff("EuroSAT_MS/Forest/Forest_1.tif")   # (64, 64, 13) uint16
    value_problem(arr, nodata_of("EuroSAT_MS/Forest/Forest_1.tif"))  # None
    ```
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np

__all__ = ["reader_available", "tiff_info", "read_tiff", "nodata_of", "value_problem"]

_PLANAR = ("SYX", "CYX")


def _tifffile():
    try:
        import tifffile
        return tifffile
    except ImportError:
        return None


def _rasterio():
    try:
        import rasterio
        return rasterio
    except ImportError:
        return None


@contextlib.contextmanager
def _rio_open(rio, path):
    """``rasterio.open`` for one-image tiles: a plain (not georeferenced)
    TIFF is no warning, and a multi-page TIFF is refused (rasterio would
    read its first page only) with the fix: tifffile reads every page."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rio.errors.NotGeoreferencedWarning)
        with rio.open(path) as src:
            if src.subdatasets:
                raise ValueError(
                    f"a TIFF of {len(src.subdatasets) + 1} pages, which rasterio reads "
                    "only the first of: pip install tifffile (remotetrimmer_tf[geo])")
            yield src


def reader_available() -> bool:
    """Whether multi-band TIFFs can be read (``tifffile`` or ``rasterio``)."""
    return _tifffile() is not None or _rasterio() is not None


def _hwc_shape(shape, axes):
    shape = tuple(int(d) for d in shape)
    if len(shape) == 2:
        return shape + (1,)
    if len(shape) != 3:
        raise ValueError(f"a TIFF of shape {shape} (axes {axes}); expected one "
                         "(H, W) or (H, W, bands) image")
    if axes in _PLANAR:
        return shape[1:] + shape[:1]
    return shape


def tiff_info(path):
    """``(bands, dtype, palette)`` of a TIFF, from its header (no pixels read);
    ``palette``: the pixels are colour-table indices."""
    tf = _tifffile()
    if tf is not None:
        with tf.TiffFile(path) as tif:
            series = tif.series[0]
            palette = int(tif.pages[0].photometric) == 3       # PHOTOMETRIC.PALETTE
            return (_hwc_shape(series.shape, series.axes)[-1], np.dtype(series.dtype),
                    palette)
    rio = _rasterio()
    if rio is None:
        raise ImportError("no TIFF reader: pip install tifffile")
    with _rio_open(rio, path) as src:
        palette = src.count == 1 and bool(src.colorinterp) and \
            src.colorinterp[0].name == "palette"
        return int(src.count), np.dtype(src.dtypes[0]), palette


def read_tiff(path) -> np.ndarray:
    """The tile as a ``(H, W, bands)`` array of its own dtype."""
    tf = _tifffile()
    if tf is not None:
        with tf.TiffFile(path) as tif:
            axes = tif.series[0].axes
            arr = tif.asarray()
        arr = np.asarray(arr)
        if arr.ndim == 2:
            return arr[..., None]
        if arr.ndim == 3 and axes in _PLANAR:
            return np.moveaxis(arr, 0, -1)
        _hwc_shape(arr.shape, axes)       # raises for other ranks
        return arr
    rio = _rasterio()
    if rio is None:
        raise ImportError("no TIFF reader: pip install tifffile")
    with _rio_open(rio, path) as src:
        return np.moveaxis(src.read(), 0, -1)


def nodata_of(path):
    """The declared nodata value of a TIFF (``GDAL_NODATA``), or None."""
    tf = _tifffile()
    try:
        if tf is not None:
            with tf.TiffFile(path) as tif:
                tag = tif.pages[0].tags.get("GDAL_NODATA")
                text = None if tag is None else str(tag.value).strip("\x00 ")
            return float(text) if text not in (None, "", "nan", "NaN") else None
        rio = _rasterio()
        if rio is not None:
            with _rio_open(rio, path) as src:
                nd = src.nodata
            return None if nd is None or np.isnan(nd) else float(nd)
    except (ValueError, OSError):
        return None
    return None


def value_problem(arr, nodata=None):
    """Why a tile's values cannot be used, or None.

    Args:
        arr: the tile (any numeric dtype).
        nodata: the declared nodata value, if any.

    Returns:
        ``"3 NaN / infinite values"``, ``"all 256 pixels are nodata (-9999)"``,
        ``"40 nodata pixels (-9999)"`` or None.
    """
    arr = np.asarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            return f"{bad} NaN / infinite value(s)"
    if nodata is not None:
        hits = int(np.count_nonzero(arr == nodata))
        if hits == arr.size:
            return f"every value is the nodata value ({nodata:g})"
        if hits:
            return f"{hits} value(s) equal the nodata value ({nodata:g})"
    return None
