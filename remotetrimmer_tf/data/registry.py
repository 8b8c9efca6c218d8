"""Dataset specifications: classes, folder layouts, TFDS names, preprocessing.

Everything the loaders need to know about a dataset lives here, so that the
TensorFlow path (`pipeline.py`, `tfds_source.py`) and the TensorFlow-free numpy
path (`numpy_source.py`) read the same constants. This module imports neither
TensorFlow nor TFDS.

Normalisation constants are on pixel values scaled to 0..1:
``x = (pixel / 255 - mean) / std``.

- EuroSAT: the published RemoteTrimmer constants (../shared/METHOD.md §3),
  mean [0.408, 0.380, 0.340], std [0.116, 0.137, 0.203]. Note that the
  measured RGB mean of the train split is [0.344, 0.380, 0.408] (std
  [0.202, 0.137, 0.115]): the published
  mean and std are these in reversed (B, G, R) order. We keep the published numbers as the
  default (to reproduce the published recipe) and record the measured ones in
  ``measured_mean`` / ``measured_std``; pass ``normalize="measured"`` to the
  loaders to use them.
- UC Merced: no published constants; the mean/std below were computed on the
  70/30 train split (seed 0) at 256x256 by
  ``python tools/compute_norm_stats.py uc_merced`` (see that script).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Static description of one scene-classification dataset.

    Args:
        name: canonical name used by the loaders (``"eurosat"``).
        tfds_name: TFDS builder name (``"eurosat/rgb"``).
        image_folder: folder holding ``<class>/`` subfolders in the official
            archive (``"2750"`` for EuroSAT, ``"Images"`` for UC Merced).
        root_names: folder names under a shared data directory that may hold
            ``image_folder`` (``data/eurosat/2750``).
        class_names: the classes, in TFDS label order (label = index).
        image_size: default square input size of the loaders.
        native_size: the size every image already has, or None if sizes vary
            (then images are always resized).
        mean, std: default per-channel normalisation constants on 0..1.
        measured_mean, measured_std: constants measured on the train split.
        num_images: images in the complete dataset.
        zip_name: file name of the official archive (TFDS manual_dir).
        url: official download URL.
        homepage, license, citation: provenance.
    """

    name: str
    tfds_name: str
    image_folder: str
    root_names: tuple
    class_names: tuple
    image_size: int
    native_size: Optional[int]
    mean: tuple
    std: tuple
    measured_mean: tuple
    measured_std: tuple
    num_images: int
    zip_name: str
    url: str
    homepage: str
    license: str
    citation: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


EUROSAT = DatasetSpec(
    name="eurosat",
    tfds_name="eurosat/rgb",
    image_folder="2750",
    root_names=("eurosat", "EuroSAT", "eurosat_rgb"),
    class_names=(
        "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
        "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
    ),
    image_size=64,
    native_size=64,
    mean=(0.408, 0.380, 0.340),
    std=(0.116, 0.137, 0.203),
    # python tools/compute_norm_stats.py eurosat  (train split, seed 0, 64x64)
    measured_mean=(0.3443, 0.3801, 0.4075),
    measured_std=(0.2023, 0.1365, 0.1152),
    num_images=27000,
    zip_name="EuroSAT.zip",
    url="http://madm.dfki.de/files/sentinel/EuroSAT.zip",
    homepage="https://github.com/phelber/eurosat",
    license="MIT",
    citation=(
        "P. Helber, B. Bischke, A. Dengel, D. Borth, \"EuroSAT: A Novel Dataset "
        "and Deep Learning Benchmark for Land Use and Land Cover "
        "Classification\", IEEE JSTARS, 2019."
    ),
)

UC_MERCED = DatasetSpec(
    name="uc_merced",
    tfds_name="uc_merced",
    image_folder="Images",
    root_names=("ucmerced", "uc_merced", "UCMerced_LandUse"),
    class_names=(
        "agricultural", "airplane", "baseballdiamond", "beach", "buildings",
        "chaparral", "denseresidential", "forest", "freeway", "golfcourse",
        "harbor", "intersection", "mediumresidential", "mobilehomepark",
        "overpass", "parkinglot", "river", "runway", "sparseresidential",
        "storagetanks", "tenniscourt",
    ),
    image_size=256,
    native_size=None,  # 44 of 2,100 images are 242..257 px: always resize
    # python tools/compute_norm_stats.py uc_merced  (train split, seed 0, 256x256)
    mean=(0.4844, 0.4905, 0.4510),
    std=(0.2188, 0.2032, 0.1970),
    measured_mean=(0.4844, 0.4905, 0.4510),
    measured_std=(0.2188, 0.2032, 0.1970),
    num_images=2100,
    zip_name="UCMerced_LandUse.zip",
    url="http://weegee.vision.ucmerced.edu/datasets/UCMerced_LandUse.zip",
    homepage="http://weegee.vision.ucmerced.edu/datasets/landuse.html",
    license="Public domain (USGS National Map imagery)",
    citation=(
        "Y. Yang and S. Newsam, \"Bag-Of-Visual-Words and Spatial Extensions "
        "for Land-Use Classification\", ACM SIGSPATIAL GIS, 2010."
    ),
)

DATASETS = {"eurosat": EUROSAT, "uc_merced": UC_MERCED}

_ALIASES = {
    "eurosat": "eurosat", "eurosat_rgb": "eurosat", "eurosat/rgb": "eurosat",
    "eurosat-rgb": "eurosat",
    "uc_merced": "uc_merced", "ucmerced": "uc_merced", "uc-merced": "uc_merced",
    "ucmerced_landuse": "uc_merced",
}


def get_spec(name) -> DatasetSpec:
    """Returns the `DatasetSpec` for ``name`` (or ``name`` if it is a spec).

    Args:
        name: ``"eurosat"`` or ``"uc_merced"`` (aliases such as
            ``"eurosat/rgb"`` and ``"ucmerced"`` are accepted).

    Raises:
        ValueError: for an unknown dataset name.
    """
    if isinstance(name, DatasetSpec):
        return name
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = _ALIASES.get(name.strip().lower())
    if key is None:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    return DATASETS[key]


def class_names(name) -> list:
    """The class names of a dataset, in label order."""
    return list(get_spec(name).class_names)


def num_classes(name) -> int:
    """The number of classes of a dataset."""
    return get_spec(name).num_classes


def info(name) -> dict:
    """A plain-dict summary of a dataset (classes, sizes, constants, source).

    Example:
        >>> info("eurosat")["num_classes"]
        10
    """
    spec = get_spec(name)
    return {
        "name": spec.name,
        "tfds_name": spec.tfds_name,
        "class_names": list(spec.class_names),
        "num_classes": spec.num_classes,
        "image_size": spec.image_size,
        "native_size": spec.native_size,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "measured_mean": list(spec.measured_mean),
        "measured_std": list(spec.measured_std),
        "num_images": spec.num_images,
        "layout": f"{spec.image_folder}/<class>/<image>",
        "zip_name": spec.zip_name,
        "url": spec.url,
        "homepage": spec.homepage,
        "license": spec.license,
        "citation": spec.citation,
    }


def resolve_normalization(spec: DatasetSpec, normalize):
    """Maps the loaders' ``normalize`` argument to ``(mean, std)`` or None.

    Args:
        spec: the dataset.
        normalize: True / ``"published"`` (the registry defaults),
            ``"measured"`` (train-split statistics), a ``(mean, std)`` pair of
            3-sequences on 0..1, or False / None (no normalisation: raw 0..255).
    """
    if normalize is None or normalize is False:
        return None
    if normalize is True or normalize == "published" or normalize == "default":
        return tuple(spec.mean), tuple(spec.std)
    if normalize == "measured":
        return tuple(spec.measured_mean), tuple(spec.measured_std)
    if isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        mean, std = (tuple(float(v) for v in normalize[0]),
                     tuple(float(v) for v in normalize[1]))
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(
                f"normalize=(mean, std) needs two 3-sequences with std > 0, got "
                f"{normalize!r}")
        return mean, std
    raise ValueError(
        f"normalize must be True, False, 'published', 'measured' or a (mean, std) "
        f"pair, got {normalize!r}")
