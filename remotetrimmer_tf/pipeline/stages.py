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
| recalibrate | model_pruned.keras           | model_recalibrated.keras        |
| finetune    | recalibrated (or pruned)     | model_finetuned.keras           |
| evaluate    | model_finetuned.keras        | metrics.json                    |
| export      | model_finetuned.keras        | model.tflite, model_int8.tflite |
| report      | all of the above             | report.json, report.md, widths.png |
"""
import os
import time
import zipfile

import numpy as np

from remotetrimmer_tf.pipeline import report as report_mod
from remotetrimmer_tf.pipeline.workdir import (PipelineError, config_hash, file_digest,
                                         first_line)

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
_RECIPE_EXTRAS = ("steps_per_epoch", "tensorboard")   # config-only recipe fields


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
        parts = {s: config.get(s) for s in DEPENDS[stage]}
        if stage == "train":
            parts["init_model"] = init_model_digest
            if data_digest is not None:
                parts["data_files"] = data_digest
        previous = config_hash([previous, stage, parts])
        keys[stage] = previous
    return keys


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


# ----------------------------------------------------------------- run state
class Run:
    """What the stages share: config, run folder, flags, lazy data/models.

    Args:
      config: the (locked) `ConfigDict`.
      workdir: a `Workdir`.
      init_model: path of a user model to start from, or None.
      strategy: "default" | "mirrored" | "data_parallel" | "multi_worker" | "tpu".
      verbose: Keras verbosity for training.
    """

    def __init__(self, config, workdir, init_model=None, strategy="default",
                 verbose=2):
        self.cfg = config
        self.wd = workdir
        self.init_model = init_model
        self.strategy_name = strategy
        self.verbose = verbose
        self._data = {}
        self._strategy = None
        self.keys = {}

    # -------------------------------------------------------------- plumbing
    @property
    def num_classes(self):
        if self.cfg.model.num_classes is not None:
            return int(self.cfg.model.num_classes)
        from remotetrimmer_tf.pipeline import user_data   # issue 13
        if user_data.is_user_dataset(self.cfg.data.name):
            return user_data.describe(self.cfg)["num_classes"]
        from remotetrimmer_tf.data.registry import get_spec
        return get_spec(self.cfg.data.name).num_classes

    @property
    def input_shape(self):
        s = int(self.cfg.data.image_size)
        from remotetrimmer_tf.pipeline import user_data   # issue 13
        if user_data.is_user_dataset(self.cfg.data.name):
            return (s, s, user_data.describe(self.cfg)["channels"])
        return (s, s, 3)

    def data_dir(self):
        return self.cfg.data.data_dir

    @property
    def is_chief(self):
        """True unless this process is a non-chief worker of --strategy=
        multi_worker (which writes nothing and skips evaluations)."""
        if self.strategy_name != "multi_worker":
            return True
        from remotetrimmer_tf.training import strategy as strategy_mod
        return strategy_mod.is_chief(self.strategy())

    def strategy(self):
        """The tf.distribute strategy (None for "default")."""
        if self.strategy_name in (None, "", "default"):
            return None
        if self._strategy is None:
            from remotetrimmer_tf.training import strategy as strategy_mod
            self._strategy = strategy_mod.get_strategy(self.strategy_name)
        return self._strategy

    def data(self, split, *, batch_size=None, shuffle=False, training=False):
        """Batches `(images, labels)` of a split (cached per arguments).

        A `tf.data.Dataset` on the TensorFlow backend, else numpy `(x, y)`.
        """
        batch_size = int(batch_size or self.cfg.data.batch_size)
        key = (split, batch_size, shuffle)
        if key not in self._data:
            self._data[key] = _load_split(self.cfg, split, batch_size, shuffle,
                                          self.wd)
        return self._data[key]

    def start_stage(self):
        """Forgets the cached *shuffled* datasets: a tf.data shuffle draws a
        new order for every pass, so a stage that reused one consumed by an
        earlier stage would see another order after a resume than in an
        uninterrupted run. Unshuffled datasets (same order every pass) stay."""
        self._data = {k: v for k, v in self._data.items() if not k[2]}

    def load_init_model(self):
        """The `--init_model` as a Keras model (loaded once; only read).

        Raises:
          PipelineError: Keras cannot load it.
        """
        if getattr(self, "_init_model", None) is None:
            try:
                self._init_model = _load_keras(os.path.abspath(self.init_model))
            except Exception as e:  # noqa: BLE001 - any load failure is bad input
                msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                raise PipelineError(
                    f"--init_model={self.init_model} cannot be loaded by Keras "
                    f"({type(e).__name__}: {msg}); pass a .keras file saved by "
                    "Keras 3 with remotetrimmer_tf's layers") from None
        return self._init_model

    def load_model(self, name):
        """Loads a `.keras` artifact of this run (custom layers registered)."""
        return _load_keras(self.wd / name)

    def save_model(self, model, name):
        """Saves `model` atomically, without optimizer state (so file sizes
        compare models, not training state)."""
        from remotetrimmer_tf.training import save_keras
        model = _without_optimizer(model)
        with self.wd.atomic(name) as tmp:
            save_keras(model, tmp)

    def accuracy(self, model, split=None):
        """Test accuracy (and loss) of `model` on the evaluation split
        (`{}` on a non-chief worker, whose results are not kept)."""
        from remotetrimmer_tf import training
        if not self.is_chief:
            return {}
        split = split or self.cfg.evaluate.split
        data = self.data(split)
        steps = self.cfg.evaluate.steps
        if steps:
            data = _take(data, steps, int(self.cfg.data.batch_size))
        result = training.evaluate(model, data,
                                   batch_size=int(self.cfg.data.batch_size))
        return {k: float(v) for k, v in dict(result).items()}


def _without_optimizer(model):
    """An uncompiled copy (same config, names and weights) of a compiled
    model; the model itself if it was never compiled or cannot be rebuilt."""
    if getattr(model, "optimizer", None) is None:
        return model
    from remotetrimmer_tf.utils.keras_models import clone_with_weights
    try:
        return clone_with_weights(model)
    except Exception:  # noqa: BLE001 - subclassed models: keep the state
        return model


def _load_keras(path):
    """`keras.saving.load_model` with remotetrimmer_tf's layers registered."""
    import keras
    import remotetrimmer_tf.models  # noqa: F401 - registers SqueezeExcite
    try:
        import remotetrimmer_tf.losses  # noqa: F401 - registers the AML
    except ImportError:  # pragma: no cover
        pass
    return keras.saving.load_model(str(path), compile=False)


def _load_split(cfg, split, batch_size, shuffle, workdir=None):
    """Loads a split through `remotetrimmer_tf.data`.

    Returns a batched `tf.data.Dataset` on the TensorFlow backend, else the
    numpy pair `(x, y)` (every consumer - fit, evaluate, collect_attention,
    recalibrate_bn - batches numpy itself).
    """
    import keras
    from remotetrimmer_tf import data as data_mod
    from remotetrimmer_tf.pipeline import user_data   # issue 13: own data
    d = cfg.data
    if user_data.is_user_dataset(d.name):
        return user_data.load_split(cfg, split, batch_size, shuffle, workdir)
    common = dict(data_dir=d.data_dir, image_size=int(d.image_size),
                  seed=int(d.seed), val_fraction=float(d.val_fraction),
                  skip_bad_files=bool(d.get("skip_bad_files", False)))
    from remotetrimmer_tf.data.checks import BadImageError
    try:
        if keras.backend.backend() == "tensorflow":
            return data_mod.load(d.name, split, batch_size=batch_size,
                                 shuffle=shuffle, **common)
        return data_mod.load_numpy(d.name, split, shuffle=shuffle, **common)
    except BadImageError as e:
        raise PipelineError(str(e)) from None
    except FileNotFoundError as e:
        from remotetrimmer_tf.data.registry import get_spec
        where = (f"--config.data.data_dir={d.data_dir}" if d.data_dir
                 else "--config.data.data_dir (not set)")
        raise PipelineError(
            f"{where}: dataset '{d.name}' not found (expected the layout "
            f"{get_spec(d.name).image_folder}/<class>/<image>); pass "
            "--config.data.data_dir=<folder holding the dataset>") from None
    except ValueError as e:
        raise PipelineError(
            f"--config.data.data_dir={d.data_dir}: {first_line(e)} Pass "
            "--config.data.data_dir=<folder holding the dataset>, or "
            "--config.data.name=folder for a folder of your own classes"
        ) from None


def _take(data, steps, batch_size=64):
    """The first `steps` batches of a dataset (tf.data or numpy `(x, y)`)."""
    if steps is None:
        return data
    steps = int(steps)
    if hasattr(data, "take"):
        return data.take(steps)
    x, y = data
    return x[:steps * batch_size], y[:steps * batch_size]


def _recipe(section):
    """A config recipe section as the dict `training.fit` reads."""
    r = section.to_dict()
    for k in _RECIPE_EXTRAS:
        r.pop(k, None)
    return r


def _fit(run, model, section, stage, teacher=None):
    """Trains `model` in place with the recipe in config `section`."""
    from remotetrimmer_tf import training
    recipe = _recipe(section)
    if int(recipe["epochs"]) == 0:
        return {"epochs_run": 0}
    train = run.data("train", batch_size=int(section.batch_size), shuffle=True)
    if section.steps_per_epoch:
        train = _take(train, section.steps_per_epoch, int(section.batch_size))
    val = run.data("val") if float(run.cfg.data.val_fraction) > 0 else None
    # fit() resumes from logs/<stage>/last.keras: only within the same stage key.
    logdir = run.wd / "logs" / stage
    keyfile = logdir / "stage_key.txt"
    key = run.keys.get(stage, "")
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
            # logs/<stage>/tb, on by default
            tensorboard=bool(section.get("tensorboard", True)) and _tensorboard_installed())
    # The stage's own artifact replaces fit's resume checkpoints.
    for ckpt in logdir.glob("*.keras"):
        ckpt.unlink()
    from remotetrimmer_tf.training.precision import compute_setup   # the report states them
    return dict(_summarize_history(history),
                compute=compute_setup(recipe.get("precision", "float32"),
                                     run.strategy() is not None))


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
        return int(run.cfg.finetune.epochs) > 0
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
        # issue 13: another class count -> replace_head
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
            run.wd.copy_in(src, "model_trained.keras")
    else:
        from remotetrimmer_tf.pipeline import user_model   # issue 13: any arch
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
        # issue 13: CAP on a gate-free model: insert + train SE gates
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
    gated = "model_gated.keras"   # issue 13: gates inserted for CAP
    model = run.load_model(gated if run.wd.exists(gated) and gated in (
        (run.wd.entry("attention") or {}).get("artifacts", ())) else
        "model_trained.keras")
    with np.load(run.wd / "attention.npz") as z:
        att = {k: z[k] for k in z.files}
    folded = fold_attention(model, att)
    run.save_model(folded, "model_folded.keras")
    return ["model_folded.keras"], {"metrics": run.accuracy(folded)}


def prune(run):
    """Decides the kept channels and rebuilds a thinner model."""
    from remotetrimmer_tf.pruner import Pruner
    from remotetrimmer_tf.surgeon import prune_channels
    p = run.cfg.prune
    model = run.load_model("model_folded.keras")
    importance = p.importance
    if importance == "cap" and not run.wd.exists("attention.npz"):
        raise PipelineError(
            "--config.prune.importance=cap needs attention.npz from an SE "
            "model; set --config.prune.importance=slim for a plain model")
    criterion = importance
    if importance == "cap":
        # The folded model's gamma is gamma * mean attention, so CAP on the SE
        # model is exactly network slimming (|gamma'|) on the folded model.
        criterion = "slim"
    data = None
    if importance in DATA_DRIVEN_IMPORTANCE:
        data = _take(run.data("train"), p.steps, int(run.cfg.data.batch_size))
    from remotetrimmer_tf.pipeline import budget_of
    budget = budget_of(p)   # issue 15: a target replaces the ratio
    try:
        pruner = Pruner(model, importance=criterion,
                        ratio=None if budget else float(p.ratio), **budget,
                        scope=p.scope, round_to=int(p.round_to),
                        round_mode=p.get("round_mode", "up"),
                        min_channels=int(p.min_channels),
                        ignore=tuple(x for x in p.ignore if x),
                        reduction=p.reduction, seed=int(p.seed))
    except (ValueError, TypeError) as e:   # e.g. prune.ignore names no layer
        raise PipelineError(
            f"--config.prune: {first_line(e)} Fix the --config.prune.* value") from None
    try:
        keep = pruner.plan(data)
    except (ValueError, TypeError) as e:   # e.g. no BatchNormalization to score
        if budget:
            raise PipelineError(f"--config.prune: {first_line(e)}") from None
        raise PipelineError(
            f"--config.prune.importance={importance}: {first_line(e)}") from None
    graph = getattr(pruner, "graph", None)
    pruned = prune_channels(model, keep, graph=graph)
    kept = {}
    groups = getattr(graph, "groups", None) or []
    for gi, idx in sorted(keep.items()):
        g = groups[gi] if gi < len(groups) else None
        kept[str(gi)] = {
            "size": int(g.size) if g is not None else None,
            "kept": [int(i) for i in np.asarray(idx).ravel()],
            "layers": list(g.layers) if g is not None else [],
        }
    run.save_model(pruned, "model_pruned.keras")
    run.wd.write_json("kept.json", kept)
    return ["model_pruned.keras", "kept.json"], {
        "importance": importance, "criterion_on_folded_model": criterion,
        "groups_skipped": {str(k): str(v) for k, v in
                           (getattr(pruner, "skipped", None) or {}).items()},
        "groups_pruned": sum(1 for v in kept.values()
                             if v["size"] is not None and len(v["kept"]) < v["size"]),
        **({"budget": pruner.budget_report} if budget else {}),
        "metrics": run.accuracy(pruned)}


def recalibrate(run):
    """Re-estimates the BN statistics of the pruned model (steps > 0)."""
    steps = int(run.cfg.recalibrate.steps or 0)
    if steps <= 0:
        return [], {"skipped": "recalibrate.steps=0"}
    from remotetrimmer_tf.training.bn_recalibration import recalibrate_bn
    model = run.load_model("model_pruned.keras")
    before = run.accuracy(model)
    out = recalibrate_bn(model, run.data("train", shuffle=True), steps=steps,
                         batch_size=int(run.cfg.data.batch_size))
    out = out if out is not None else model
    run.save_model(out, "model_recalibrated.keras")
    return ["model_recalibrated.keras"], {"metrics_before": before,
                                          "metrics": run.accuracy(out)}


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
    history = _fit(run, model, run.cfg.finetune, "finetune", teacher=teacher)
    run.save_model(model, "model_finetuned.keras")
    return ["model_finetuned.keras"], {
        "source": src, "history": history,
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


def export(run):
    """LiteRT files of the fine-tuned model (+ a parity/accuracy check)."""
    import keras
    e = run.cfg.export
    if keras.backend.backend() != "tensorflow":
        return [], {"skipped": "LiteRT export needs KERAS_BACKEND=tensorflow"}
    from remotetrimmer_tf.export import litert
    from remotetrimmer_tf.utils.batches import as_xy
    model = run.load_model("model_finetuned.keras")
    modes = [m for m in e.quantize if m]
    if not modes:
        return [], {"skipped": "export.quantize is empty"}
    rep = None
    if "int8" in modes:
        rep = as_xy(_take(run.data("train"), e.representative_steps,
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
    return artifacts, {"files": info}


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
