"""The CLI's bridge to your own data: ``--config.data.name=folder`` / ``tfds:<builder>``.

The built-in datasets (EuroSAT, UC Merced) keep their registry specs; this
module serves the two generic sources of `remotetrimmer_tf.data`:

- ``folder``: ``--config.data.data_dir=DIR`` holding ``DIR/<class>/*``
  (`data.user_folder`), classes from the subfolders or
  ``--config.data.classes=a,b,c``;
- ``tfds:<builder>``: any TFDS image-classification builder
  (`data.tfds_any`); ``data_dir`` is its manual dir, and it is downloaded
  only with ``--config.data.download=True``.

Bands: ``--config.data.bands=3,2,1`` keeps those bands (0-based indices, in
that order) of multi-band tiles (GeoTIFF / ``.npy`` folders, TFDS builders
with a band-array feature such as ``eurosat/all``).

Normalisation: ``--config.data.mean`` / ``--config.data.std`` (comma lists,
one value per channel) when given, else measured per band on the train split
and recorded in the run folder as ``normalization.json`` (mean, std, the
bands, the scale; reused while the data config and the file list are
unchanged).

Example:
  info = describe(cfg)                 # {"num_classes", "class_names", "channels"}
  ds = load_split(cfg, "train", 32, True, workdir)
"""
import hashlib
import os

from remotetrimmer_tf.pipeline.workdir import PipelineError, first_line

NORM_FILE = "normalization.json"
_SOURCES = {}


def is_user_dataset(name):
    """True for ``folder`` and ``tfds:<builder>``."""
    return name == "folder" or (isinstance(name, str) and name.startswith("tfds:"))


BUILTIN = ("eurosat", "uc_merced")


def check_name(cfg):
    """``--config.data.name`` is a built-in dataset, ``folder`` or ``tfds:<b>``."""
    name = cfg.data.name
    if name in BUILTIN or is_user_dataset(name) and name != "tfds:":
        if name == "folder" and not cfg.data.data_dir:
            raise PipelineError(
                "--config.data.name=folder needs --config.data.data_dir="
                "<folder holding one subfolder per class>")
        check_bands_flag(cfg)
        return
    raise PipelineError(
        f"--config.data.name={name!r} is not a dataset; pass eurosat, "
        "uc_merced, folder (with --config.data.data_dir=DIR holding "
        "DIR/<class>/<image>) or tfds:<builder>")


def _user_error(d, e):
    """A data error as one PipelineError line that names the flag."""
    text = first_line(e)
    if text.startswith("--config."):
        return PipelineError(text)
    return PipelineError(f"--config.data.data_dir={d.data_dir}: {text}")


def _source_key(d):
    return (d.name, os.path.abspath(os.path.expanduser(d.data_dir))
            if d.data_dir else None, d.get("classes"), bool(d.get("download")),
            _bands_text(d))


def _bands_text(d):
    bands = d.get("bands")
    return None if bands in (None, (), "") else str(bands)


def check_bands_flag(cfg):
    """``--config.data.bands`` is for band tiles of your own data (no I/O)."""
    from remotetrimmer_tf.data import user_folder
    d = cfg.data
    if _bands_text(d) is None:
        return None
    if not is_user_dataset(d.name):
        raise PipelineError(
            f"--config.data.bands is for band tiles (--config.data.name=folder or "
            f"tfds:<builder>); {d.name} is RGB: leave --config.data.bands out")
    try:
        return user_folder.parse_bands(d.get("bands"))
    except user_folder.UserDataError as e:
        raise PipelineError(first_line(e)) from None


def source(cfg):
    """The opened `FolderSource` / `TfdsSource` of the config (cached).

    Raises:
      PipelineError: one line naming the flag / file and the fix.
    """
    d = cfg.data
    key = _source_key(d)
    if key in _SOURCES:
        return _SOURCES[key]
    from remotetrimmer_tf.data import user_folder
    try:
        if d.name == "folder":
            if not d.data_dir:
                raise PipelineError(
                    "--config.data.name=folder needs --config.data.data_dir="
                    "<folder holding one subfolder per class>")
            src = user_folder.open_folder(d.data_dir, d.get("classes"),
                                          bands=check_bands_flag(cfg))
        else:
            from remotetrimmer_tf.data import tfds_any
            src = tfds_any.open_builder(d.name, manual_dir=d.data_dir,
                                        download=bool(d.get("download")),
                                        bands=check_bands_flag(cfg))
            if d.get("classes"):
                raise PipelineError(
                    "--config.data.classes is for --config.data.name=folder; "
                    f"{d.name} has the classes {list(src.class_names)[:8]}...")
    except user_folder.UserDataError as e:
        raise _user_error(d, e) from None
    _SOURCES[key] = src
    return src


def describe(cfg):
    """``{"num_classes", "class_names", "channels", "num_images"}`` of the data."""
    src = source(cfg)
    n = len(getattr(src, "files", None) or getattr(src, "keys", ()))
    return {"num_classes": src.num_classes, "class_names": list(src.class_names),
            "channels": int(src.channels), "num_images": n}


def validate(cfg):
    """Opens a folder source and checks its files and split before any
    training (TFDS builders are checked when loaded: that imports TF)."""
    from remotetrimmer_tf.data import user_folder
    d = cfg.data
    if d.name != "folder":
        return
    src = source(cfg)
    try:
        if d.name == "folder":
            user_folder.check_class_sizes(src.files, d.train_fraction,
                                          d.val_fraction)
        _given_normalization(cfg, src.channels)
    except user_folder.UserDataError as e:
        raise _user_error(d, e) from None


def _floats(text, flag):
    try:
        vals = tuple(float(v) for v in str(text).strip("()[] ").split(",")
                     if v.strip())
    except ValueError:
        raise PipelineError(f"--config.{flag}={text!r} is not a comma list of "
                            "numbers; pass e.g. 0.48,0.49,0.45") from None
    return vals


def _given_normalization(cfg, channels):
    d = cfg.data
    mean, std = d.get("mean"), d.get("std")
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise PipelineError("--config.data.mean and --config.data.std go "
                            "together; pass both (one value per channel)")
    mean, std = _floats(mean, "data.mean"), _floats(std, "data.std")
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise PipelineError(
            f"--config.data.mean / --config.data.std need {channels} values "
            f"each (std > 0), got {len(mean)} / {len(std)}")
    return mean, std


def _norm_key(cfg, src):
    d = cfg.data
    h = hashlib.sha256()
    listing = getattr(src, "files", None) or getattr(src, "keys", ())
    for f in listing:
        h.update(str(f).encode() + b"\n")
    return {"name": d.name, "classes": list(src.class_names),
            "bands": None if getattr(src, "bands", None) is None else list(src.bands),
            "image_size": int(d.image_size), "seed": int(d.seed),
            "train_fraction": float(d.train_fraction),
            "val_fraction": float(d.val_fraction), "files_sha256": h.hexdigest()[:16]}


def normalization(cfg, workdir=None):
    """``(mean, std)`` for the data: given, cached in the run folder, or measured."""
    src = source(cfg)
    given = _given_normalization(cfg, src.channels)
    if given is not None:
        return given
    key = _norm_key(cfg, src)
    if workdir is not None and workdir.exists(NORM_FILE):
        try:
            cached = workdir.read_json(NORM_FILE)
            if cached.get("key") == key:
                return tuple(cached["mean"]), tuple(cached["std"])
        except (ValueError, KeyError, OSError):
            pass
    d = cfg.data
    if d.name == "folder":
        from remotetrimmer_tf.data import user_folder
        files, _ = user_folder.split(src, "train", d.seed, d.train_fraction,
                                     d.val_fraction)
        mean, std = user_folder.measure_normalization(src, files,
                                                      int(d.image_size))
    else:
        from remotetrimmer_tf.data import tfds_any
        mean, std = tfds_any.measure_normalization(
            src, int(d.image_size), d.seed, d.train_fraction, d.val_fraction)
    if workdir is not None:
        bands = getattr(src, "bands", None)
        workdir.write_json(NORM_FILE, {
            "mean": list(mean), "std": list(std),
            "measured_on": "train split",
            "scale": "pixel/255" if getattr(src, "kind", "image") == "image"
            else "raw band values",
            "channels": int(src.channels),
            "bands": list(bands) if bands is not None else "all",
            "key": key})
    return mean, std


def load_split(cfg, split, batch_size, shuffle, workdir=None):
    """A split: tf.data on the TensorFlow backend, else numpy ``(x, y)``."""
    import keras
    from remotetrimmer_tf.data import user_folder
    d = cfg.data
    src = source(cfg)
    norm = normalization(cfg, workdir)
    common = dict(image_size=int(d.image_size), norm=norm, seed=int(d.seed),
                  train_fraction=float(d.train_fraction),
                  val_fraction=float(d.val_fraction))
    try:
        if d.name == "folder":
            if keras.backend.backend() == "tensorflow":
                return user_folder.load(src, split, batch_size=batch_size,
                                        shuffle=shuffle, **common)
            return user_folder.load_numpy(src, split, shuffle=shuffle, **common)
        from remotetrimmer_tf.data import tfds_any
        return tfds_any.load(src, split, batch_size=batch_size, shuffle=shuffle,
                             **common)
    except user_folder.UserDataError as e:
        raise _user_error(d, e) from None
