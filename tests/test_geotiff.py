"""Multispectral GeoTIFF tiles as they come (issue 29): any band count and
dtype, band selection, per-band normalisation, bad tiles named, the
EuroSAT-MS folder layout and TFDS ``eurosat/all`` offline.

Every tile is written here with tifffile; nothing is downloaded.
"""
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tifffile")

import tifffile  # noqa: E402

from helpers import env  # noqa: E402
from geotiff_tiles import EUROSAT_SUBDIR, prepare_eurosat_all, write_tiles  # noqa: E402
from remotetrimmer_tf.data import geotiff  # noqa: E402
from remotetrimmer_tf.data import user_folder as uf  # noqa: E402


@pytest.mark.parametrize("bands,dtype,planar", [
    (13, "uint16", False), (13, "float32", False), (4, "uint16", False),
    (7, "float64", True), (2, "int16", False), (1, "uint16", False)])
def test_every_band_and_value_is_kept(tmp_path, bands, dtype, planar):
    tiles = write_tiles(tmp_path, n=3, size=10, bands=bands, dtype=dtype, planar=planar)
    src = uf.open_folder(tmp_path)
    assert (src.kind, src.channels, src.file_channels) == ("array", bands, bands)
    x = uf.decode(src, src.files, image_size=10)
    want = np.stack([tiles[f] for f in src.files]).astype(np.float32)
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("bands,dtype,imwrite", [
    (5, "uint16", {"compression": "zlib"}),
    (4, "float32", {"compression": "zlib", "predictor": True}),
    (6, "uint16", {"compression": "lzw", "planar": True}),
    (3, "int16", {"compression": "packbits"}),
    (5, "uint8", {"tile": (16, 16)}),
    (2, "uint32", {"bigtiff": True})])
def test_compressed_tiled_and_bigtiff_tiles_read_exactly(tmp_path, bands, dtype, imwrite):
    """What GDAL and Sentinel-2 tooling write: LZW / Deflate (with a predictor)
    / PackBits, tiled, BigTIFF (LZW and PackBits decode through imagecodecs,
    in the geo extra)."""
    if imwrite.get("compression") in ("lzw", "packbits") or imwrite.get("predictor"):
        pytest.importorskip("imagecodecs")
    imwrite = dict(imwrite)
    planar = imwrite.pop("planar", False)
    tiles = write_tiles(tmp_path, n=2, size=16, bands=bands, dtype=dtype, planar=planar,
                        **imwrite)
    src = uf.open_folder(tmp_path)
    assert (src.kind, src.channels) == ("array", bands)
    x = uf.decode(src, src.files, image_size=16)
    np.testing.assert_array_equal(x, np.stack([tiles[f] for f in src.files]).astype(np.float32))


def test_tile_needing_a_missing_codec_names_the_package(tmp_path):
    """Without imagecodecs an LZW tile is named with the package to install
    (run in a fresh interpreter where importing imagecodecs fails)."""
    pytest.importorskip("imagecodecs")
    write_tiles(tmp_path, n=2, size=8, bands=5, compression="lzw")
    code = ("import sys; sys.modules['imagecodecs'] = None\n"
            "from remotetrimmer_tf.data import user_folder as uf\n"
            "try:\n    uf.open_folder(sys.argv[1])\n"
            "except uf.UserDataError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=120, env=env()).stdout.strip().splitlines()
    assert len(out) == 1, out
    assert ".tif: unreadable" in out[0] and "pip install imagecodecs" in out[0]


def test_four_band_rgb_nir_tiff_keeps_nir(tmp_path):
    """A 4-band tile tagged RGB + extra sample (what Pillow reads as RGB)."""
    rng = np.random.default_rng(1)
    arrs = {}
    for i, cls in enumerate(("a", "b")):
        (tmp_path / cls).mkdir()
        for k in range(3):
            arr = (rng.random((8, 8, 4)) * 4000 + 1000 * i).astype(np.uint16)
            tifffile.imwrite(tmp_path / cls / f"{k}.tif", arr, photometric="rgb",
                             extrasamples=["unspecified"])
            arrs[f"{cls}/{k}.tif"] = arr
    src = uf.open_folder(tmp_path)
    assert src.channels == 4
    x = uf.decode(src, ["b/2.tif"], image_size=8)[0]
    np.testing.assert_array_equal(x[..., 3], arrs["b/2.tif"][..., 3].astype(np.float32))


def test_rgb_8bit_tiff_is_still_an_image(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for k in range(2):
            tifffile.imwrite(tmp_path / cls / f"{k}.tif",
                             np.full((8, 8, 3), 40 * k, np.uint8), photometric="rgb")
    src = uf.open_folder(tmp_path)
    assert (src.kind, src.channels) == ("image", 3)


def test_band_selection_and_per_band_normalisation(tmp_path):
    tiles = write_tiles(tmp_path, n=4, size=8, bands=13)
    src = uf.open_folder(tmp_path, bands="3,2,1,7")
    assert src.channels == 4 and src.bands == (3, 2, 1, 7) and src.file_channels == 13
    files, _ = uf.split(src, "train")
    mean, std = uf.measure_normalization(src, files, image_size=8)
    raw = np.stack([tiles[f][..., [3, 2, 1, 7]] for f in files]).astype(np.float64)
    np.testing.assert_allclose(mean, raw.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, raw.std(axis=(0, 1, 2)), rtol=1e-6)
    x, _ = uf.load_numpy(src, "train", image_size=8, norm=(mean, std))
    assert x.shape[-1] == 4
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0, atol=1e-4)


@pytest.mark.parametrize("bands,words", [
    ("13", ("--config.data.bands=13", "out of range", "13 bands", "0-12")),
    ("0,0", ("band 0 twice",)),
    ("-1", ("0-based",)),
    ("red", ("not a list of band indices",)),
])
def test_bad_band_selection_is_named(tmp_path, bands, words):
    write_tiles(tmp_path, n=2, size=8, bands=13)
    with pytest.raises(uf.UserDataError) as err:
        uf.open_folder(tmp_path, bands=bands)
    assert "\n" not in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_tile_with_another_band_count_is_named(tmp_path):
    write_tiles(tmp_path, n=4, size=8, bands=13)
    odd = np.zeros((8, 8, 12), np.uint16) + 7
    tifffile.imwrite(tmp_path / "water" / "water_odd.tif", odd)
    with pytest.raises(uf.UserDataError) as err:
        uf.open_folder(tmp_path)
    msg = str(err.value)
    assert "water_odd.tif is a 12-band array" in msg and "13-band" in msg
    assert "replace or remove it" in msg and "\n" not in msg


@pytest.mark.parametrize("kind", ["nan", "nodata_tag", "all_nodata"])
def test_nan_and_nodata_tiles_are_named(tmp_path, kind):
    write_tiles(tmp_path, n=3, size=8, bands=5, dtype="float32")
    bad = np.full((8, 8, 5), 0.3, np.float32)
    extratags = []
    if kind == "nan":
        bad[2, 3, 1] = np.nan
    else:
        extratags = [(42113, "s", 0, "-9999", True)]
        bad[:2] = -9999 if kind == "nodata_tag" else bad[:2]
        if kind == "all_nodata":
            bad[:] = -9999
    tifffile.imwrite(tmp_path / "crops" / "crops_bad.tif", bad, extratags=extratags)
    with pytest.raises(uf.UserDataError) as err:
        uf.open_folder(tmp_path)
    msg = str(err.value)
    assert "crops_bad.tif" in msg and "remove the tile" in msg and "\n" not in msg
    assert ("NaN" in msg) if kind == "nan" else ("nodata" in msg)


def test_value_problem_is_none_for_clean_tiles():
    assert geotiff.value_problem(np.ones((4, 4, 2), np.uint16), nodata=0) is None
    assert "2 NaN" in geotiff.value_problem(np.array([np.nan, np.inf, 1.0]))


def test_eurosat_ms_archive_layout_is_found(tmp_path):
    """The unpacked EuroSATallBands archive: <root>/ds/.../tif/<Class>/<Class>_<n>.tif."""
    write_tiles(tmp_path / EUROSAT_SUBDIR, classes=("Forest", "River"), n=3, size=8)
    src = uf.open_folder(tmp_path)
    assert src.class_names == ("Forest", "River") and src.channels == 13
    assert src.files[0] == "Forest/Forest_0.tif"


def test_tfds_eurosat_all_offline(tmp_path):
    """The real TFDS eurosat/all builder, prepared offline, 13 float32 bands."""
    pytest.importorskip("tensorflow_datasets")
    from remotetrimmer_tf.data import tfds_any
    tiles = prepare_eurosat_all(tmp_path / "tfds", tmp_path / "archive", n=2)
    src = tfds_any.open_builder("tfds:eurosat/all", tfds_data_dir=tmp_path / "tfds",
                                bands=(3, 2, 1, 7))
    assert (src.kind, src.channels, src.file_channels) == ("array", 4, 13)
    got = 0.0
    for split in ("train", "test"):
        ds = tfds_any.load(src, split, image_size=64, norm=None, batch_size=4,
                           shuffle=False)
        got += sum(float(x.astype(np.float64).sum()) for x, _ in ds.as_numpy_iterator())
    want = sum(float(a[..., [3, 2, 1, 7]].astype(np.float64).sum()) for a in tiles.values())
    assert got == pytest.approx(want, rel=1e-6)
    mean, std = tfds_any.measure_normalization(src, 64)
    assert len(mean) == 4 and all(0.0 < s for s in std)
    with pytest.raises(uf.UserDataError, match="out of range"):
        tfds_any.open_builder("tfds:eurosat/all", tfds_data_dir=tmp_path / "tfds",
                              bands=(13,))


def test_single_band_uint8_tile_stays_one_band(tmp_path):
    write_tiles(tmp_path, n=2, size=8, bands=1, dtype="uint8")
    src = uf.open_folder(tmp_path)
    assert (src.kind, src.channels) == ("array", 1)
