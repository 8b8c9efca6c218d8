"""Local folders in the official layouts: finding them and listing their files.

No TensorFlow here (the numpy/JAX path uses it too). Decoding happens in
``pipeline.py`` (tf.data) or ``numpy_source.py`` (Pillow).

Why not ``tfds.ImageFolder``: it wants ``root/<split>/<class>/``, but the
official archives are flat (``2750/<Class>/*.jpg``, ``Images/<class>/*``) and the
split is ours (``splits.py``). So we list the folder in python, split it, and
decode with tf.data — the same file list feeds the numpy path, and no TFRecord
copy of the data is written.

Lookup order for the data (``find_root``):

1. an explicit ``data_dir`` (only that one is tried);
2. the environment variable ``REMOTETRIMMER_DATA``;
3. ``../shared/data`` relative to the current directory;
4. ``../shared/data`` relative to the repository (the folder above this package).

Each candidate may be the image folder itself (``.../2750``), the dataset root
containing it (``.../eurosat``), or a parent of that (``.../data``).
"""
from __future__ import annotations

import os
import pathlib

from remotetrimmer_tf.data.registry import IMAGE_EXTENSIONS, DatasetSpec, get_spec

ENV_VAR = "REMOTETRIMMER_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is in none of the places we looked; says how to provide it."""


def _repo_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[2]


def candidate_dirs(data_dir=None) -> list:
    """The directories searched, in order (see the module docstring)."""
    if data_dir is not None:
        return [pathlib.Path(os.fspath(data_dir)).expanduser()]
    out = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(pathlib.Path(env).expanduser())
    out.append(pathlib.Path.cwd() / ".." / "shared" / "data")
    out.append(_repo_root().parent / "shared" / "data")
    seen, uniq = set(), []
    for p in out:
        key = os.path.normpath(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            uniq.append(pathlib.Path(key))
    return uniq


def _has_class_dirs(path: pathlib.Path, spec: DatasetSpec) -> bool:
    return any((path / c).is_dir() for c in spec.class_names)


def image_dir_in(base: pathlib.Path, spec: DatasetSpec):
    """The ``<class>/``-holding folder under ``base``, or None."""
    base = pathlib.Path(base)
    if not base.is_dir():
        return None
    options = [base / spec.image_folder]
    options += [base / r / spec.image_folder for r in spec.root_names]
    if spec.name == "uc_merced":  # the zip extracts to UCMerced_LandUse/Images
        options.append(base / "UCMerced_LandUse" / "Images")
    for opt in options:
        if opt.is_dir() and _has_class_dirs(opt, spec):
            return opt
    if _has_class_dirs(base, spec):  # the image folder itself
        return base
    return None


def zip_in(base: pathlib.Path, spec: DatasetSpec):
    """``base`` if it (or a dataset-named subfolder) holds the official zip."""
    base = pathlib.Path(base)
    for d in [base] + [base / r for r in spec.root_names]:
        if (d / spec.zip_name).is_file():
            return d
    return None


def missing_message(spec: DatasetSpec, looked) -> str:
    """The one clear message for an absent dataset."""
    looked = "\n".join(f"    - {p}" for p in looked) or "    (nowhere)"
    return (
        f"Dataset '{spec.name}' not found. Looked for the folder layout "
        f"'{spec.image_folder}/<class>/<image>' (or the official "
        f"'{spec.zip_name}') in:\n{looked}\n"
        f"Provide it in one of two ways:\n"
        f"  1. download: load('{spec.name}', ..., source='tfds', download=True) "
        f"fetches TFDS '{spec.tfds_name}' ({spec.url}) into the TFDS data dir;\n"
        f"  2. local copy: put the extracted folder at "
        f"<dir>/{spec.root_names[0]}/{spec.image_folder}/<class>/... and pass "
        f"data_dir=<dir> (or set ${ENV_VAR}=<dir>), or put '{spec.zip_name}' "
        f"in a folder and pass manual_dir=<that folder> (TFDS reads it offline)."
    )


def find_root(name, data_dir=None, required: bool = True):
    """The folder holding ``<class>/`` subfolders of dataset ``name``.

    Args:
        name: dataset name.
        data_dir: explicit location (image folder, dataset root or a parent);
            None searches ``$REMOTETRIMMER_DATA`` and ``../shared/data``.
        required: raise `DatasetNotFoundError` when absent (else return None).
    """
    spec = get_spec(name)
    cands = candidate_dirs(data_dir)
    for base in cands:
        found = image_dir_in(base, spec)
        if found is not None:
            return found
    if required:
        raise DatasetNotFoundError(missing_message(spec, cands))
    return None


def find_zip_dir(name, data_dir=None):
    """A searched folder holding the official zip (for TFDS manual_dir), or None."""
    spec = get_spec(name)
    for base in candidate_dirs(data_dir):
        found = zip_in(base, spec)
        if found is not None:
            return found
    return None


def list_files(name, root) -> list:
    """Sorted relative paths ``"<class>/<file>"`` of the images under ``root``.

    Raises:
        ValueError: if ``root`` holds a folder that is not a class of the
            dataset, if a class folder is missing, or if a class has no image.
    """
    spec = get_spec(name)
    root = pathlib.Path(root)
    known = set(spec.class_names)
    subdirs = sorted(e.name for e in os.scandir(root)
                     if e.is_dir() and not e.name.startswith("."))
    unknown = [d for d in subdirs if d not in known]
    if unknown:
        raise ValueError(
            f"{root}: folders {unknown} are not {spec.name} classes; expected "
            f"the layout {spec.image_folder}/<class>/ with classes "
            f"{list(spec.class_names)}")
    missing = [c for c in spec.class_names if c not in subdirs]
    if missing:
        raise ValueError(
            f"{root}: class folders {missing} of {spec.name} are missing; the "
            f"folder looks incomplete (re-extract {spec.zip_name})")
    files = []
    for cls in spec.class_names:
        names = sorted(
            e.name for e in os.scandir(root / cls)
            if e.is_file() and not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
        if not names:
            raise ValueError(f"{root / cls}: no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}) in this class folder")
        files.extend(f"{cls}/{n}" for n in names)
    return sorted(files)


def labels_for(name, files) -> list:
    """Integer labels (class index in the spec) of relative paths."""
    spec = get_spec(name)
    index = {c: i for i, c in enumerate(spec.class_names)}
    return [index[f.replace("\\", "/").split("/")[-2]] for f in files]


def sample_dir() -> pathlib.Path:
    """The embedded EuroSAT demo sample (a folder containing ``2750/``).

    ``load("eurosat", split, data_dir=sample_dir())`` reads it with the same
    70/30 split logic as the full dataset.
    """
    try:
        import importlib.resources as resources
        path = pathlib.Path(str(resources.files("remotetrimmer_tf")
                                / "assets" / "eurosat_sample"))
    except Exception:  # pragma: no cover - very old Pythons / zipped installs
        path = pathlib.Path(__file__).resolve().parents[1] / "assets" / "eurosat_sample"
    if not (path / "2750").is_dir():
        raise FileNotFoundError(
            f"the embedded EuroSAT sample is missing at {path}; reinstall "
            f"remotetrimmer_tf or regenerate it with tools/make_demo_sample.py")
    return path
