"""The run loop of the pipeline: `run_pipeline` over a run folder.

Checks the request (config, `--stages`, `--force`, `--init_model`,
`--workdir`), takes the run folder's lock, checks every input, then changes
the folder and runs the stages of `pipeline.stages` in order, each recorded
in the ledger `stages.json`; a rerun skips the finished ones. Config files
and their checks live in `pipeline.config`.
"""
import json
import os
import sys
import time
from typing import Callable, NamedTuple, Optional

from remotetrimmer_tf.pipeline.config import validate_config
from remotetrimmer_tf.pipeline.run_state import Run
from remotetrimmer_tf.pipeline.stages import STAGES
from remotetrimmer_tf.pipeline.workdir import (PipelineError, Workdir, file_digest,
                                               first_line, new_run_dir)

__all__ = ["run_pipeline", "parse_stages", "parse_force", "resolve_workdir"]


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


def run_pipeline(  # long: its docstring is the order of work
        cfg, workdir=None, init_model=None, strategy="default",
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
    _check_rounds_strategy(cfg, strategy)
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
            return _run_locked(cfg, wd, _Request(init_model, init_digest, strategy,
                                                 selected, explicit_stages, forced,
                                                 resume, verbose, log),
                               state, strategy_obj, lead)
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


def _check_rounds_strategy(cfg, strategy):
    """Pruning in rounds trains inside the prune stage, which runs on the
    chief only under --strategy=multi_worker: refused there, in one line."""
    rounds = cfg.prune.get("rounds", 1)
    if strategy == "multi_worker" and isinstance(rounds, int) and rounds > 1:
        raise PipelineError(
            f"--config.prune.rounds={rounds} with --strategy=multi_worker: the rounds "
            "fine-tune on one machine; pass --config.prune.rounds=1 for several "
            "workers, or another --strategy")


class _Request(NamedTuple):
    """What `run_pipeline` was asked to do, checked."""

    init_model: Optional[str]
    init_digest: Optional[str]
    strategy: str
    selected: tuple
    explicit_stages: bool
    forced: tuple
    resume: bool
    verbose: int
    log: Callable


def _run_locked(cfg, wd, req, state, strategy_obj=None, lead=None):
    """The chief's (or the single process's) part of `run_pipeline`, under the
    run folder's lock: check every input, then change the folder, then run
    the stages."""
    from remotetrimmer_tf.pipeline import stages as stages_mod
    from remotetrimmer_tf.pipeline.inputs import check_inputs
    plain = _plain(cfg)
    _check_same_config(wd, plain, req)
    run = Run(cfg, wd, init_model=req.init_model, strategy=req.strategy,
              verbose=req.verbose, strategy_object=strategy_obj)
    seed = int(cfg.train.get("seed", 0) or 0)
    deterministic = bool(cfg.get("deterministic", True))
    inputs = check_inputs(run)                        # 3. every input checked
    determinism = _make_deterministic(seed, deterministic)
    data_info = inputs["data"]
    run.keys = stages_mod.stage_keys(plain, req.init_digest, data_info.get("digest"))
    last = max(STAGES.index(s) for s in req.selected)
    for stage in STAGES[:last]:
        if stage not in req.selected and stage != "report":
            _needs_finished(wd, stage, run.keys[stage])
    # 4. from here on the run folder changes
    _prepare_folder(run, wd, plain, cfg, req.init_model, req.init_digest, data_info,
                    determinism, req.log)
    if lead is not None:
        lead.attach(run)
    ran, skipped = _run_stages(run, wd, req, STAGES[:last + 1], (seed, deterministic),
                               state, lead)
    state["stage"] = "the summary"
    return _summary(wd, req, ran, skipped)


def _check_same_config(wd, plain, req):
    """The run folder's ledger (read now, under the lock) was made with this
    config, or `--resume` lets the changed stages rerun."""
    wd.reload_ledger()
    changed = _config_changes(wd, plain, req.init_digest)
    if changed and not req.resume:
        shown = ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
        raise PipelineError(
            f"--workdir={wd.path} holds a run made with a different config "
            f"(changed: {shown}); pass --resume to rerun the changed "
            "stages there, or pass a new --workdir")


def _needs_finished(wd, stage, key):
    """A stage that is not selected must have finished (a later one needs it)."""
    if wd.finished(stage, key) is None:
        raise PipelineError(
            f"--stages: stage '{stage}' has not finished in {wd.path} "
            "with this config and a later selected stage needs it; add "
            f"{stage} to --stages (or leave out --stages)")


def _rerun_reason(wd, req, stage, key):
    """``(run it, why)``: a finished stage is skipped unless forced (or the
    explicitly asked report); a stale one reruns with the ledger's reason."""
    done = wd.finished(stage, key)
    if done is not None:
        if stage in req.forced:
            return True, "--force"
        if stage == "report" and "report" in req.selected and req.explicit_stages:
            return True, None
        hint = (f"; pass --force={stage} to rerun it"
                if req.explicit_stages and stage in req.selected else "")
        req.log(f"[remotetrimmer] {stage}: finished earlier, skipped{hint}")
        return False, None
    return True, wd.why.get(stage) if wd.entry(stage) is not None else None


def _run_stages(run, wd, req, stages, seeding, state, lead):
    """Each stage in order: skipped when finished, else its stale results
    (and the later stages') moved to superseded/ and the stage run."""
    ran, skipped = [], []
    for stage in stages:
        state["stage"] = stage
        go, why = _rerun_reason(wd, req, stage, run.keys[stage])
        if not go:
            skipped.append(stage)
            continue
        if stage not in req.selected:
            if stage == "report":
                continue
            _needs_finished(wd, stage, run.keys[stage])
        # This stage and every later one are stale now: their results move
        # to superseded/, so nothing left in place looks finished.
        moved = wd.supersede_stages(STAGES[STAGES.index(stage):])
        if why:
            req.log(f"[remotetrimmer] {stage}: rerunning ({why})")
        if moved:
            req.log(f"[remotetrimmer] moved {len(moved)} earlier result(s) of "
                    f"{stage} and later stages to "
                    f"{os.path.relpath(wd.superseded_dir, wd.path)}/")
        req.log(f"[remotetrimmer] {stage}: running")
        _, info, seconds = _run_stage(run, wd, stage, run.keys[stage], *seeding, lead)
        ran.append(stage)
        req.log(f"[remotetrimmer] {stage}: done in {seconds:.1f} s"
                + (f" ({info['skipped']})" if info.get("skipped") else ""))
        if stage == "train":
            run.release_init_model()
        _clear_session()
    return ran, skipped


def _summary(wd, req, ran, skipped):
    """What `run_pipeline` returns (and says when nothing had to run)."""
    if req.explicit_stages and not ran:
        req.log(f"[remotetrimmer] nothing to run: {', '.join(req.selected)} finished "
                "earlier with these inputs; pass --force="
                f"{','.join(req.selected)} to rerun")
    summary = {"workdir": str(wd.path), "ran": ran, "skipped": skipped}
    if wd.superseded_dir is not None:
        summary["superseded"] = str(wd.superseded_dir)
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
    wd.save_ledger()
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
                f"({first_line(e)[:200]}); pass --config.deterministic=False "
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
