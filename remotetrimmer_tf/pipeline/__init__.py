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
import math
import os
import pathlib
import sys
import time

from remotetrimmer_tf import choices as choices_lib
from remotetrimmer_tf.pipeline.stages import STAGES
from remotetrimmer_tf.pipeline.workdir import (PipelineError, Workdir, first_line,
                                               file_digest, new_run_dir)

__all__ = ["PipelineError", "Workdir", "run_pipeline", "validate_config",
           "STAGES", "parse_stages", "parse_force", "config_dir", "config_base",
           "resolve_workdir"]


# data.name and model.arch are checked by user_data / user_model (issue 13);
# the choices of every other field come from `remotetrimmer_tf.choices`.
def _choices():
    return {
        "prune.importance": choices_lib.importances(),
        "prune.scope": choices_lib.SCOPES,
        "prune.round_mode": choices_lib.ROUND_MODES,
        "prune.reduction": choices_lib.reductions(),
        "evaluate.split": choices_lib.EVAL_SPLITS,
    }


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
    for path, choices in _choices().items():
        value = _get(cfg, path)
        if value not in choices:
            raise _bad(path, value, f"is not one of {', '.join(choices)}; "
                       f"pass e.g. --config.{path}={choices[0]}")
    ratio = cfg.prune.ratio
    if not isinstance(ratio, (int, float)) or not 0.0 <= float(ratio) < 1.0:
        raise _bad("prune.ratio", ratio,
                   "is outside [0, 1); pass the fraction of channels to "
                   "remove, e.g. --config.prune.ratio=0.7")
    _validate_budget(cfg.prune)   # issue 15: target_macs / params / latency_ms
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
        if q not in choices_lib.QUANTIZE:
            raise _bad("export.quantize", q, f"is not one of "
                       f"{', '.join(choices_lib.QUANTIZE)}; repeat the flag for several")
    _validate_export_formats(cfg.export)   # issue 29
    # (cap on a model without SE gates inserts and trains gates: issue 13)
    for path in ("data.skip_bad_files", "deterministic"):
        try:
            value = _get(cfg, path)
        except (KeyError, AttributeError):
            continue              # an older config without the field
        if not isinstance(value, bool):
            raise _bad(path, value, "must be True or False")
    if cfg.data.data_dir is not None and not os.path.isdir(cfg.data.data_dir):
        raise _bad("data.data_dir", cfg.data.data_dir,
                   "is not a folder; pass the folder holding the dataset")
    if user_data.is_user_dataset(cfg.data.name):   # issue 13: list + check files
        user_data.validate(cfg)


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


_BUDGETS = ("target_macs", "target_params", "target_latency_ms", "target_latency_of")
_LATENCY = ("target_latency_ms", "target_latency_of")


def budget_of(prune_cfg):
    """``{"target_macs": int}`` (or params / latency_ms, with runtime, threads,
    dtype) from the prune config; ``{}`` when pruning by ratio."""
    given = {k: prune_cfg.get(k) for k in _BUDGETS if prune_cfg.get(k) is not None}
    if not given:
        return {}
    (key, value), = given.items()
    if key in _LATENCY:
        if key == "target_latency_of":
            value = _reference_model(value)
        else:
            value = float(value)
        margin = prune_cfg.get("latency_margin")
        return {key: value, "runtime": prune_cfg.get("runtime", "litert"),
                "threads": int(prune_cfg.get("threads", 1)),
                "dtype": prune_cfg.get("dtype", "float32"),
                "objective": prune_cfg.get("objective", choices_lib.DEFAULT_OBJECTIVE),
                "latency_margin": None if margin is None else float(margin)}
    return {key: int(value)}


def _reference_model(path):
    """The ``--config.prune.target_latency_of`` model, loaded (exit 2 if it cannot be)."""
    from remotetrimmer_tf.pipeline.stages import _load_keras
    try:
        return _load_keras(path)
    except Exception as e:  # noqa: BLE001 - any load failure is the user's file
        raise PipelineError(f"--config.prune.target_latency_of={path}: cannot load it as a "
                            f"Keras model ({first_line(e)[:200]}); give a .keras file saved with "
                            "model.save()") from None


def _validate_budget(p):
    """One budget at most, positive, and not together with an explicit ratio."""
    given = [k for k in _BUDGETS if p.get(k) is not None]
    if len(given) > 1:
        raise PipelineError(f"--config.prune.{given[0]} and --config.prune.{given[1]} "
                            "conflict; give one budget")
    if not given:
        return
    key = given[0]
    value = p.get(key)
    if key == "target_latency_of":
        if not os.path.isfile(str(value)) or not str(value).endswith((".keras", ".h5")):
            raise _bad(f"prune.{key}", value, "is not a .keras (or .h5) file; give the "
                       "model the pruned one must be no slower than")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0 \
            or (key != "target_latency_ms" and value != int(value)):
        raise _bad(f"prune.{key}", value, "must be a positive "
                   + ("number of milliseconds" if key == "target_latency_ms"
                      else "whole number, e.g. 15e6"))
    if any(a.split("=")[0] == "--config.prune.ratio" for a in sys.argv[1:]):
        raise PipelineError(f"--config.prune.ratio and --config.prune.{key} conflict: "
                            "a budget decides the widths; drop one of them")
    if key in _LATENCY:
        if p.get("runtime") not in choices_lib.RUNTIMES:
            raise _bad("prune.runtime", p.get("runtime"),
                       f"is not one of {', '.join(choices_lib.RUNTIMES)}")
        if p.get("dtype") not in choices_lib.DTYPES:
            raise _bad("prune.dtype", p.get("dtype"),
                       f"is not one of {', '.join(choices_lib.DTYPES)}")
        threads = p.get("threads")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise _bad("prune.threads", threads, "must be an integer >= 1")
        if p.get("objective", choices_lib.DEFAULT_OBJECTIVE) not in choices_lib.OBJECTIVES:
            raise _bad("prune.objective", p.get("objective"),
                       f"is not one of {', '.join(choices_lib.OBJECTIVES)}")
        margin = p.get("latency_margin")
        if margin is not None and (isinstance(margin, bool)
                                   or not isinstance(margin, (int, float))
                                   or not 0 <= margin < choices_lib.LATENCY_MARGIN_MAX):
            raise _bad("prune.latency_margin", margin,
                       f"must be a fraction in [0, {choices_lib.LATENCY_MARGIN_MAX}), e.g. "
                       "0.03 (or unset: measured)")
        if importlib.util.find_spec("ai_edge_litert") is None:
            raise PipelineError(f"--config.prune.{key} needs the LiteRT runtime "
                                "on this machine: pip install ai-edge-litert")


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


def resolve_workdir(workdir):
    """The absolute run folder path (not created), or None for a fresh one.

    Raises:
      PipelineError: the path is a file, or a non-empty folder that is not a
        run folder (so no file of the user's is ever overwritten).
    """
    if workdir is None:
        return None
    path = os.path.abspath(os.path.expanduser(str(workdir)))
    if os.path.exists(path) and not os.path.isdir(path):
        raise PipelineError(
            f"--workdir={workdir} is a file, not a folder; pass a new "
            "folder path")
    if (os.path.isdir(path) and os.listdir(path)
            and not os.path.exists(os.path.join(path, "stages.json"))):
        raise PipelineError(
            f"--workdir={workdir} exists and is not a run folder (no "
            "stages.json); pass a new or empty folder so no file of "
            "yours is overwritten")
    return path


def _config_changes(wd, plain, init_digest):
    """Config paths (and `--init_model`) that differ from the run's ledger."""
    if not (wd.has_ledger() and wd.ledger.get("stages")):
        return []
    changed = _diff(wd.ledger.get("config") or {}, plain)
    old_inputs = wd.ledger.get("inputs") or {}
    if old_inputs.get("init_model_sha256") != init_digest:
        changed.append("--init_model")
    return changed


def parse_force(text, selected, explicit_stages):
    """`--force` names -> tuple of stages to rerun even when finished."""
    if text in (None, "", ()):
        return ()
    if not isinstance(text, str):
        text = ",".join(text)
    if text == "all":
        return tuple(selected)
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise PipelineError(
            f"--force: unknown stage(s) {', '.join(unknown)}; choose from "
            f"{','.join(STAGES)} (comma separated) or 'all'")
    outside = [s for s in names if s not in selected]
    if outside and explicit_stages:
        raise PipelineError(
            f"--force={text}: {', '.join(outside)} not in --stages; add it to "
            "--stages or leave out --stages")
    return tuple(s for s in STAGES if s in names)


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def run_pipeline(cfg, workdir=None, init_model=None, strategy="default",
                 stages=None, resume=False, verbose=2, log=None, force=None):
    """Runs (or resumes) the pipeline; returns a summary dict.

    Order of work, so that a bad input never costs the user a file:
    1. the config, `--stages`, `--force`, `--init_model` (a Keras archive)
       and `--workdir` are checked; 2. the run folder is locked (`.lock`:
       one process per folder); 3. the data (classes, every image), the
       strategy and the loaded `--init_model` are checked
       (`pipeline.inputs`); 4. only then does the folder change: an
       `--init_model` inside it is copied to `inputs/`, temporary leftovers
       of a killed run are removed, and the results of every stage that
       reruns are moved to `superseded/<UTC timestamp>/` (never deleted).

    A stage reruns when its config sections, the `--init_model`, the data
    files (paths, sizes, mtimes) or one of its artifacts (sha256) changed, or
    when `force` names it. Every stage starts from the same seed with
    deterministic kernels, so a rerun reproduces the same models.

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
      force: stage names (or a comma list, or "all") to rerun even if they
        finished; the stages after them rerun too.

    Returns:
      `{"workdir": path, "ran": [...], "skipped": [...], "report": {...}}`.

    Raises:
      PipelineError: bad input (one line naming the flag/field/file and fix),
        also a failed write (full disk): the run stays resumable.
      interrupt.Interrupted: SIGINT/SIGTERM; `.stage` names the stage.
    """
    from remotetrimmer_tf.pipeline.interrupt import Interrupted, signals_as_interrupts
    from remotetrimmer_tf.pipeline.lock import RunLock
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    validate_config(cfg, init_model)
    if not isinstance(verbose, int) or isinstance(verbose, bool) or not 0 <= verbose <= 2:
        raise PipelineError(f"--verbose={verbose!r} must be 0, 1 or 2")
    if stages is not None and not isinstance(stages, str):
        stages = ",".join(stages)
    selected = parse_stages(stages)
    explicit_stages = stages not in (None, "", "all")
    forced = parse_force(force, selected, explicit_stages)
    init_digest = None
    if init_model is not None:
        from remotetrimmer_tf.pipeline.stages import check_keras_file
        check_keras_file(init_model)
        init_digest = file_digest(init_model)
    # ---- several workers (pipeline/workers.py): the strategy is created
    # before anything runs a TensorFlow op; the non-chief workers follow the
    # chief in a temporary folder and never open --workdir.
    from remotetrimmer_tf.pipeline import workers
    strategy_obj = workers.start(strategy, log)
    if not workers.is_chief(strategy_obj):
        return workers.follow_chief(cfg, strategy_obj, init_model=init_model,
                                    verbose=verbose, log=log)
    path = resolve_workdir(workdir)
    created = path is None or not os.path.exists(path)
    wd = Workdir(path if path is not None else new_run_dir("runs"))
    lock = RunLock(wd.path, log=log).acquire()
    state = {"stage": "the input checks"}
    try:
        with signals_as_interrupts(), workers.leading(strategy_obj, log) as lead:
            return _run_locked(cfg, wd, init_model, init_digest, strategy,
                               selected, explicit_stages, forced, resume,
                               verbose, log, state, strategy_obj, lead)
    except Interrupted as e:
        e.stage = e.stage or state["stage"]
        raise
    finally:
        lock.release()
        if created:   # a folder we made for a run that failed its checks
            try:
                wd.path.rmdir()          # only succeeds when still empty
            except OSError:
                pass


def _run_locked(cfg, wd, init_model, init_digest, strategy, selected,
                explicit_stages, forced, resume, verbose, log, state,
                strategy_obj=None, lead=None):
    """The chief's (or the single process's) part of `run_pipeline`, under the
    run folder's lock: check every input, then change the folder."""
    from remotetrimmer_tf.pipeline import stages as stages_mod
    from remotetrimmer_tf.pipeline.inputs import check_inputs
    wd.ledger = wd._read_ledger()        # as of now, under the lock
    plain = _plain(cfg)
    changed = _config_changes(wd, plain, init_digest)
    if changed and not resume:
        shown = ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
        raise PipelineError(
            f"--workdir={wd.path} holds a run made with a different config "
            f"(changed: {shown}); pass --resume to rerun the changed "
            "stages there, or pass a new --workdir")
    run = stages_mod.Run(cfg, wd, init_model=init_model, strategy=strategy,
                         verbose=verbose)
    if strategy_obj is not None:
        run._strategy = strategy_obj       # one strategy per process
    seed = int(cfg.train.get("seed", 0) or 0)
    deterministic = bool(cfg.get("deterministic", True))
    inputs = check_inputs(run)                        # 3. every input checked
    determinism = _make_deterministic(seed, deterministic)
    data_info = inputs["data"]
    keys = stages_mod.stage_keys(plain, init_digest, data_info.get("digest"))
    run.keys = keys
    last_selected = max(STAGES.index(s) for s in selected)
    for stage in STAGES[:last_selected]:
        if stage not in selected and stage != "report" and \
                wd.finished(stage, keys[stage]) is None:
            raise PipelineError(
                f"--stages: stage '{stage}' has not finished in {wd.path} "
                "with this config and a later selected stage needs it; add "
                f"{stage} to --stages (or leave out --stages)")
    # 4. from here on the run folder changes
    _prepare_folder(run, wd, plain, cfg, init_model, init_digest, data_info,
                    determinism, log)
    if lead is not None:
        lead.attach(run)
    ran, skipped = [], []
    explicit_report = "report" in selected and explicit_stages
    for stage in STAGES[:last_selected + 1]:
        state["stage"] = stage
        done = wd.finished(stage, keys[stage])
        why = None
        if done is not None:
            if stage in forced:
                why = "--force"
            elif not (stage == "report" and explicit_report):
                skipped.append(stage)
                hint = (f"; pass --force={stage} to rerun it"
                        if explicit_stages and stage in selected else "")
                log(f"[remotetrimmer] {stage}: finished earlier, skipped{hint}")
                continue
        elif wd.entry(stage) is not None:
            why = wd.why.get(stage)
        if stage not in selected:
            if stage == "report":
                continue
            raise PipelineError(
                f"--stages: stage '{stage}' has not finished in {wd.path} "
                "with this config and a later selected stage needs it; add "
                f"{stage} to --stages (or leave out --stages)")
        # This stage and every later one are stale now: their results move
        # to superseded/, so nothing left in place looks finished.
        moved = wd.supersede_stages(STAGES[STAGES.index(stage):])
        if why:
            log(f"[remotetrimmer] {stage}: rerunning ({why})")
        if moved:
            log(f"[remotetrimmer] moved {len(moved)} earlier result(s) of "
                f"{stage} and later stages to "
                f"{os.path.relpath(wd._superseded, wd.path)}/")
        log(f"[remotetrimmer] {stage}: running")
        artifacts, info, seconds = _run_stage(run, wd, stage, keys[stage], seed,
                                              deterministic, lead)
        ran.append(stage)
        log(f"[remotetrimmer] {stage}: done in {seconds:.1f} s"
            + (f" ({info['skipped']})" if info.get("skipped") else ""))
        if stage == "train":
            run._init_model = None        # release the loaded --init_model
        _clear_session()
    state["stage"] = "the summary"
    if explicit_stages and not ran:
        log(f"[remotetrimmer] nothing to run: {', '.join(selected)} finished "
            f"earlier with these inputs; pass --force={','.join(selected)} to "
            "rerun")
    summary = {"workdir": str(wd.path), "ran": ran, "skipped": skipped}
    if wd._superseded is not None:
        summary["superseded"] = str(wd._superseded)
    if wd.exists("report.json"):
        summary["report"] = wd.read_json("report.json")
    return summary


def _prepare_folder(run, wd, plain, cfg, init_model, init_digest, data_info,
                    determinism, log):
    """Step 4 of `run_pipeline`, once every input is checked: the folder
    changes (--init_model copy, temporary leftovers, the ledger's inputs)."""
    from remotetrimmer_tf.pipeline.fingerprint import describe_data_change
    if init_model is not None and _inside(init_model, wd.path):
        copy = f"inputs/init_model-{init_digest}.keras"
        if os.path.realpath(init_model) != os.path.realpath(wd / copy):
            wd.copy_in(init_model, copy)
            log(f"[remotetrimmer] --init_model lies inside the run folder: "
                f"reading the copy {copy} (the file itself is left as it is)")
        run.init_model_given = init_model
        run.init_model = str(wd / copy)
    removed = wd.clean_temporaries()
    if removed:
        log(f"[remotetrimmer] removed {len(removed)} temporary file(s) left by an "
            f"interrupted run: {', '.join(removed[:3])}"
            + (" ..." if len(removed) > 3 else ""))
    old_data = (wd.ledger or {}).get("inputs", {}).get("data") if wd.has_ledger() else None
    change = describe_data_change(old_data, data_info)
    if change and wd.ledger.get("stages"):
        log(f"[remotetrimmer] {change}: the stages from train on rerun")
    if data_info.get("skipped_bad_files"):
        bad = data_info["skipped_bad_files"]
        log(f"[remotetrimmer] --config.data.skip_bad_files: leaving out "
            f"{len(bad)} unreadable image(s): {', '.join(bad[:3])}"
            + (" ..." if len(bad) > 3 else ""))
    wd.start(plain, cfg.get("name", "config"))
    wd.ledger["inputs"] = {"init_model_sha256": init_digest, "data": data_info,
                           "determinism": determinism}
    wd._write_ledger()
    log(f"[remotetrimmer] run folder: {wd.path}")


def _run_stage(run, wd, stage, key, seed, deterministic, lead):
    """Runs one stage (seeded; a failure leaves none of its files), records
    it in the ledger; returns `(artifacts, info, seconds)`."""
    from remotetrimmer_tf.pipeline import stages as stages_mod
    from remotetrimmer_tf.pipeline.interrupt import acknowledge
    if lead is not None:
        lead.before(stage)   # multi_worker: the other workers join a training stage
    _make_deterministic(seed, deterministic)
    run.start_stage()
    t0 = time.time()
    wd.begin_stage()
    try:
        artifacts, info = stages_mod.FUNCTIONS[stage](run)
    except OSError as e:
        wd.discard_written()
        where = e.filename or wd.path
        raise PipelineError(
            f"{stage}: writing {where} failed ({e.strerror or e}); free "
            "disk space (or fix the folder's permissions) and rerun the "
            "same command to resume") from None
    except Exception as e:
        wd.discard_written()
        if "determinis" in str(e) and type(e).__name__ == "UnimplementedError":
            raise PipelineError(
                f"{stage}: an op has no deterministic kernel here "
                f"({_one_line(e)[:200]}); pass --config.deterministic=False "
                "to run without bitwise reproducibility") from None
        raise
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            acknowledge()             # no further re-delivery: clean up
        wd.discard_written()
        raise
    if lead is not None:
        lead.after(stage, artifacts)
    seconds = time.time() - t0
    wd.mark_finished(stage, key, artifacts, info, seconds)
    return artifacts, info, seconds


def _make_deterministic(seed, kernels=True):
    """Seeds everything and (with `kernels`, the config's `deterministic`)
    turns on deterministic kernels (see `training.strategy.make_deterministic`)."""
    from remotetrimmer_tf.training.strategy import make_deterministic
    return make_deterministic(seed, kernels=kernels)


def _clear_session():
    keras = sys.modules.get("keras")
    if keras is not None:
        try:
            keras.backend.clear_session()
        except Exception:  # noqa: BLE001 - best effort memory release
            pass
