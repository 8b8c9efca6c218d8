"""The stages of `python -m remotetrimmer_tf.prune`, one function each.

Every stage reads the artifacts of the stages before it from the run folder
(never from memory), so a rerun can resume after any finished stage, and
returns `(artifacts, info)`: the file names it wrote (atomically) and a JSON-able
summary that goes into the ledger and the report.

| stage       | reads                        | writes                          |
|-------------|------------------------------|---------------------------------|
| train       | data / `--init_model`        | model_trained.keras             |
| attention   | model_trained.keras          | attention.npz (SE models only)  |
| fold        | model_trained, attention.npz | model_folded.keras              |
| prune       | model_folded.keras           | model_pruned.keras, kept.json   |
|             |                              | (+ rounds/round_<i>/: rounds>1) |
| recalibrate | model_pruned.keras           | model_recalibrated.keras        |
| finetune    | recalibrated (or pruned)     | model_finetuned.keras           |
| evaluate    | model_finetuned.keras        | metrics.json                    |
| export      | model_finetuned.keras        | model.tflite, model_int8.tflite |
| report      | all of the above             | report.json, report.md, widths.png |

With `--config.prune.rounds=k` (k > 1) the prune stage runs rounds 1..k-1
(prune, recalibrate, fine-tune its share of `finetune.epochs`; each round
kept in `rounds/round_<i>/`, resumed per round: `pipeline.rounds`) and
prunes round k into model_pruned.keras; recalibrate and finetune are then
round k (finetune trains the last share of the epochs).
"""
import os
import time
import zipfile

import numpy as np

from remotetrimmer_tf.pipeline import report as report_mod
from remotetrimmer_tf.pipeline import rounds as rounds_mod
from remotetrimmer_tf.pipeline.run_state import Run, load_keras, take  # noqa: F401 - Run: its old home
from remotetrimmer_tf.pipeline.workdir import PipelineError, config_hash, file_digest, first_line

STAGES = ("train", "attention", "fold", "prune", "recalibrate", "finetune",
          "evaluate", "export", "report")

# Config sections each stage depends on (besides everything upstream).
DEPENDS = {
    "train": ("data", "model", "train"),
    "attention": ("attention",),
    "fold": (),
    "prune": ("prune",),
    "recalibrate": ("recalibrate",),
    "finetune": ("finetune",),
    "evaluate": ("evaluate",),
    "export": ("export",),
    "report": (),
}

DATA_DRIVEN_IMPORTANCE = ("taylor",)
# config-only recipe fields
_RECIPE_EXTRAS = ("steps_per_epoch", "tensorboard", "settle_bn", "settle_steps")


def stage_keys(config, init_model_digest=None, data_digest=None):
    """Chained per-stage keys: a stage reruns when its key changes.

    Args:
      config: the config as a plain dict.
      init_model_digest: sha of `--init_model` (part of the train key).
      data_digest: fingerprint of the data files (part of the train key).

    Returns:
      `{stage: key}`; each key hashes the stage's config sections and the
      key of the stage before it.
    """
    keys, previous = {}, ""
    for stage in STAGES:
        parts = {s: config.get(s) for s in _depends(config, stage)}
        if stage == "train":
            parts["init_model"] = init_model_digest
            if data_digest is not None:
                parts["data_files"] = data_digest
        previous = config_hash([previous, stage, parts])
        keys[stage] = previous
    return keys


def _depends(config, stage):
    """`DEPENDS[stage]`; pruning in rounds also recalibrates and fine-tunes,
    so the prune stage then depends on those sections too."""
    rounds = (config.get("prune") or {}).get("rounds", 1)
    if stage == "prune" and isinstance(rounds, int) and rounds > 1:
        return DEPENDS["prune"] + ("recalibrate", "finetune")
    return DEPENDS[stage]


# --------------------------------------------------------------------- checks
def check_keras_file(path, flag="--init_model"):
    """Cheap validation of a `.keras` file before TensorFlow is imported.

    Raises:
      PipelineError: naming the flag and file, if it is missing, not a file,
        not named `.keras`, or not a Keras zip archive.
    """
    fix = ("pass a model saved with model.save('name.keras') "
           "(Keras 3 format), or leave out the flag to train one")
    if not os.path.exists(path):
        raise PipelineError(f"{flag}={path}: no such file; {fix}")
    if os.path.isdir(path) and _preset_class(path):
        cls, task = _preset_class(path)
        how = (f"keras_hub.models.ImageClassifier.from_preset('{path}').save('m.keras')"
               if task else "build keras_hub.models.ImageClassifier(backbone=keras_hub."
               f"models.Backbone.from_preset('{path}'), num_classes=N) and .save('m.keras')")
        raise PipelineError(
            f"{flag}={path} is a keras-hub preset folder of {cls}, not a .keras "
            f"classifier; {how} and pass --init_model=m.keras")
    if not os.path.isfile(path):
        raise PipelineError(f"{flag}={path} is not a file; {fix}")
    if not str(path).endswith(".keras"):
        raise PipelineError(f"{flag}={path} is not a .keras file; {fix}")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        raise PipelineError(
            f"{flag}={path} is corrupt (not a Keras zip archive: {e}); {fix}"
        ) from None
    if bad is not None or "config.json" not in names:
        what = f"damaged member {bad}" if bad else "no config.json inside"
        raise PipelineError(f"{flag}={path} is corrupt ({what}); {fix}")


def _preset_class(folder):
    """``(class name, is a task)`` of a keras-hub preset folder (task.json,
    else config.json), or None for a folder that is no preset."""
    import json
    for name in ("task.json", "config.json"):
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(cfg, dict) and cfg.get("class_name"):
            return str(cfg["class_name"]), name == "task.json"
    return None


def _recipe(section):
    """A config recipe section as the dict `training.fit` reads."""
    r = section.to_dict()
    for k in _RECIPE_EXTRAS:
        r.pop(k, None)
    return r


def _fit(run, model, section, stage, teacher=None, key=None):
    """Trains `model` in place with the recipe in config `section`; its logs
    (and resume checkpoints, valid for `key`: default the stage's key) in
    `logs/<stage>`."""
    from remotetrimmer_tf import training
    recipe = _recipe(section)
    if int(recipe["epochs"]) == 0:
        return {"epochs_run": 0}
    train = run.data("train", batch_size=int(section.batch_size), shuffle=True)
    if section.steps_per_epoch:
        train = take(train, section.steps_per_epoch, int(section.batch_size))
    val = run.data("val") if float(run.cfg.data.val_fraction) > 0 else None
    # fit() resumes from logs/<stage>/last.keras: only within the same stage key.
    logdir = run.wd / "logs" / stage
    keyfile = logdir / "stage_key.txt"
    key = run.keys.get(stage, "") if key is None else key
    if logdir.exists() and (not keyfile.exists() or keyfile.read_text() != key):
        run.wd.supersede(f"logs/{stage}")   # another config's checkpoints: kept aside
    logdir.mkdir(parents=True, exist_ok=True)
    keyfile.write_text(key)
    # multi_worker: keras BackupAndRestore, so a restarted worker resumes the
    # epoch count, weights and optimizer from here (the chief sends it on).
    backup = str(logdir / "backup") if run.strategy_name == "multi_worker" else None
    from remotetrimmer_tf.pipeline import interrupt
    with interrupt.deferred():   # Ctrl-C / SIGTERM stop fit between two batches
        history = training.fit(
            model, train, val=val, recipe=recipe, workdir=str(logdir), verbose=run.verbose,
            teacher=teacher, strategy=run.strategy(), backup_dir=backup,
            callbacks=[interrupt.batch_boundary_callback()],
            settle_bn=section.get("settle_bn", "auto"),
            settle_steps=section.get("settle_steps", 50),
            # logs/<stage>/tb, on by default
            tensorboard=bool(section.get("tensorboard", True)) and _tensorboard_installed())
    # The stage's own artifact replaces fit's resume checkpoints.
    for ckpt in logdir.glob("*.keras"):
        ckpt.unlink()
    from remotetrimmer_tf.training.precision import compute_setup   # the report states them
    return dict(_summarize_history(history), **_ending(history),
                compute=compute_setup(recipe.get("precision", "float32"),
                                     run.strategy() is not None))


def _ending(history):
    """How a training stage ended (BN statistics settled, which epoch kept)."""
    summary = getattr(history, "summary", None)
    return summary() if callable(summary) else {}


def _tensorboard_installed():
    """TensorBoard logs need the `tensorboard` package (TF's summary writer)."""
    import importlib.util
    return importlib.util.find_spec("tensorboard") is not None


def _summarize_history(history):
    """Last value of every logged metric (JSON-able)."""
    if history is None:
        return {}
    h = getattr(history, "history", history)
    out = {}
    try:
        for k, v in dict(h).items():
            if isinstance(v, (list, tuple)) and v:
                out[k] = float(v[-1])
            elif isinstance(v, (int, float, np.number)):
                out[k] = float(v)
        out["epochs_run"] = max((len(v) for v in dict(h).values()
                                 if isinstance(v, (list, tuple))), default=0)
    except (TypeError, ValueError):
        pass
    return out


def needs_all_workers(run, stage):
    """True if `stage` trains (so every worker of --strategy=multi_worker
    must run it with the chief): `train` without --init_model, `finetune`,
    each with epochs > 0."""
    if stage == "train":
        trains = not run.init_model or bool(run.cfg.model.get("replace_head", False))
        return trains and int(run.cfg.train.epochs) > 0
    if stage == "finetune":
        return int(rounds_mod.finetune_section(
            run.cfg, rounds_mod.rounds_of(run.cfg)).epochs) > 0
    return False


def se_layer_names(model):
    """Names of the SqueezeExcite gates of `model`."""
    from remotetrimmer_tf.models import SqueezeExcite
    return [l.name for l in model.layers if isinstance(l, SqueezeExcite)]


# --------------------------------------------------------------------- stages
def train(run):
    """Trains the configured backbone, or validates and copies `--init_model`."""
    cfg = run.cfg
    if run.init_model:
        # only read: a model inside the run folder was copied to inputs/ first
        src = os.path.abspath(run.init_model)
        from remotetrimmer_tf.pipeline.inputs import check_init_model
        # another class count -> replace_head
        model, head = check_init_model(run)
        info = {"source": "init_model",
                "init_model": os.path.abspath(getattr(run, "init_model_given", src)),
                "init_model_sha256": file_digest(src), **head}
        if head["head_replaced"]:
            t0 = time.time()
            info["history"] = _fit(run, model, cfg.train, "train")
            info["train_seconds"] = round(time.time() - t0, 2)
            run.save_model(model, "model_trained.keras")
        else:
            from remotetrimmer_tf.pipeline.bn_check import check_init_bn
            used, info["bn_statistics"] = check_init_bn(run, model)
            if used is model:
                run.wd.copy_in(src, "model_trained.keras")
            else:   # unsettled BN statistics: the re-estimated copy is used
                model = used
                run.save_model(model, "model_trained.keras")
    else:
        from remotetrimmer_tf.pipeline import user_model   # any architecture
        model = user_model.build_model(run)
        t0 = time.time()
        history = _fit(run, model, cfg.train, "train")
        weights = cfg.model.get("weights")
        info = {"source": "trained" if int(cfg.train.epochs) else
                ("weights" if weights else "initialised"), "history": history,
                "train_seconds": round(time.time() - t0, 2)}
        if weights:
            info["weights"] = os.path.abspath(os.path.expanduser(weights))
        run.save_model(model, "model_trained.keras")
    info["se_gates"] = len(se_layer_names(model))
    info["metrics"] = run.accuracy(model)
    return ["model_trained.keras"], info


def attention(run):
    """Averages every SE gate over the training split -> attention.npz."""
    from remotetrimmer_tf.attention import collect_attention
    model = run.load_model("model_trained.keras")
    names = se_layer_names(model)
    artifacts, gate_info = [], {}
    if not names:
        if run.cfg.prune.importance != "cap":
            return [], {"skipped": "the model has no SqueezeExcite gates"}
        # CAP on a gate-free model: insert + train SE gates
        from remotetrimmer_tf.pipeline import user_model
        model, gate_info = user_model.gate_model(run, model, _fit)
        artifacts = [user_model.GATED_FILE]
    data = run.data("train")
    att = collect_attention(model, data, steps=run.cfg.attention.steps,
                            batch_size=int(run.cfg.data.batch_size))
    att = {k: np.asarray(v, dtype=np.float32) for k, v in att.items()}
    with run.wd.atomic("attention.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **att)
    stats = {k: {"channels": int(v.size), "mean": float(v.mean()),
                 "min": float(v.min()), "max": float(v.max())}
             for k, v in att.items()}
    return artifacts + ["attention.npz"], {"gates": len(att), "per_gate": stats,
                                           **gate_info}


def fold(run):
    """Folds the mean attention into the BNs -> a plain model_folded.keras."""
    if not run.wd.exists("attention.npz"):
        run.wd.copy_in(run.wd / "model_trained.keras", "model_folded.keras")
        model = run.load_model("model_folded.keras")
        return ["model_folded.keras"], {
            "skipped": "no attention.npz (model without SE gates): copied",
            "metrics": run.accuracy(model)}
    from remotetrimmer_tf.attention import fold_attention
    gated = "model_gated.keras"   # gates inserted for CAP
    model = run.load_model(gated if run.wd.exists(gated) and gated in (
        (run.wd.entry("attention") or {}).get("artifacts", ())) else
        "model_trained.keras")
    with np.load(run.wd / "attention.npz") as z:
        att = {k: z[k] for k in z.files}
    folded = fold_attention(model, att)
    run.save_model(folded, "model_folded.keras")
    return ["model_folded.keras"], {"metrics": run.accuracy(folded)}


def prune(run):
    """Decides the kept channels and rebuilds a thinner model (in
    `prune.rounds` rounds with fine-tuning between: `pipeline.rounds`)."""
    p = run.cfg.prune
    model = run.load_model("model_folded.keras")
    if p.importance == "cap" and not run.wd.exists("attention.npz"):
        raise PipelineError(
            "--config.prune.importance=cap needs attention.npz from an SE "
            "model; set --config.prune.importance=slim for a plain model")
    from remotetrimmer_tf.importance import criterion_on_folded
    from remotetrimmer_tf.pipeline.config import budget_of
    # the fold stage folded the SE attention into the BNs: what scores it now
    criterion = criterion_on_folded(p.importance)
    data = None
    if p.importance in DATA_DRIVEN_IMPORTANCE:
        data = take(run.data("train"), p.steps, int(run.cfg.data.batch_size))
    budget = budget_of(p)   # a target replaces the ratio
    widths = {"ratio": None, **budget} if budget else {"ratio": float(p.ratio)}
    step = lambda m, w: _prune_step(m, criterion, p, w, data)  # noqa: E731
    extra, info = [], {}
    if rounds_mod.rounds_of(run.cfg) > 1:
        pruned, pruner, kept, extra, info = rounds_mod.prune_in_rounds(
            run, model, widths, rounds_mod.Steps(step, _recalibrated, _fit))
    else:
        pruned, pruner, kept = step(model, widths)
    run.save_model(pruned, "model_pruned.keras")
    run.wd.write_json("kept.json", kept)
    return extra + ["model_pruned.keras", "kept.json"], {
        "importance": p.importance, "criterion_on_folded_model": criterion,
        "groups_skipped": {str(k): str(v) for k, v in pruner.skipped.items()},
        "groups_pruned": sum(1 for v in kept.values() if len(v["kept"]) < v["size"]),
        **({"budget": pruner.budget_report} if budget else {}),
        **({"shortfall": pruner.shortfall.as_dict()} if pruner.shortfall else {}),
        **info, "metrics": run.accuracy(pruned)}


def _prune_step(model, criterion, p, widths, data):
    """``(pruned model, pruner, kept.json dict)`` of one ``Pruner`` over
    ``model`` with the width arguments ``widths`` (a bad value: one line)."""
    from remotetrimmer_tf.surgeon import prune_channels
    pruner = _pruner(model, criterion, p, widths)
    try:
        keep = pruner.plan(data)
    except (ValueError, TypeError) as e:   # e.g. no BatchNormalization to score
        where = ("--config.prune" if widths.get("ratio") is None
                 else f"--config.prune.importance={p.importance}")
        raise PipelineError(f"{where}: {first_line(e)}") from None
    pruned = prune_channels(model, keep, graph=pruner.graph)
    return pruned, pruner, _kept(pruner.graph, keep)


def _pruner(model, criterion, p, widths):
    """The `Pruner` of the prune config with the width arguments `widths`
    (`{"ratio": r}` or a target); a bad value: one line naming it."""
    from remotetrimmer_tf.pruner import Pruner
    try:
        return Pruner(model, importance=criterion, **widths,
                      scope=p.scope, round_to=int(p.round_to),
                      round_mode=p.get("round_mode", "up"),
                      min_channels=int(p.min_channels),
                      ignore=tuple(x for x in p.ignore if x),
                      reduction=p.reduction, seed=int(p.seed))
    except (ValueError, TypeError) as e:   # e.g. prune.ignore names no layer
        raise PipelineError(
            f"--config.prune: {first_line(e)} Fix the --config.prune.* value") from None


def _kept(graph, keep):
    """kept.json: per pruned group, its size, kept channels and layers."""
    return {str(gi): {"size": int(graph.groups[gi].size),
                      "kept": [int(i) for i in np.asarray(idx).ravel()],
                      "layers": list(graph.groups[gi].layers)}
            for gi, idx in sorted(keep.items())}


def recalibrate(run):
    """Re-estimates the BN statistics of the pruned model (steps > 0)."""
    steps = int(run.cfg.recalibrate.steps or 0)
    if steps <= 0:
        return [], {"skipped": "recalibrate.steps=0"}
    model = run.load_model("model_pruned.keras")
    before = run.accuracy(model)
    out = _recalibrated(run, model)
    run.save_model(out, "model_recalibrated.keras")
    return ["model_recalibrated.keras"], {"metrics_before": before,
                                          "metrics": run.accuracy(out)}


def _recalibrated(run, model):
    """`model` with its BN statistics re-estimated over `recalibrate.steps`
    training batches (the model itself when steps = 0)."""
    steps = int(run.cfg.recalibrate.steps or 0)
    if steps <= 0:
        return model
    from remotetrimmer_tf.training.bn_recalibration import recalibrate_bn
    out = recalibrate_bn(model, run.data("train", shuffle=True), steps=steps,
                         batch_size=int(run.cfg.data.batch_size))
    return out if out is not None else model


def finetune(run):
    """Fine-tunes the pruned (recalibrated) model with its recipe (AML)."""
    entry = run.wd.entry("recalibrate") or {}
    src = ("model_recalibrated.keras"
           if "model_recalibrated.keras" in entry.get("artifacts", ())
           and run.wd.exists("model_recalibrated.keras")
           else "model_pruned.keras")
    model = run.load_model(src)
    # finetune.distill_weight > 0: distill from the unpruned trained model.
    teacher = (run.load_model("model_trained.keras")
               if float(run.cfg.finetune.get("distill_weight", 0.0)) > 0 else None)
    t0 = time.time()
    # prune.rounds > 1: the last round's share of finetune.epochs
    section = rounds_mod.finetune_section(run.cfg, rounds_mod.rounds_of(run.cfg))
    history = _fit(run, model, section, "finetune", teacher=teacher)
    run.save_model(model, "model_finetuned.keras")
    return ["model_finetuned.keras"], {
        "source": src, "history": history, "epochs": int(section.epochs),
        "teacher": "model_trained.keras" if teacher is not None else None,
        "train_seconds": round(time.time() - t0, 2),
        "metrics": run.accuracy(model)}


def evaluate(run):
    """Final evaluation of the fine-tuned model -> metrics.json."""
    model = run.load_model("model_finetuned.keras")
    final = run.accuracy(model)
    metrics = {"split": run.cfg.evaluate.split, "finetuned": final,
               "accuracy": report_mod.accuracies(run.wd)}
    metrics["accuracy"]["finetuned"] = final.get("accuracy")
    run.wd.write_json("metrics.json", metrics)
    return ["metrics.json"], {"metrics": final}


#: file / folder names of the export formats in the run folder
EXPORT_NAMES = {"tf_saved_model": "model_saved_model", "onnx": "model.onnx",
                "openvino": "model_openvino.xml"}


def export(run):
    """The fine-tuned model in every ``export.formats`` (LiteRT files per
    ``export.quantize``; SavedModel, ONNX, OpenVINO through ``model.export``),
    each checked against Keras on test images."""
    import keras
    from remotetrimmer_tf.export.formats import parse_formats
    e = run.cfg.export
    formats = parse_formats(e.get("formats", ("litert",)))
    if keras.backend.backend() != "tensorflow":
        return [], {"skipped": "export needs KERAS_BACKEND=tensorflow"}
    from remotetrimmer_tf.utils.batches import as_xy
    model = run.load_model("model_finetuned.keras")
    check_x, check_y = as_xy(run.data(run.cfg.evaluate.split),
                             limit=int(e.check_samples)) if e.check else (None, None)
    artifacts, info = [], {}
    if "litert" in formats:
        artifacts, info = _export_litert(run, model, check_x, check_y)
    for fmt in formats:
        if fmt == "litert":
            continue
        name = EXPORT_NAMES[fmt]
        artifacts += _export_one(run, model, fmt, name, check_x, info)
    if not artifacts:
        return [], {"skipped": "export.formats=litert with an empty export.quantize"}
    return artifacts, {"files": info, "formats": formats}


def _export_one(run, model, fmt, name, check_x, info):
    """One ``model.export`` format, checked; its artifact names."""
    from remotetrimmer_tf.export.formats import export_format
    res = export_format(model, str(run.wd / name), fmt, check=check_x is not None,
                        check_data=check_x,
                        num_check=len(check_x) if check_x is not None else 8,
                        overwrite=True)
    names = [name] + ([name[:-4] + ".bin"] if fmt == "openvino" else [])
    for n in names:
        run.wd.track(n)
        if (run.wd / n).is_file():
            _readable(run.wd / n)
    entry = dict(res.as_dict())
    entry["path"] = name
    info[fmt] = entry
    return names


def _export_litert(run, model, check_x, check_y):
    """The LiteRT files of ``export.quantize`` (+ accuracy on the check images)."""
    from remotetrimmer_tf.export import litert
    from remotetrimmer_tf.utils.batches import as_xy
    e = run.cfg.export
    modes = [m for m in e.quantize if m]
    rep = None
    if "int8" in modes:
        rep = as_xy(take(run.data("train"), e.representative_steps,
                           int(run.cfg.data.batch_size)))[0]
    check_x, check_y = as_xy(run.data(run.cfg.evaluate.split),
                             limit=int(e.check_samples))
    artifacts, info = [], {}
    for mode in modes:
        name = "model.tflite" if mode == "none" else f"model_{mode}.tflite"
        q = None if mode == "none" else mode
        res = litert.to_litert(model, str(run.wd / name), quantize=q,
                               representative_data=rep, check=bool(e.check),
                               check_data=check_x if e.check else None,
                               overwrite=True)
        run.wd.track(name)
        entry = dict(res.as_dict())
        _readable(run.wd / name)
        entry["size_bytes"] = os.path.getsize(run.wd / name)
        if e.check:
            out = litert.run_litert(str(run.wd / name), check_x)
            entry["accuracy"] = float(np.mean(np.argmax(out, -1) == check_y))
            entry["accuracy_samples"] = int(len(check_y))
        entry["path"] = name
        info[mode] = entry
        artifacts.append(name)
    return artifacts, info


def _readable(path):
    """Gives a file the usual umask permissions (temp files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def report(run):
    """report.json, report.md and widths.png; see `pipeline.report`."""
    return report_mod.write_report(run)


FUNCTIONS = {"train": train, "attention": attention, "fold": fold,
             "prune": prune, "recalibrate": recalibrate, "finetune": finetune,
             "evaluate": evaluate, "export": export, "report": report}
