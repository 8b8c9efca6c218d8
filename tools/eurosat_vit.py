"""EuroSAT ViT: trained from scratch, pruned to half its MACs, fine-tuned with
AML + KD, against a ViT of the same MACs trained from scratch.

    python tools/eurosat_vit.py --train_limit 6000 --epochs 30 --finetune_epochs 10 \\
        --out runs/eurosat_vit --results tools/results/eurosat_vit.md

EuroSAT RGB at 64x64 from a local folder in the official layout (default
/work/shared/data/eurosat/2750), the package's stratified 70/30 split
(``data.split_file_list``, ``--seed``); ``--train_limit`` / ``--test_limit``
keep a class-balanced, seeded subset of each split. The model is
``tools/keras_vits.py:image_vit``: patch 8 (64 tokens + a class token), 6
pre-norm layers of width 192, 3 heads of key_dim 64, MLP 768, GELU, learned
position table (every size a flag). Phases, each saving its model and a
record in ``--out`` (a rerun of the same command skips finished phases; a
killed phase resumes from its last finished epoch, ``training.fit``'s
workdir):

1. ``train``: the ViT from scratch with ``training.fit`` (precision "auto":
   bf16 on a CPU with AMX / AVX512-BF16; AdamW, decoupled weight decay,
   cosine with linear warm-up, label smoothing, flips + 90° rotations).
2. ``prune``: ``Pruner(importance, target_macs=--macs_fraction x MACs)`` over
   attention heads and MLP widths (the residual stream behind
   LayerNormalization stays whole: its approximate pruning is not asked
   for); heads / MLP width per layer before -> after; the pruned model is
   called on the test split (its accuracy before fine-tuning). ViTs have no
   BatchNormalization: there is no recalibration step.
3. ``finetune``: the pruned model with AML (``loss="aml"``) and knowledge
   distillation from the unpruned parent (``fit(teacher=parent)``).
4. ``scratch``: ``image_vit`` with the pruned model's per-layer heads and MLP
   widths (same depth, width, key_dim: the same architecture, so the same
   MACs; checked within 5 %), trained from scratch for ``--epochs +
   --finetune_epochs`` epochs with the training recipe.
5. ``measure``: LiteRT float32 latency of the unpruned, pruned and scratch
   models (1 thread, batch 1, measured side by side:
   ``litert_timing.time_interleaved``, per model the minimum over rounds of
   the per-round median) and the LiteRT parity of the fine-tuned model on
   test images.

Then ``--results`` (markdown) and the ``.json`` beside it are written: the
command and commit, hardware, budget per phase, the table and a verdict
computed from the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import numpy as np  # noqa: E402

PHASES = ("train", "prune", "finetune", "scratch", "measure")
# flags that do not change what a phase computes (left out of the run check)
NOT_RUN_FLAGS = ("out", "results", "threads")
MAC_TOLERANCE = 0.05


class UsageError(Exception):
    """A bad flag or input: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_args(argv):
    p = _Parser(description=__doc__.splitlines()[0])
    a = p.add_argument
    a("--data_dir", default="/work/shared/data/eurosat/2750",
      help="EuroSAT RGB folder (<class>/*.jpg), its parent or the dataset root")
    a("--image_size", type=int, default=64)
    a("--patch", type=int, default=8)
    a("--depth", type=int, default=6)
    a("--width", type=int, default=192)
    a("--heads", type=int, default=3)
    a("--key_dim", type=int, default=64)
    a("--mlp_dim", type=int, default=768)
    a("--dropout", type=float, default=0.0)
    a("--epochs", type=int, default=30, help="training epochs of the unpruned ViT")
    a("--finetune_epochs", type=int, default=10)
    a("--batch_size", type=int, default=64)
    a("--lr", type=float, default=1e-3, help="peak AdamW learning rate, training")
    a("--finetune_lr", type=float, default=2.5e-4, help="peak AdamW learning rate, fine-tune")
    a("--weight_decay", type=float, default=0.05, help="decoupled (AdamW) weight decay")
    a("--warmup_fraction", type=float, default=0.1)
    a("--label_smoothing", type=float, default=0.1)
    a("--distill_weight", type=float, default=1.0)
    a("--distill_temperature", type=float, default=4.0)
    a("--importance", default="l1", choices=("l1", "l2", "taylor", "random"))
    a("--scope", default="global", choices=("local", "global"))
    a("--macs_fraction", type=float, default=0.5, help="pruned MACs / unpruned MACs")
    a("--train_limit", type=int, default=0, help="at most N training images (0: all)")
    a("--test_limit", type=int, default=0, help="at most N test images (0: all)")
    a("--seed", type=int, default=0, help="split, subsets, initialisation, shuffling")
    a("--latency_rounds", type=int, default=20)
    a("--parity_images", type=int, default=64)
    a("--threads", type=int, default=0, help="TensorFlow threads (0: one per core)")
    a("--out", default="runs/eurosat_vit", help="work folder (models, records; resumable)")
    a("--results", default="tools/results/eurosat_vit.md",
      help="results markdown (a .json is written beside it)")
    return check_args(p.parse_args(argv))


def check_args(args):
    """Every numeric flag in range, or UsageError naming it."""
    positive = ("image_size", "patch", "depth", "width", "heads", "key_dim", "mlp_dim",
                "epochs", "finetune_epochs", "batch_size", "latency_rounds", "parity_images")
    for name in positive:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("train_limit", "test_limit", "threads", "label_smoothing", "weight_decay",
                 "distill_weight"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be >= 0, got {getattr(args, name)}")
    for name in ("lr", "finetune_lr", "distill_temperature"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be > 0, got {getattr(args, name)}")
    if not 0 < args.macs_fraction < 1:
        raise UsageError(f"--macs_fraction must be in (0, 1), got {args.macs_fraction}")
    if not 0 <= args.warmup_fraction < 1 or not 0 <= args.dropout < 1:
        raise UsageError("--warmup_fraction and --dropout must be in [0, 1)")
    if args.image_size % args.patch:
        raise UsageError(f"--image_size {args.image_size} must be a multiple of --patch "
                         f"{args.patch}")
    if not args.results.endswith(".md"):
        raise UsageError(f"--results must end with .md, got {args.results!r}")
    return args


# ------------------------------------------------------------------ data
def balanced_subset(labels, limit, seed):
    """Sorted indices of at most ``limit`` items, as equal per class as the
    classes allow (the first ``limit % classes`` classes one more), drawn
    with ``seed``; all of them when ``limit`` is 0 or covers them."""
    labels = np.asarray(labels)
    if not limit or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.RandomState(int(seed))
    classes = np.unique(labels)
    quota = [limit // len(classes) + (i < limit % len(classes)) for i in range(len(classes))]
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def _split(args, split, limit):
    from remotetrimmer_tf import data
    try:
        root, files, labels = data.split_file_list("eurosat", split, data_dir=args.data_dir,
                                                   seed=args.seed)
    except data.DatasetNotFoundError:
        raise UsageError(f"--data_dir {args.data_dir}: no EuroSAT RGB folder there; give the "
                         "folder holding the 10 class folders of JPEGs (EuroSAT's 2750/), "
                         "its parent or the dataset root") from None
    except (ValueError, OSError) as err:   # another layout, a bad image
        raise UsageError(f"--data_dir {args.data_dir}: {str(err).splitlines()[0]}") from None
    keep = balanced_subset(labels, limit, args.seed)
    return [os.path.join(root, files[i]) for i in keep], labels[keep], len(files), str(root)


def load_data(args):
    """``{train, test}`` tf.data sets (normalised, batched) and their sizes."""
    from remotetrimmer_tf.data import get_spec
    from remotetrimmer_tf.data.pipeline import from_files
    from remotetrimmer_tf.data.registry import resolve_normalization
    norm = resolve_normalization(get_spec("eurosat"), True)
    out = {}
    for split, limit in (("train", args.train_limit), ("test", args.test_limit)):
        paths, labels, total, root = _split(args, split, limit)
        out[split] = from_files(paths, labels, image_size=args.image_size,
                                batch_size=args.batch_size, shuffle=split == "train",
                                seed=args.seed, cache=True, norm=norm)
        out[f"n_{split}"], out[f"n_{split}_split"] = len(paths), total
        out["root"] = root
    return out


def first_images(test, n):
    """The first ``n`` test images as one float32 array (parity checks)."""
    xs, count = [], 0
    for x, _ in test:
        xs.append(np.asarray(x))
        count += len(xs[-1])
        if count >= n:
            break
    return np.concatenate(xs)[:n]


# ------------------------------------------------------------------ models and recipes
def build(args, heads=None, mlp_dim=None, name="vit"):
    import keras
    import keras_vits
    keras.utils.set_random_seed(args.seed)
    return keras_vits.image_vit(args.image_size, args.patch, args.depth, args.width,
                                args.heads if heads is None else heads, args.key_dim,
                                args.mlp_dim if mlp_dim is None else mlp_dim, classes=10,
                                dropout=args.dropout, name=name)


def train_recipe(args, epochs):
    """The ViT recipe: AdamW + decoupled decay, cosine with warm-up, label
    smoothing, flips + 90° rotations, cross-entropy."""
    return dict(epochs=int(epochs), batch_size=args.batch_size, optimizer="adamw",
                lr=args.lr, weight_decay=args.weight_decay, weight_decay_mode="decoupled",
                schedule="cosine", warmup_fraction=args.warmup_fraction,
                augment="flips_rot90", label_smoothing=args.label_smoothing, loss="ce",
                seed=args.seed, precision="auto")


def finetune_recipe(args):
    """The training recipe at ``--finetune_lr`` with AML and distillation."""
    return {**train_recipe(args, args.finetune_epochs), "lr": args.finetune_lr, "loss": "aml",
            "distill_weight": args.distill_weight,
            "distill_temperature": args.distill_temperature}


def describe(model, args):
    """Heads / MLP width per layer, trainable params and MACs of a ViT."""
    import keras_vits
    import remotetrimmer_tf as rt
    heads, mlp = keras_vits.layer_widths(model, args.depth)
    return {"heads": heads, "mlp": mlp, "params": int(rt.count_params(model, trainable_only=True)),
            "macs": int(rt.count_macs(model))}


# ------------------------------------------------------------------ the work folder
class WorkFolder:
    """``--out``: one ``<phase>.keras`` + ``<phase>.json`` per finished phase,
    ``run.json`` (the flags that decide the results: a rerun must match)."""

    def __init__(self, args):
        self.path = pathlib.Path(args.out)
        self.run = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_RUN_FLAGS}

    def open(self):
        self.path.mkdir(parents=True, exist_ok=True)
        run_file = self.path / "run.json"
        if run_file.exists():
            old = json.loads(run_file.read_text())
            diff = sorted(k for k in set(old) | set(self.run) if old.get(k) != self.run.get(k))
            if diff:
                raise UsageError(
                    f"--out {self.path} holds a run with other settings ("
                    + ", ".join(f"--{k}={old.get(k)}" for k in diff)
                    + "); rerun with those flags, or give another --out")
        else:
            from remotetrimmer_tf.utils.files import write_json_atomic
            write_json_atomic(str(run_file), self.run)

    def done(self, phase):
        return (self.path / f"{phase}.json").exists()

    def record(self, phase):
        return json.loads((self.path / f"{phase}.json").read_text())

    def model(self, phase):
        import keras
        import keras_vits  # noqa: F401 - registers ClassTokenPosition (a rerun loads first)
        return keras.saving.load_model(self.path / f"{phase}.keras", compile=False)

    def fit_dir(self, phase):
        return str(self.path / "fit" / phase)

    def save(self, phase, record, model=None):
        """The model first, then the record: a record means the phase finished."""
        from remotetrimmer_tf.training import save_model_atomic
        from remotetrimmer_tf.utils.files import write_json_atomic
        if model is not None:
            save_model_atomic(model, str(self.path / f"{phase}.keras"))
        write_json_atomic(str(self.path / f"{phase}.json"), record)
        return record


# ------------------------------------------------------------------ phases
def _epoch_timer():
    """A Keras callback whose ``seconds`` lists each epoch's wall time."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.t0 = [], None

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(round(time.perf_counter() - self.t0, 1))

    return EpochTimer()


def _fit(model, data, recipe, wf, phase, teacher=None):
    """``training.fit`` in the phase's resumable workdir; seconds and history."""
    from remotetrimmer_tf import training
    from remotetrimmer_tf.training.precision import resolve_precision
    resumed = os.path.exists(os.path.join(wf.fit_dir(phase), "last.keras"))
    timer = _epoch_timer()
    t0 = time.perf_counter()
    hist = training.fit(model, data["train"], recipe=recipe, workdir=wf.fit_dir(phase),
                        teacher=teacher, verbose=2, callbacks=[timer])
    return {"seconds": round(time.perf_counter() - t0, 1), "epochs": recipe["epochs"],
            "images": data["n_train"], "epoch_seconds": timer.seconds,
            "precision": resolve_precision(recipe["precision"]),
            "resumed_from_checkpoint": resumed,
            "train_loss": [round(v, 4) for v in hist.get("loss", [])], "recipe": recipe}


def _evaluate(model, data):
    from remotetrimmer_tf import training
    res = training.evaluate(model, data["test"])
    return {"accuracy": res["accuracy"], "test_loss": res["loss"]}


def phase_train(args, data, wf):
    model = build(args)
    record = _fit(model, data, train_recipe(args, args.epochs), wf, "train")
    return wf.save("train", {**record, **_evaluate(model, data), **describe(model, args)}, model)


def phase_prune(args, data, wf):
    import remotetrimmer_tf as rt
    parent = wf.model("train")
    t0 = time.perf_counter()
    pruner = rt.Pruner(parent, importance=args.importance, scope=args.scope,
                       target_macs=args.macs_fraction * rt.count_macs(parent),
                       seed=args.seed, steps=8)
    pruned = pruner.prune(data["train"] if args.importance == "taylor" else None)
    seconds = round(time.perf_counter() - t0, 1)
    record = {"seconds": seconds, "importance": args.importance, "scope": args.scope,
              "budget": {k: v for k, v in (pruner.budget_report or {}).items()
                         if isinstance(v, (int, float, str))},
              **_evaluate(pruned, data), **describe(pruned, args)}
    return wf.save("prune", record, pruned)


def phase_finetune(args, data, wf):
    parent, model = wf.model("train"), wf.model("prune")
    record = _fit(model, data, finetune_recipe(args), wf, "finetune", teacher=parent)
    return wf.save("finetune", {**record, **_evaluate(model, data), **describe(model, args)},
                   model)


def phase_scratch(args, data, wf):
    import remotetrimmer_tf as rt
    pruned = wf.record("prune")
    model = build(args, pruned["heads"], pruned["mlp"], name="vit_scratch")
    macs = rt.count_macs(model)
    if abs(macs - pruned["macs"]) > MAC_TOLERANCE * pruned["macs"]:
        raise RuntimeError(f"the same-MAC ViT has {macs:,} MACs, the pruned one "
                           f"{pruned['macs']:,}: not within {MAC_TOLERANCE:.0%}")
    recipe = train_recipe(args, args.epochs + args.finetune_epochs)
    record = _fit(model, data, recipe, wf, "scratch")
    return wf.save("scratch", {**record, **_evaluate(model, data), **describe(model, args)},
                   model)


def phase_measure(args, data, wf):
    """LiteRT float32: side-by-side latency (1 thread, batch 1) and the
    fine-tuned model's parity on test images."""
    from remotetrimmer_tf.export import litert, litert_timing
    t0 = time.perf_counter()
    names = ("train", "finetune", "scratch")
    models = {n: wf.model(n) for n in names}
    tflite = {n: litert_timing.convert(models[n]) for n in names}
    x = first_images(data["test"], args.parity_images)
    parity = litert.check_parity(models["finetune"], tflite["finetune"], x, num_threads=1)
    ms = litert_timing.time_interleaved([tflite[n] for n in names], threads=1,
                                        rounds=args.latency_rounds)
    record = {"latency_ms": {n: round(v, 3) for n, v in zip(names, ms)},
              "latency": {"runtime": "LiteRT float32 (XNNPACK)", "threads": 1, "batch": 1,
                          "rounds": args.latency_rounds, "runs": 10,
                          **litert_timing.machine_key(threads=1)},
              "parity": parity, "seconds": round(time.perf_counter() - t0, 1)}
    return wf.save("measure", record)


PHASE_FNS = {"train": phase_train, "prune": phase_prune, "finetune": phase_finetune,
             "scratch": phase_scratch, "measure": phase_measure}


# ------------------------------------------------------------------ results
def verdict(records, n_test):
    """One line from the numbers: the fine-tuned pruned ViT vs the same-MAC
    scratch ViT and vs the unpruned one; a difference within two standard
    errors of the two test accuracies (binomial) is called a tie."""
    ft, sc, parent = (records[p]["accuracy"] for p in ("finetune", "scratch", "train"))

    def compare(a, b, what):
        se = math.sqrt((a * (1 - a) + b * (1 - b)) / max(1, n_test))
        d = a - b
        word = "above" if d > 2 * se else "below" if -d > 2 * se else "level with"
        within = "more than" if abs(d) > 2 * se else "within"
        return (f"{word} {what} ({100 * d:+.2f} points, {within} 2 SE = {200 * se:.2f} "
                "of the two accuracies)")

    frac = records["finetune"]["macs"] / records["train"]["macs"]
    return (f"At {frac:.2f}x the MACs, the pruned + AML/KD fine-tuned ViT ({100 * ft:.2f} %) is "
            + compare(ft, sc, f"the same-MAC ViT from scratch ({100 * sc:.2f} %)") + " and "
            + compare(ft, parent, f"the unpruned ViT ({100 * parent:.2f} %)")
            + f"; one seed, {n_test} test images.")


def _widths(values):
    return f"{values[0]} (every layer)" if len(set(values)) == 1 else ", ".join(map(str, values))


def table_rows(records):
    """``[(model, record, latency key)]`` of the results table."""
    ms = records["measure"]["latency_ms"]
    p, t = records["prune"], records["train"]
    return [("unpruned ViT (trained from scratch)", t, ms["train"]),
            ("pruned, before fine-tuning", p, ms["finetune"]),
            ("pruned + AML/KD fine-tune", records["finetune"], ms["finetune"]),
            ("same-MAC ViT from scratch", records["scratch"], ms["scratch"])]


def hardware(args):
    import keras
    import tensorflow as tf
    from remotetrimmer_tf.export.litert_timing import machine_key
    from remotetrimmer_tf.training.precision import compute_setup
    return {"cpu": machine_key()["cpu"], "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "threads_flag": args.threads,
            **compute_setup("auto")}


def to_markdown(report):
    r, hw, data = report["records"], report["hardware"], report["data"]
    parent_macs = r["train"]["macs"]
    lines = ["# EuroSAT ViT: pruned to half its MACs vs the same MACs from scratch", "",
             f"Command: `{report['command']}`", "", f"Commit: `{report['commit']}`", "",
             f"Hardware: {hw['cpu']}, {hw['cpu_count']} CPUs, TensorFlow {hw['tensorflow']}, "
             f"Keras {hw['keras']}, training precision {r['train']['precision']} (requested "
             f"\"auto\"), intra-op threads {hw.get('intra_op_threads')}.", "",
             f"Data: EuroSAT RGB {report['args']['image_size']}x{report['args']['image_size']} "
             f"from `{data['root']}`, the package's stratified 70/30 split (seed "
             f"{report['args']['seed']}): {data['n_train']} of {data['n_train_split']} training "
             f"images, {data['n_test']} of {data['n_test_split']} test images (class-balanced "
             "seeded subsets when limited). Accuracy: the test images.", "",
             "| model | heads per layer | MLP width per layer | params | MACs | test accuracy "
             "| LiteRT fp32 ms (1 thread, batch 1) |", "|---|---|---|---|---|---|---|"]
    for name, rec, ms in table_rows(r):
        lines.append(f"| {name} | {_widths(rec['heads'])} | {_widths(rec['mlp'])} | "
                     f"{rec['params']:,} | {rec['macs'] / 1e6:.1f} M "
                     f"({rec['macs'] / parent_macs:.3f}x) | {100 * rec['accuracy']:.2f} % | "
                     f"{ms:.2f} |")
    par = r["measure"]["parity"]
    lines += ["", f"**Verdict:** {report['verdict']}", "",
              f"LiteRT parity of the fine-tuned model: max |LiteRT - Keras| "
              f"{par['max_abs_diff']:.1e} on {par['num_checked']} test images, top-1 agreement "
              f"{par['top1_agreement']:.3f}. Latency measured side by side "
              f"(`litert_timing.time_interleaved`, {r['measure']['latency']['rounds']} rounds of "
              "10 invokes; per model the minimum over rounds of the per-round median); the "
              "pruned rows are one graph.", "", "## Budget", "",
              "| phase | epochs | training images | wall s |", "|---|---|---|---|"]
    for phase in PHASES:
        rec = r[phase]
        resumed = " (resumed after a stop: this run's part)" \
            if rec.get("resumed_from_checkpoint") else ""
        lines.append(f"| {phase} | {rec.get('epochs', '')} | {rec.get('images', '')} | "
                     f"{rec['seconds']}{resumed} |")
    lines += ["", f"Total wall seconds: {sum(r[p]['seconds'] for p in PHASES):.0f}.", ""]
    lines += _method_lines(report)
    return "\n".join(lines) + "\n"


def _method_lines(report):
    r = report["records"]
    return ["## How", "",
            f"- Model: `tools/keras_vits.py:image_vit` (pre-norm, GELU, learned class token "
            f"and position table), sizes {json.dumps(report['model'])}.",
            f"- Train / scratch recipe (`training.fit`): `{json.dumps(r['train']['recipe'])}`; "
            f"the scratch model for {r['scratch']['epochs']} epochs.",
            f"- Pruning: `Pruner(importance={r['prune']['importance']!r}, "
            f"scope={r['prune']['scope']!r}, target_macs={report['args']['macs_fraction']} x "
            "count_macs(parent))` over whole attention heads and MLP widths; the residual "
            "stream (behind LayerNormalization) stays whole. Budget search: "
            f"`{json.dumps(r['prune']['budget'])}`.",
            f"- Fine-tune recipe (teacher: the unpruned ViT): "
            f"`{json.dumps(r['finetune']['recipe'])}`.",
            "- ViTs have no BatchNormalization: no recalibration step; no model selection on "
            "the test images (the last epoch's weights are evaluated)."]


def write_results(args, data, records, argv):
    from remotetrimmer_tf.utils.files import write_json_atomic, write_text_atomic
    from remotetrimmer_tf.utils.provenance import provenance
    info = provenance(["tools/eurosat_vit.py"] + list(argv))
    report = {**info, "args": vars(args), "hardware": hardware(args),
              "data": {k: data[k] for k in ("root", "n_train", "n_train_split", "n_test",
                                             "n_test_split")},
              "model": {k: getattr(args, k) for k in ("image_size", "patch", "depth", "width",
                                                     "heads", "key_dim", "mlp_dim", "dropout")},
              "records": records, "verdict": verdict(records, data["n_test"])}
    base = args.results[:-len(".md")]
    pathlib.Path(base).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(base + ".json", report, default=str)
    write_text_atomic(args.results, to_markdown(report))
    return report


# ------------------------------------------------------------------ main
def _setup_tensorflow(threads):
    """Thread pools (before any op runs) and TensorFlow's Python warnings off
    (the retracing notes of evaluation's last, smaller batch)."""
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def run(args, argv):
    _setup_tensorflow(args.threads)
    wf = WorkFolder(args)
    data = load_data(args)          # the folder is checked before --out is touched
    wf.open()
    records = {}
    for phase in PHASES:
        if wf.done(phase):
            print(f"[{phase}] done before: {wf.path / (phase + '.json')}", flush=True)
            records[phase] = wf.record(phase)
            continue
        print(f"[{phase}] running", flush=True)
        records[phase] = PHASE_FNS[phase](args, data, wf)
    report = write_results(args, data, records, argv)
    print(report["verdict"])
    print(f"wrote {args.results}")
    return report


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(parse_args(argv), argv)
    except UsageError as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
