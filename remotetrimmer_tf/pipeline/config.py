"""Config files and their checks, before anything runs (no TensorFlow).

Where the configs live (:func:`config_dir`, :func:`config_base`), the check
of every value the pipeline reads (:func:`validate_config`, one line naming
the ``--config.`` field and the fix) and the prune section as ``Pruner``
arguments (:func:`budget_of`). A pruning target is checked by the same
``planning.check_target`` the ``Pruner`` calls; this module only words it as
flags.
"""
import importlib.util
import os
import pathlib
import sys

from remotetrimmer_tf import choices as choices_lib
from remotetrimmer_tf.pipeline.workdir import PipelineError, first_line

__all__ = ["config_dir", "config_base", "load_module_file", "validate_config", "budget_of"]


def config_dir():
    """The folder holding the config files (`configs/`).

    Looked up inside the package (`remotetrimmer_tf/configs`, when setup.py
    ships configs/ as package data), then next to it (a source checkout or
    `pip install -e .`).

    Raises:
      PipelineError: if neither exists.
    """
    pkg = pathlib.Path(__file__).resolve().parents[1]
    candidates = (pkg / "configs", pkg.parent / "configs")
    for cand in candidates:
        if (cand / "base.py").is_file() and (cand / "demo.py").is_file():
            return cand
    raise PipelineError(
        "--config: the configs/ folder was not found (looked in "
        f"{', '.join(str(c) for c in candidates)}); install from a source "
        "checkout with `pip install -e .` or pass --config=<path to a config .py>")


def config_base(near=None):
    """The config schema module `configs/base.py`, for config files.

    Args:
      near: a config file's `__file__`; a `base.py` next to it is preferred
        (so a copied configs folder uses its own schema), else the package's.

    Returns:
      The loaded module (cached per path).

    Example (a config file):
      from remotetrimmer_tf.pipeline import config_base
      base = config_base(__file__)
      def get_config():
          return base.experiment("eurosat", "resnet18", "modern")
    """
    path = None
    if near is not None:
        sibling = pathlib.Path(near).resolve().with_name("base.py")
        if sibling.is_file():
            path = sibling
    path = path or (config_dir() / "base.py")
    return load_module_file("remotetrimmer_configs_base_" + config_hash_path(path), path)


def load_module_file(name, path):
    """Import the Python file ``path`` as module ``name`` (once; cached in
    ``sys.modules``) without importing the package it lives in."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def config_hash_path(path):
    """A short stable name for a config file path."""
    import hashlib
    return hashlib.sha256(str(path).encode()).hexdigest()[:10]


def _last_line(text):
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _get(cfg, path):
    node = cfg
    for part in path.split("."):
        node = node[part]
    return node


def _bad(path, value, fix):
    return PipelineError(f"--config.{path}={value!r} {fix}")


# ------------------------------------------------------------------ checks
def validate_config(cfg, init_model=None, given=()):
    """Checks every config value the pipeline reads; no TensorFlow imported.

    Args:
      cfg: the `ConfigDict` (schema of `configs/base.py`).
      init_model: the `--init_model` path, if any (SE/cap consistency is then
        checked on the loaded model instead).
      given: the config fields set on the command line (`"prune.ratio"`...):
        a ratio given there conflicts with a budget (the CLI passes them).

    Raises:
      PipelineError: one line naming the `--config.` field and the fix.
    """
    from remotetrimmer_tf.pipeline import user_data, user_model
    user_data.check_name(cfg)                 # dataset name / architecture / own data
    user_model.check_config(cfg, init_model)
    _check_choices(cfg)
    _check_prune(cfg.prune, "prune.ratio" in given)
    _check_rounds(cfg.prune)
    _check_numbers(cfg)
    _check_recipes(cfg)
    _check_flags(cfg)
    if cfg.data.data_dir is not None and not os.path.isdir(cfg.data.data_dir):
        raise _bad("data.data_dir", cfg.data.data_dir,
                   "is not a folder; pass the folder holding the dataset")
    if user_data.is_user_dataset(cfg.data.name):   # list + check the files
        user_data.validate(cfg)


def _check_choices(cfg):
    """Fields with a list of choices (`remotetrimmer_tf.choices`; data.name
    and model.arch are checked by user_data / user_model)."""
    fields = {"prune.importance": choices_lib.importances(),
              "prune.scope": choices_lib.SCOPES,
              "prune.round_mode": choices_lib.ROUND_MODES,
              "prune.reduction": choices_lib.reductions(),
              "evaluate.split": choices_lib.EVAL_SPLITS}
    for path, choices in fields.items():
        value = _get(cfg, path)
        if value not in choices:
            raise _bad(path, value, f"is not one of {', '.join(choices)}; "
                       f"pass e.g. --config.{path}={choices[0]}")
    for q in cfg.export.quantize:
        if q not in choices_lib.QUANTIZE:
            raise _bad("export.quantize", q, f"is not one of "
                       f"{', '.join(choices_lib.QUANTIZE)}; repeat the flag for several")
    _validate_export_formats(cfg.export)


def _validate_export_formats(e):
    """``export.formats`` names known formats whose packages are installed."""
    from remotetrimmer_tf.export.formats import (ExportFormatError, missing_packages,
                                                 parse_formats)
    given = ",".join(str(v) for v in (e.get("formats") or ()))
    try:
        formats = parse_formats(e.get("formats") or ())
    except ExportFormatError as err:
        raise _bad("export.formats", given, f"names an {first_line(err)}; pass e.g. "
                   "--config.export.formats=litert,onnx,saved_model") from None
    for fmt in formats:
        missing = missing_packages(fmt)
        if missing:
            raise _bad("export.formats", given, f"needs {', '.join(missing)} for {fmt}: "
                       f"pip install {' '.join(missing)} (or leave {fmt} out)")


def _check_prune(p, ratio_given):
    """The ratio and the budget, by the checks the Pruner runs (worded as flags)."""
    from remotetrimmer_tf.planning import TargetError, check_ratio, check_target
    try:
        check_ratio(p.ratio)
    except ValueError:
        raise _bad("prune.ratio", p.ratio, "is outside [0, 1); pass the fraction of "
                   "channels to remove, e.g. --config.prune.ratio=0.7") from None
    given = {k: p.get(k) for k in _BUDGETS}
    ref = given["target_latency_of"]
    if ref is not None and sum(v is not None for v in given.values()) == 1 and (
            not os.path.isfile(str(ref)) or not str(ref).endswith((".keras", ".h5"))):
        raise _bad("prune.target_latency_of", ref, "is not a .keras (or .h5) file; give "
                   "the model the pruned one must be no slower than")
    try:
        check_target(given, ratio_given=ratio_given, **_latency_options(p))
    except TargetError as err:
        raise PipelineError(err.worded(lambda f: f"--config.prune.{f}")) from None


def _check_rounds(p):
    """``prune.rounds``: an integer >= 1; several rounds take a ratio or a
    MACs / params target (a latency search per round is not offered)."""
    rounds = p.get("rounds", 1)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise _bad("prune.rounds", rounds, "must be an integer >= 1 (1: one-shot "
                   "pruning; k: k rounds with fine-tuning between), e.g. "
                   "--config.prune.rounds=3")
    latency = [k for k in _LATENCY if p.get(k) is not None]
    if rounds > 1 and latency:
        raise PipelineError(
            f"--config.prune.rounds={rounds} with --config.prune.{latency[0]}: a latency "
            "budget prunes in one round; pass --config.prune.rounds=1, or prune in rounds "
            "to a ratio, target_macs or target_params")


def _check_numbers(cfg):
    """Integers with a lower bound, optional positive integers, fractions."""
    for path, low in (("data.image_size", 8), ("data.batch_size", 1),
                      ("prune.round_to", 1), ("prune.min_channels", 1),
                      ("recalibrate.steps", 0), ("export.check_samples", 1),
                      ("export.representative_steps", 1)):
        value = _get(cfg, path)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise _bad(path, value, f"must be an integer >= {low}")
    for path in ("attention.steps", "evaluate.steps", "model.num_classes"):
        value = _get(cfg, path)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise _bad(path, value, "must be a positive integer or None")
    for path in ("data.train_fraction", "data.val_fraction"):
        value = _get(cfg, path)
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise _bad(path, value, "must be a fraction in [0, 1)")
    if not 0.0 < cfg.data.train_fraction:
        raise _bad("data.train_fraction", cfg.data.train_fraction,
                   "must be > 0 (e.g. 0.7, the published split)")


def _check_recipes(cfg):
    """The train / finetune sections, by `training.recipes.resolve`."""
    recipes = config_base()._recipes_module()
    for section in ("train", "finetune"):
        r = cfg[section].to_dict()
        steps = r.pop("steps_per_epoch", None)
        r.pop("tensorboard", None)   # config-only
        _check_settle(section, r.pop("settle_bn", "auto"), r.pop("settle_steps", 50))
        epochs = r.get("epochs")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
            raise _bad(f"{section}.epochs", epochs, "must be an integer >= 0")
        r["epochs"] = max(1, epochs)   # 0 = skip training; resolve wants >= 1
        try:
            recipes.resolve(r)
        except (ValueError, TypeError) as e:
            msg = _last_line(e).replace("recipe.", f"--config.{section}.", 1)
            raise PipelineError(f"{msg} (see training/recipes.py)") from None
        if steps is not None and (not isinstance(steps, int) or steps < 1):
            raise _bad(f"{section}.steps_per_epoch", steps,
                       "must be a positive integer or None (whole split)")


SETTLE_BN = ("auto", "epoch", "end", "off")


def _check_settle(section, mode, steps):
    """`--config.<section>.settle_bn` / `settle_steps` (training.fit's)."""
    if mode not in SETTLE_BN:
        raise _bad(f"{section}.settle_bn", mode, f"must be one of {', '.join(SETTLE_BN)}")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool)
                              or steps < 1):
        raise _bad(f"{section}.settle_steps", steps,
                   "must be a positive integer (training batches) or None (all)")


def _check_flags(cfg):
    """True / False fields (an older config may lack them)."""
    for path in ("data.skip_bad_files", "deterministic"):
        try:
            value = _get(cfg, path)
        except (KeyError, AttributeError):
            continue
        if not isinstance(value, bool):
            raise _bad(path, value, "must be True or False")


# ------------------------------------------------------------------ budgets
_BUDGETS = ("target_macs", "target_params", "target_latency_ms", "target_latency_of")
_LATENCY = ("target_latency_ms", "target_latency_of")


def _latency_options(p):
    return {"runtime": p.get("runtime", "litert"), "threads": p.get("threads", 1),
            "dtype": p.get("dtype", "float32"),
            "objective": p.get("objective", choices_lib.DEFAULT_OBJECTIVE),
            "latency_margin": p.get("latency_margin")}


def budget_of(prune_cfg):
    """``{"target_macs": int}`` (or params / latency_ms, with runtime, threads,
    dtype) from the prune config, as ``Pruner`` arguments; ``{}`` when
    pruning by ratio."""
    given = {k: prune_cfg.get(k) for k in _BUDGETS if prune_cfg.get(k) is not None}
    if not given:
        return {}
    (key, value), = given.items()
    if key not in _LATENCY:
        return {key: int(value)}
    value = _reference_model(value) if key == "target_latency_of" else float(value)
    options = _latency_options(prune_cfg)
    options["threads"] = int(options["threads"])
    if options["latency_margin"] is not None:
        options["latency_margin"] = float(options["latency_margin"])
    return {key: value, **options}


def _reference_model(path):
    """The ``--config.prune.target_latency_of`` model, loaded (exit 2 if it cannot be)."""
    from remotetrimmer_tf.pipeline.run_state import load_keras
    try:
        return load_keras(path)
    except Exception as e:  # noqa: BLE001 - any load failure is the user's file
        raise PipelineError(f"--config.prune.target_latency_of={path}: cannot load it as a "
                            f"Keras model ({first_line(e)[:200]}); give a .keras file saved with "
                            "model.save()") from None
