"""Checks every input of a run before anything in the run folder changes.

`check_inputs(run)` is called by `run_pipeline` after the config passed
`validate_config` and before any file of the run folder is moved, deleted or
rewritten; each problem is a `PipelineError` (one line, exit 2):

- `--strategy`: the distribution strategy can be created (a TPU exists, ...);
- the data: the dataset folder is found, has its classes, and every image
  passes `data.checks` (or is listed for `--config.data.skip_bad_files`);
  `--config.model.num_classes` agrees with the data's classes;
- `--init_model`: Keras loads it (with our layers), its input size and class
  count match the data, and it has what the importance criterion scores
  (SqueezeExcite gates for `cap`, BatchNormalization for `slim`/`cap`).

Returns what the ledger records about the inputs (data fingerprint, skipped
files).

Example:
  info = check_inputs(run)     # raises PipelineError on bad input
  info["data"]["files"]        # number of image files seen
"""
import os

from remotetrimmer_tf.pipeline.fingerprint import data_fingerprint
from remotetrimmer_tf.pipeline.workdir import PipelineError, first_line

BN_IMPORTANCE = ("slim", "cap")


def check_strategy(run):
    """Creates the distribution strategy now, so that a missing TPU (or a
    bad cluster) is one line before the run folder changes."""
    if run.strategy_name in (None, "", "default"):
        return
    try:
        run.strategy()
    except PipelineError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure here is the environment
        raise strategy_error(run.strategy_name, e) from None


def strategy_error(name, e):
    """The one-line error for a strategy that could not be created."""
    what = {"tpu": "no TPU was found",
            "multi_worker": "the worker cluster (TF_CONFIG) is not usable",
            "mirrored": "the devices could not be mirrored"}.get(
                name, "it could not be created")
    return PipelineError(
        f"--strategy={name}: {what} ({type(e).__name__}: "
        f"{first_line(e)[:160]}); run on a machine that has it, or pass "
        "--strategy=default")


def _where(d):
    return (f"--config.data.data_dir={d.data_dir}" if d.data_dir
            else "--config.data.data_dir (not set)")


def check_data(cfg):
    """The dataset is there, complete, and its images are readable.

    Returns:
      `{"source": "folder"|"tfds", "files": n, "digest": ..., "classes": {...},
      "num_classes": k, "skipped_bad_files": [...]}` (folder) or
      `{"source": "tfds", "num_classes": k}`.
    """
    from remotetrimmer_tf.data import api, checks, folder
    from remotetrimmer_tf.data.registry import get_spec
    from remotetrimmer_tf.pipeline import user_data
    d = cfg.data
    if user_data.is_user_dataset(d.name):
        return _check_user_data(cfg)
    spec = get_spec(d.name)
    try:
        if d.data_dir is not None:
            # an explicit folder must hold the dataset (or its official zip)
            if folder.find_root(spec, d.data_dir, required=False) is not None:
                source = "folder"
            elif folder.find_zip_dir(spec, d.data_dir) is not None:
                source = "tfds"
            else:
                raise FileNotFoundError(d.data_dir)
        else:
            source, _ = api._pick_source(spec, "auto", None, False, None, None)
    except FileNotFoundError:
        raise PipelineError(
            f"{_where(d)}: dataset '{d.name}' not found (expected the layout "
            f"{spec.image_folder}/<class>/<image>); pass "
            "--config.data.data_dir=<folder holding the dataset>") from None
    if source != "folder":
        return {"source": source, "num_classes": int(spec.num_classes)}
    root = folder.find_root(spec, d.data_dir)
    try:
        files = folder.list_files(spec, root)
    except ValueError as e:
        raise PipelineError(
            f"{_where(d)}: {first_line(e)} Pass --config.data.data_dir=<folder "
            "holding the complete dataset>") from None
    fp = data_fingerprint(root, files)
    bad = checks.find_bad_images([os.path.join(root, f) for f in files])
    skipped = sorted(os.path.relpath(p, root) for p in bad)
    if bad and not bool(d.get("skip_bad_files", False)):
        raise PipelineError(str(checks.BadImageError(bad)))
    fp.update({"source": "folder", "root": str(root),
               "num_classes": int(spec.num_classes),
               "skipped_bad_files": skipped})
    return fp


def _check_user_data(cfg):
    """``folder`` / ``tfds:<builder>`` data (the user-data readers): the folder is
    listed, every file's header read and the split checked."""
    from remotetrimmer_tf.data import checks
    from remotetrimmer_tf.pipeline import user_data
    d = cfg.data
    src = user_data.source(cfg)          # one PipelineError line on bad files
    user_data.validate(cfg)
    if d.name != "folder":
        return {"source": "tfds", "num_classes": int(src.num_classes)}
    bad = {} if src.kind == "array" else checks.find_bad_images(   # tiles: read whole
        [os.path.join(src.root, f) for f in src.files])              # by open_folder
    if bad:
        if bool(d.get("skip_bad_files", False)):
            raise PipelineError(
                f"{_where(d)}: --config.data.skip_bad_files is not supported for "
                f"--config.data.name=folder; remove the unreadable file(s) "
                f"({os.path.relpath(sorted(bad)[0], src.root)}...) from the folder")
        raise PipelineError(str(checks.BadImageError(bad)))
    fp = data_fingerprint(src.root, src.files)
    fp.update({"source": "folder", "root": str(src.root),
               "num_classes": int(src.num_classes), "skipped_bad_files": []})
    return fp


def check_num_classes(cfg, data_info):
    """`--config.model.num_classes`, when set, must equal the data's classes."""
    n = cfg.model.num_classes
    have = data_info.get("num_classes")
    if n is not None and have is not None and int(n) != int(have):
        raise PipelineError(
            f"--config.model.num_classes={n} but the data ({cfg.data.name}) has "
            f"{have} classes; leave --config.model.num_classes unset or pass "
            f"--config.model.num_classes={have}")


def _all_layers(model):
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):       # nested models
            out += _all_layers(layer)
    return out


def check_init_model(run):
    """Loads `--init_model` and checks it fits the data and the criterion.

    Returns:
      `(model, head)` from `user_model.fit_init_model`: the model to train
      or copy (its head replaced when --config.model.replace_head asks) and
      `{"head_replaced": bool, ...}`.
    """
    import keras
    model = run.load_init_model()
    # input size, channels, class count (or --config.model.replace_head)
    from remotetrimmer_tf.pipeline import user_model
    fitted = user_model.fit_init_model(run, model)
    importance = run.cfg.prune.importance
    layers = _all_layers(model)
    # (cap on a model without SE gates inserts and trains gates)
    if importance in BN_IMPORTANCE and not any(
            isinstance(l, keras.layers.BatchNormalization) for l in layers):
        raise PipelineError(
            f"--init_model={run.init_model} has no BatchNormalization layer, "
            f"whose scale --config.prune.importance={importance} scores; pass "
            "--config.prune.importance=l1 (or l2, fpgm, taylor) for this model")
    return fitted


def check_inputs(run):
    """Runs every check above; returns the inputs record for the ledger.

    The data is checked first, before the backend is imported, so a data
    problem is reported in a second."""
    from remotetrimmer_tf.pipeline.quiet import import_keras_quietly
    data_info = check_data(run.cfg)
    check_num_classes(run.cfg, data_info)
    import_keras_quietly()
    check_strategy(run)
    if run.init_model:
        check_init_model(run)
    return {"data": data_info}
