"""Resumable pruning pipeline over a run folder (the engine of the CLI).

`run_pipeline(config, workdir=...)` runs the stages of `pipeline.stages`
(train -> attention -> fold -> prune -> recalibrate -> finetune -> evaluate ->
export -> report), each writing its artifacts atomically into the run folder
and recording itself in the ledger `stages.json`; a rerun skips the finished
stages. `validate_config` checks a config without importing TensorFlow.

Example:
  from ml_collections import config_flags  # or load a configs/*.py yourself
  summary = run_pipeline(config, workdir="runs/try1")
  print(summary["report"]["accuracy"])
"""
import importlib.util
import json
import os
import pathlib
import sys
import time

from remotetrimmer_tf.pipeline.stages import STAGES
from remotetrimmer_tf.pipeline.workdir import (PipelineError, Workdir,
                                               file_digest, new_run_dir)

__all__ = ["PipelineError", "Workdir", "run_pipeline", "validate_config",
           "STAGES", "parse_stages", "config_dir", "config_base"]


# data.name and model.arch are checked by user_data / user_model (issue 13).
_CHOICES = {
    "prune.importance": ("cap", "slim", "l1", "l2", "fpgm", "taylor", "random"),
    "prune.scope": ("local", "global"),
    "prune.round_mode": ("up", "down", "nearest"),
    "prune.reduction": ("mean", "max", "sum", "prod", "first"),
    "evaluate.split": ("test", "val", "train"),
}
_QUANTIZE = ("none", "float16", "dynamic", "int8")


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
    import hashlib
    return hashlib.sha256(str(path).encode()).hexdigest()[:10]


def _one_line(text):
    lines = [l.strip() for l in str(text).strip().splitlines() if l.strip()]
    return lines[-1] if lines else ""


def _get(cfg, path):
    node = cfg
    for part in path.split("."):
        node = node[part]
    return node


def _bad(path, value, fix):
    return PipelineError(f"--config.{path}={value!r} {fix}")


def validate_config(cfg, init_model=None):
    """Checks every config value the pipeline reads; no TensorFlow imported.

    Args:
      cfg: the `ConfigDict` (schema of `configs/base.py`).
      init_model: the `--init_model` path, if any (SE/cap consistency is then
        checked on the loaded model instead).

    Raises:
      PipelineError: one line naming the `--config.` field and the fix.
    """
    # --- issue 13: dataset name / architecture / own data (no TensorFlow)
    from remotetrimmer_tf.pipeline import user_data, user_model
    user_data.check_name(cfg)
    user_model.check_config(cfg, init_model)
    # --- end issue 13
    for path, choices in _CHOICES.items():
        value = _get(cfg, path)
        if value not in choices:
            raise _bad(path, value, f"is not one of {', '.join(choices)}; "
                       f"pass e.g. --config.{path}={choices[0]}")
    ratio = cfg.prune.ratio
    if not isinstance(ratio, (int, float)) or not 0.0 <= float(ratio) < 1.0:
        raise _bad("prune.ratio", ratio,
                   "is outside [0, 1); pass the fraction of channels to "
                   "remove, e.g. --config.prune.ratio=0.7")
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
        hi = 1.0
        if not isinstance(value, (int, float)) or not 0.0 <= value < hi:
            raise _bad(path, value, "must be a fraction in [0, 1)")
    if not 0.0 < cfg.data.train_fraction:
        raise _bad("data.train_fraction", cfg.data.train_fraction,
                   "must be > 0 (e.g. 0.7, the published split)")
    recipes = config_base()._recipes_module()
    for section in ("train", "finetune"):
        r = cfg[section].to_dict()
        steps = r.pop("steps_per_epoch", None)
        r.pop("tensorboard", None)   # config-only (issue 13)
        epochs = r.get("epochs")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
            raise _bad(f"{section}.epochs", epochs, "must be an integer >= 0")
        r["epochs"] = max(1, epochs)   # 0 = skip training; resolve wants >= 1
        try:
            recipes.resolve(r)
        except (ValueError, TypeError) as e:
            msg = _one_line(e).replace("recipe.", f"--config.{section}.", 1)
            raise PipelineError(f"{msg} (see training/recipes.py)") from None
        if steps is not None and (not isinstance(steps, int) or steps < 1):
            raise _bad(f"{section}.steps_per_epoch", steps,
                       "must be a positive integer or None (whole split)")
    for q in cfg.export.quantize:
        if q not in _QUANTIZE:
            raise _bad("export.quantize", q, f"is not one of "
                       f"{', '.join(_QUANTIZE)}; repeat the flag for several")
    # (cap on a model without SE gates inserts and trains gates: issue 13)
    if cfg.data.data_dir is not None and not os.path.isdir(cfg.data.data_dir):
        raise _bad("data.data_dir", cfg.data.data_dir,
                   "is not a folder; pass the folder holding the dataset")
    if user_data.is_user_dataset(cfg.data.name):   # issue 13: list + check files
        user_data.validate(cfg)


def parse_stages(text):
    """`"train,prune"` -> ("train", "prune") in pipeline order; validates."""
    if text in (None, "", "all"):
        return STAGES
    names = [s.strip() for s in str(text).split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise PipelineError(
            f"--stages: unknown stage(s) {', '.join(unknown)}; choose from "
            f"{','.join(STAGES)} (comma separated) or 'all'")
    return tuple(s for s in STAGES if s in names)


def _plain(cfg):
    """The config as JSON-normalised plain data (tuples become lists)."""
    return json.loads(json.dumps(cfg.to_dict(), default=str))


def _diff(a, b, prefix=""):
    """Dotted paths where two nested dicts differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def open_workdir(workdir, cfg, init_digest, resume=False):
    """Creates or reopens the run folder; refuses a mismatched existing run.

    Args:
      workdir: path, or None for a fresh `./runs/<UTC timestamp>`.
      cfg: the config.
      init_digest: sha of `--init_model` or None.
      resume: allow continuing a run whose config differs (stages whose
        inputs changed rerun).

    Returns:
      A `Workdir` with a started ledger.
    """
    if workdir is None:
        wd = Workdir(new_run_dir("runs"))
    else:
        path = os.path.abspath(os.path.expanduser(str(workdir)))
        if (os.path.isdir(path) and os.listdir(path)
                and not os.path.exists(os.path.join(path, "stages.json"))):
            raise PipelineError(
                f"--workdir={workdir} exists and is not a run folder (no "
                "stages.json); pass a new or empty folder so no file of "
                "yours is overwritten")
        if os.path.exists(path) and not os.path.isdir(path):
            raise PipelineError(
                f"--workdir={workdir} is a file, not a folder; pass a new "
                "folder path")
        wd = Workdir(path)
    plain = _plain(cfg)
    inputs = {"init_model_sha256": init_digest}
    if wd.has_ledger() and wd.ledger.get("stages"):
        old = wd.ledger.get("config") or {}
        changed = _diff(old, plain)
        if wd.ledger.get("inputs", {}) != inputs:
            changed.append("--init_model")
        if changed and not resume:
            shown = ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
            raise PipelineError(
                f"--workdir={workdir} holds a run made with a different config "
                f"(changed: {shown}); pass --resume to rerun the changed "
                "stages there, or pass a new --workdir")
    wd.clean_temporaries()
    wd.start(plain, cfg.get("name", "config"))
    wd.ledger["inputs"] = inputs
    wd._write_ledger()
    return wd


def run_pipeline(cfg, workdir=None, init_model=None, strategy="default",
                 stages=None, resume=False, verbose=2, log=None):
    """Runs (or resumes) the pipeline; returns a summary dict.

    Args:
      cfg: the config (`configs/base.py` schema); validated first.
      workdir: run folder; None creates `./runs/<UTC timestamp>`.
      init_model: a `.keras` file to start from instead of training (only
        read: it is copied into the run folder).
      strategy: distribution strategy name for training.
      stages: names (or a comma list) to run; the stages before them must
        have finished in `workdir`. None = all.
      resume: continue a run folder whose config differs.
      verbose: Keras verbosity of training (0, 1, 2).
      log: callable taking one line of progress (default: print to stderr).

    Returns:
      `{"workdir": path, "ran": [...], "skipped": [...], "report": {...}}`.

    Raises:
      PipelineError: bad input (one line naming the flag/field/file and fix).
    """
    from remotetrimmer_tf.pipeline import stages as stages_mod
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    validate_config(cfg, init_model)
    if stages is not None and not isinstance(stages, str):
        stages = ",".join(stages)
    selected = parse_stages(stages)
    # An explicitly requested report is rewritten even when up to date.
    explicit = "report" in selected and stages not in (None, "", "all")
    init_digest = None
    if init_model is not None:
        stages_mod.check_keras_file(init_model)
        init_digest = file_digest(init_model)
    wd = open_workdir(workdir, cfg, init_digest, resume=resume)
    keys = stages_mod.stage_keys(_plain(cfg), init_digest)
    last_selected = max(STAGES.index(s) for s in selected)
    for stage in STAGES[:last_selected]:
        if stage not in selected and stage != "report" and \
                wd.finished(stage, keys[stage]) is None:
            raise PipelineError(
                f"--stages: stage '{stage}' has not finished in {wd.path} "
                "with this config and a later selected stage needs it; add "
                f"{stage} to --stages (or leave out --stages)")
    log(f"[remotetrimmer] run folder: {wd.path}")
    run = stages_mod.Run(cfg, wd, init_model=init_model, strategy=strategy,
                         verbose=verbose)
    run.keys = keys
    ran, skipped = [], []
    for stage in STAGES[:last_selected + 1]:
        done = wd.finished(stage, keys[stage])
        if done is not None and not (stage == "report" and explicit):
            skipped.append(stage)
            log(f"[remotetrimmer] {stage}: finished earlier, skipped")
            continue
        if stage not in selected:
            if stage == "report":
                continue
            raise PipelineError(
                f"--stages: stage '{stage}' has not finished in {wd.path} "
                "with this config and a later selected stage needs it; add "
                f"{stage} to --stages (or leave out --stages)")
        # This stage and every later one are stale now: drop their results so
        # that nothing left in the folder looks finished for the new inputs.
        for later in STAGES[STAGES.index(stage):]:
            for name in (wd.entry(later) or {}).get("artifacts", []):
                (wd / name).unlink(missing_ok=True)
            wd.forget(later)
        log(f"[remotetrimmer] {stage}: running")
        t0 = time.time()
        wd.begin_stage()
        try:
            artifacts, info = stages_mod.FUNCTIONS[stage](run)
        except BaseException:
            wd.discard_written()
            raise
        seconds = time.time() - t0
        wd.mark_finished(stage, keys[stage], artifacts, info, seconds)
        ran.append(stage)
        log(f"[remotetrimmer] {stage}: done in {seconds:.1f} s"
            + (f" ({info['skipped']})" if info.get("skipped") else ""))
        _clear_session()
    summary = {"workdir": str(wd.path), "ran": ran, "skipped": skipped}
    if wd.exists("report.json"):
        summary["report"] = wd.read_json("report.json")
    return summary


def _clear_session():
    keras = sys.modules.get("keras")
    if keras is not None:
        try:
            keras.backend.clear_session()
        except Exception:  # noqa: BLE001 - best effort memory release
            pass
