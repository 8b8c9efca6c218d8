"""Tiny multispectral GeoTIFF tiles for the tests (written with tifffile).

- ``write_tiles``: ``<root>/<Class>/<Class>_<k>.tif`` (the EuroSAT-MS layout),
  any band count and dtype, class ``i`` brighter by ``i`` steps so a model
  can learn it;
- ``prepare_eurosat_all``: TFDS' real ``eurosat/all`` builder prepared
  offline in a temporary TFDS data dir from such tiles (its download is
  replaced by the local folder), as a user who has the archive would have it.
"""
import contextlib
import os
import pathlib
from unittest import mock

import numpy as np

EUROSAT = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
           "Pasture", "PermanentCrop", "Residential", "River", "SeaLake")
EUROSAT_SUBDIR = "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"


def tile(rng, i, size, bands, dtype):
    base = rng.random((size, size, bands)) * 1000 + 800 * i + 100
    if np.issubdtype(np.dtype(dtype), np.floating):
        return (base / 10000.0).astype(dtype)          # reflectance 0..1
    return base.astype(dtype)


def write_tiles(root, classes=("crops", "water", "urban"), n=6, size=16, bands=13,
                dtype="uint16", planar=False, seed=0, **imwrite):
    """Writes the tiles; returns ``{relative path: array (H, W, bands)}``."""
    import tifffile
    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    out = {}
    for i, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            arr = tile(rng, i, size, bands, dtype)
            path = root / cls / f"{cls}_{k}.tif"
            if planar:
                tifffile.imwrite(path, np.moveaxis(arr, -1, 0), planarconfig="separate",
                                 photometric="minisblack", **imwrite)
            else:
                tifffile.imwrite(path, arr, **imwrite)
            out[f"{cls}/{cls}_{k}.tif"] = arr
    return out


@contextlib.contextmanager
def _local_download(folder):
    import tensorflow_datasets as tfds
    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                           lambda self, url: str(folder)):
        yield


def prepare_eurosat_all(tfds_data_dir, archive_root, n=3, classes=EUROSAT[:3]):
    """Prepares TFDS ``eurosat/all`` in ``tfds_data_dir`` from 64x64x13 float32
    tiles written under ``archive_root`` (the unpacked archive's layout).

    Returns:
        ``{relative path: array}`` of the tiles.
    """
    import tensorflow_datasets as tfds
    tiles = write_tiles(pathlib.Path(archive_root) / EUROSAT_SUBDIR, classes=classes,
                        n=n, size=64, bands=13, dtype="float32")
    builder = tfds.builder("eurosat/all", data_dir=os.fspath(tfds_data_dir))
    with _local_download(archive_root):
        builder.download_and_prepare()
    return tiles
