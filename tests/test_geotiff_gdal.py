"""GeoTIFF tiles as GDAL writes them (Sentinel-2 tooling, QGIS, rasterio),
read by either reader: tifffile (the ``geo`` extra) and the ``rasterio``
fallback used when only rasterio is installed.

The tiles are written here with rasterio (pixel- and band-interleaved,
georeferenced, with a nodata value); every test runs once per reader, the
rasterio one with tifffile hidden from `remotetrimmer_tf.data.geotiff`.
"""
import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
pytest.importorskip("tifffile")

from rasterio.transform import Affine  # noqa: E402

from remotetrimmer_tf.data import geotiff  # noqa: E402
from remotetrimmer_tf.data import user_folder as uf  # noqa: E402


@pytest.fixture(params=["tifffile", "rasterio"])
def reader(request, monkeypatch):
    if request.param == "rasterio":
        monkeypatch.setattr(geotiff, "_tifffile", lambda: None)
    return request.param


def write_gdal(path, arr, interleave="pixel", nodata=None, colormap=None):
    """``arr`` (H, W, bands) as GDAL writes it: UTM 10 m georeferencing; a
    colour map is added to the written file (photometric: palette)."""
    h, w, bands = arr.shape
    profile = dict(driver="GTiff", height=h, width=w, count=bands, dtype=arr.dtype.name,
                   interleave=interleave, crs="EPSG:32633",
                   transform=Affine(10, 0, 500000, 0, -10, 5000000))
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(arr, -1, 0))
    if colormap:
        with rasterio.open(path, "r+") as dst:
            dst.write_colormap(1, colormap)


def gdal_folder(root, bands, dtype, interleave="pixel", n=3, size=12):
    rng = np.random.default_rng(0)
    out = {}
    for i, cls in enumerate(("crops", "water")):
        (root / cls).mkdir(parents=True)
        for k in range(n):
            arr = rng.random((size, size, bands)) * 1000 + 900 * i + 50
            arr = (arr / 1e4 if np.dtype(dtype).kind == "f" else arr).astype(dtype)
            write_gdal(root / cls / f"{cls}_{k}.tif", arr, interleave)
            out[f"{cls}/{cls}_{k}.tif"] = arr
    return out


@pytest.mark.parametrize("bands,dtype,interleave", [
    (13, "uint16", "pixel"), (13, "float32", "band"), (4, "uint16", "pixel"),
    (2, "int16", "band"), (1, "uint16", "pixel"), (6, "float64", "pixel")])
def test_gdal_tiles_read_exactly_by_either_reader(tmp_path, reader, bands, dtype,
                                                  interleave):
    tiles = gdal_folder(tmp_path, bands, dtype, interleave)
    src = uf.open_folder(tmp_path)
    assert (src.kind, src.channels, src.file_channels) == ("array", bands, bands)
    x = uf.decode(src, src.files, image_size=12)
    np.testing.assert_array_equal(x, np.stack([tiles[f] for f in src.files])
                                  .astype(np.float32))
    assert geotiff.tiff_info(tmp_path / src.files[0]) == (bands, np.dtype(dtype), False)


def test_gdal_nodata_tile_is_named_by_either_reader(tmp_path, reader):
    gdal_folder(tmp_path, 5, "int16")
    bad = np.full((12, 12, 5), 300, np.int16)
    bad[:3] = -9999
    write_gdal(tmp_path / "crops" / "crops_bad.tif", bad, nodata=-9999)
    assert geotiff.nodata_of(tmp_path / "crops" / "crops_bad.tif") == -9999.0
    with pytest.raises(uf.UserDataError) as err:
        uf.open_folder(tmp_path)
    msg = str(err.value)
    assert "crops_bad.tif" in msg and "nodata" in msg and "\n" not in msg


def test_gdal_palette_tile_is_seen_as_a_palette(tmp_path, reader):
    arr = (np.arange(64).reshape(8, 8, 1) % 4).astype(np.uint8)
    write_gdal(tmp_path / "p.tif", arr,
               colormap={0: (0, 0, 0, 255), 1: (255, 0, 0, 255), 2: (0, 255, 0, 255),
                         3: (0, 0, 255, 255)})
    assert geotiff.tiff_info(tmp_path / "p.tif") == (1, np.dtype("uint8"), True)


def test_multi_page_tiff_is_refused_by_rasterio_naming_tifffile(tmp_path, monkeypatch):
    """rasterio reads only the first page of a multi-page TIFF (what tifffile
    writes for a (H, W, 13) array): refused in one line with the fix."""
    import tifffile
    from geotiff_tiles import write_tiles
    write_tiles(tmp_path, n=2, size=8, bands=13)
    monkeypatch.setattr(geotiff, "_tifffile", lambda: None)
    with pytest.raises(uf.UserDataError) as err:
        uf.open_folder(tmp_path)
    msg = str(err.value)
    assert ".tif: unreadable" in msg and "pip install tifffile" in msg and "\n" not in msg
    assert tifffile  # the folder itself reads with tifffile (test_geotiff.py)
