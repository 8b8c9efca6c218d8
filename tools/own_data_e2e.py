"""End to end on a folder of your own scenes: four ways in, each to a pruned, fine-tuned model.

What a new user does, run with the interpreter this script runs under (meant
for a fresh virtualenv with ``pip install -e ".[test]"``):

1. makes a folder of their scenes: ``--classes`` of UC Merced copied (the
   first ``--per_class`` images of each) into ``OUT/scenes/<class>/``, and a
   second folder of 10 other UC Merced classes (``OUT/other_scenes``);
2. saves their own keras.applications MobileNetV2 models with plain Keras
   (``OUT/user_models.py``, written here and run as the user would: inputs
   scaled to [-1, 1], a short ``model.fit``): one with the folder's class
   count, one trained on the 10 other classes;
3. runs ``python -m remotetrimmer_tf.prune`` four times on ``OUT/scenes``
   with the default checks (the export's LiteRT parity check included):

   (a) ``--init_model`` = the user's 4-class MobileNetV2, ``importance=l1``;
   (b) ``--config.model.arch=MobileNetV2`` trained by the tool;
   (c) ``--init_model`` = the user's 10-class model +
       ``--config.model.replace_head=True``;
   (d) ``importance=cap`` on the user's SE-free 4-class MobileNetV2 (SE gates
       inserted and trained by the tool);

4. checks that each run finished every stage and left a fine-tuned model
   whose output has the folder's class count, that the float32 LiteRT file
   passed its parity check, and that the user's files are unchanged; and
   writes ``--results`` (Markdown: the commands, wall times, what each left).

The user's models take inputs in [-1, 1] (``x / 127.5 - 1``), so their runs
pass ``--config.data.mean=0.5,0.5,0.5 --config.data.std=0.5,0.5,0.5`` (our
loaders compute ``(x / 255 - mean) / std``); run (b) measures the
normalisation on the train split.

Example (the command behind tools/results/own_data_e2e.md is at its top):

    /tmp/fresh13/bin/python tools/own_data_e2e.py --out=/tmp/own_e2e \\
        --source=/work/shared/data/ucmerced/Images
"""
import argparse
import hashlib
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = "/work/shared/data/ucmerced/Images"
OTHER_CLASSES = ("airplane", "baseballdiamond", "buildings", "chaparral",
                 "denseresidential", "freeway", "golfcourse", "intersection",
                 "river", "runway")

USER_MODELS = '''\
"""What the user ran to save their own models (plain Keras, no remotetrimmer_tf)."""
import os, sys
import numpy as np
import keras
from PIL import Image

size, epochs = int(sys.argv[1]), int(sys.argv[2])


def load(folder):
    classes = sorted(os.listdir(folder))
    xs, ys = [], []
    for i, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(folder, c))):
            img = Image.open(os.path.join(folder, c, f)).convert("RGB")
            xs.append(np.asarray(img.resize((size, size), Image.BILINEAR)))
            ys.append(i)
    x = np.stack(xs).astype("float32") / 127.5 - 1.0   # MobileNetV2's [-1, 1]
    return x, np.asarray(ys), len(classes)


keras.utils.set_random_seed(0)
for folder, out in (("scenes", "user_mobilenetv2_4.keras"),
                    ("other_scenes", "user_mobilenetv2_10.keras")):
    x, y, n = load(folder)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3),
                                           classes=n)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=2)
    model.save(out)
    print(out, "saved:", n, "classes")
'''


def _sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def make_folder(source, dest, classes, per_class):
    """Copies the first ``per_class`` images of each class (skips if done)."""
    dest = pathlib.Path(dest)
    for cls in classes:
        src = pathlib.Path(source) / cls
        if not src.is_dir():
            raise SystemExit(f"--source={source}: no class folder {cls!r}")
        files = sorted(p for p in src.iterdir() if p.is_file())[:per_class]
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for p in files:
            target = dest / cls / p.name
            if not target.exists():
                shutil.copyfile(p, target)
    return sum(len(list((dest / c).iterdir())) for c in classes)


def _timed(cmd, cwd, log):
    t0 = time.time()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    return proc.returncode, time.time() - t0


def _common(args, out):
    return [f"--config.data.name=folder",
            f"--config.data.data_dir={out / 'scenes'}",
            f"--config.data.image_size={args.image_size}",
            f"--config.data.batch_size={args.batch_size}",
            f"--config.train.epochs={args.train_epochs}",
            f"--config.train.batch_size={args.batch_size}",
            f"--config.train.lr={args.train_lr}",
            f"--config.finetune.epochs={args.finetune_epochs}",
            f"--config.finetune.batch_size={args.batch_size}",
            f"--config.finetune.lr={args.finetune_lr}",
            f"--config.prune.ratio={args.ratio}",
            "--config.recalibrate.steps=4"]


USER_NORM = ["--config.data.mean=0.5,0.5,0.5", "--config.data.std=0.5,0.5,0.5"]


def runs(args, out):
    """``{tag: (title, extra flags)}`` of the four runs."""
    m4, m10 = out / "user_mobilenetv2_4.keras", out / "user_mobilenetv2_10.keras"
    return {
        "a": ("--init_model: the user's 4-class keras.applications MobileNetV2, l1",
              [f"--init_model={m4}", *USER_NORM, "--config.prune.importance=l1"]),
        "b": ("--config.model.arch=MobileNetV2 trained by the tool, l1",
              ["--config.model.arch=MobileNetV2", "--config.prune.importance=l1"]),
        "c": ("--init_model with 10 classes + --config.model.replace_head=True, slim",
              [f"--init_model={m10}", *USER_NORM, "--config.model.replace_head=True",
               "--config.prune.importance=slim"]),
        "d": ("importance=cap on the user's SE-free MobileNetV2 (gates inserted)",
              [f"--init_model={m4}", *USER_NORM, "--config.prune.importance=cap",
               f"--config.attention.gate_epochs={args.gate_epochs}"]),
    }


def inspect_run(workdir, num_classes):
    """What a run left, and the checks it must pass (``problems``)."""
    import keras
    import numpy as np
    import remotetrimmer_tf  # noqa: F401  (registers our layers)
    wd = pathlib.Path(workdir)
    problems = []
    ledger = json.loads((wd / "stages.json").read_text())
    stages = ledger.get("stages", {})
    want = ("train", "attention", "fold", "prune", "recalibrate", "finetune",
            "evaluate", "export", "report")
    missing = [s for s in want if s not in stages]
    if missing:
        problems.append(f"stages not finished: {missing}")
    model = keras.saving.load_model(wd / "model_finetuned.keras", compile=False)
    shape = tuple(model.inputs[0].shape[1:])
    classes = int(model.outputs[0].shape[-1])
    if classes != num_classes:
        problems.append(f"fine-tuned model has {classes} outputs, folder has "
                        f"{num_classes} classes")
    y = model.predict(np.zeros((2,) + shape, "float32"), verbose=0)
    if y.shape != (2, num_classes):
        problems.append(f"prediction shape {y.shape}")
    export = stages.get("export", {}).get("info", {}).get("files", {})
    f32 = export.get("none", {})
    if f32.get("max_abs_diff") is None or not f32.get("num_checked"):
        problems.append("float32 LiteRT file was not parity-checked")
    report = json.loads((wd / "report.json").read_text())
    acc = report.get("accuracy", {})
    models = report.get("models", {})
    base = models.get("trained", {})
    fin = models.get("finetuned", {})
    info = {
        "output_classes": classes, "input_shape": list(shape),
        "params_before": base.get("params"), "params_after": fin.get("params"),
        "macs_before": base.get("macs"), "macs_after": fin.get("macs"),
        "accuracy_trained": acc.get("trained"),
        "accuracy_finetuned": acc.get("finetuned"),
        "accuracy_recalibrated": acc.get("recalibrated"),
        "test_samples": report.get("evaluated_samples"),
        "litert_f32": {k: f32.get(k) for k in ("max_abs_diff", "num_checked",
                                               "accuracy", "extra")},
        "litert_int8": {k: export.get("int8", {}).get(k)
                        for k in ("top1_agreement", "accuracy", "num_checked")},
        "train": {k: v for k, v in stages.get("train", {}).get("info", {}).items()
                  if k in ("source", "head_replaced", "old_classes", "new_classes")},
        "attention": {k: v for k, v in stages.get("attention", {}).get(
            "info", {}).items() if k in ("gates_inserted", "gate_epochs",
                                         "backbone_frozen", "gated_model")},
        "files": sorted(p.name for p in wd.iterdir() if p.is_file()),
    }
    return info, problems


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def markdown(args, command, env_line, made, results, user_log_tail):
    lines = [f"<!-- {command} -->", "",
             "# Your own data end to end: four ways in (UC Merced scenes folder)", "",
             f"Command: `{command}`", "",
             f"Interpreter: {env_line}", "",
             f"Folder: `OUT/scenes` = the first {args.per_class} images of "
             f"{', '.join(args.classes.split(','))} copied from "
             f"`{args.source}` ({made} images; the split is 70/30 per class). "
             f"The user's models (`OUT/user_models.py`, plain Keras, "
             f"{args.user_epochs} epochs, inputs in [-1, 1]) are a 4-class "
             "keras.applications MobileNetV2 trained on that folder and a 10-class "
             "one trained on 10 other UC Merced classes. Every run uses the default "
             "checks (`--config.export.check` stays True: the float32 LiteRT file must "
             "match Keras, int8 is checked and reported).", "",
             "Common flags: `" + " ".join(_common(args, pathlib.Path("OUT"))) + "`", "",
             "| run | what | exit | wall time | output classes | params before → after | "
             "accuracy trained → recalibrated → fine-tuned | LiteRT f32 max abs diff | checks |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for tag, r in results.items():
        i = r.get("info") or {}
        lit = i.get("litert_f32") or {}
        diff = lit.get("max_abs_diff")
        f64 = (lit.get("extra") or {}).get("float64_reference")
        lines.append(
            f"| ({tag}) | {r['title']} | {r['rc']} | {r['seconds']:.0f} s | "
            f"{i.get('output_classes', '-')} | "
            f"{i.get('params_before') or 0:,} → {i.get('params_after') or 0:,} | "
            f"{_pct(i.get('accuracy_trained'))} → {_pct(i.get('accuracy_recalibrated'))}"
            f" → {_pct(i.get('accuracy_finetuned'))} | "
            f"{'-' if diff is None else f'{diff:.2g}'}"
            f"{'' if not f64 else ' (> 1e-4: LiteRT %.2g, Keras f32 %.2g from float64, allowed %.2g)' % (f64['litert_error'], f64['keras_float32_error'], f64['tolerance'])} | "
            f"{'ok' if not r['problems'] else '; '.join(r['problems'])} |")
    total = sum(r["seconds"] for r in results.values())
    lines += ["", f"Total wall time of the four runs: {total / 60:.1f} min "
              f"({os.cpu_count()} CPUs visible, shared machine).", "",
              "Accuracies are on the test split "
              f"({next(iter(results.values())).get('info', {}).get('test_samples')} "
              "images) after a few epochs on a few images: a smoke test of the "
              "path, not a result.", "", "## Commands", ""]
    for tag, r in results.items():
        lines += [f"({tag}) {r['title']}", "", "```", r["command"], "```", ""]
        i = r.get("info") or {}
        extra = {k: i.get(k) for k in ("train", "attention", "litert_int8")
                 if i.get(k)}
        if extra:
            lines += [f"left: `{', '.join(i.get('files', []))}`; "
                      f"{json.dumps(extra)}", ""]
    lines += ["## The user's script (OUT/user_models.py)", "", "```python",
              USER_MODELS.rstrip(), "```", "", "Its last lines:", "", "```",
              user_log_tail.rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/own_data_e2e")
    p.add_argument("--source", default=DEFAULT_SOURCE)
    p.add_argument("--classes", default="agricultural,beach,forest,harbor")
    p.add_argument("--per_class", type=int, default=60)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--user_epochs", type=int, default=3)
    p.add_argument("--train_epochs", type=int, default=6)
    p.add_argument("--finetune_epochs", type=int, default=3)
    p.add_argument("--gate_epochs", type=int, default=1)
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--train_lr", type=float, default=0.05)
    p.add_argument("--finetune_lr", type=float, default=0.01)
    p.add_argument("--runs", default="a,b,c,d")
    p.add_argument("--results", default=str(REPO / "tools/results/own_data_e2e.md"))
    args = p.parse_args(argv)
    command = "python tools/own_data_e2e.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    classes = args.classes.split(",")
    made = make_folder(args.source, out / "scenes", classes, args.per_class)
    make_folder(args.source, out / "other_scenes", OTHER_CLASSES,
                max(3, args.per_class // 2))
    (out / "user_models.py").write_text(USER_MODELS)
    user_log = out / "user_models.log"
    if not (out / "user_mobilenetv2_10.keras").exists():
        rc, _ = _timed([sys.executable, "user_models.py", str(args.image_size),
                        str(args.user_epochs)], out, user_log)
        if rc:
            raise SystemExit(f"user_models.py failed ({rc}); see {user_log}")
    user_files = {p: _sha(p) for p in sorted(out.glob("user_*.keras"))}
    import remotetrimmer_tf
    env_line = (f"`{sys.executable}` (Python {platform.python_version()}), "
                f"remotetrimmer_tf from `{pathlib.Path(remotetrimmer_tf.__file__).parent}`")
    results = {}
    for tag, (title, extra) in runs(args, out).items():
        if tag not in args.runs.split(","):
            continue
        wd = out / f"run_{tag}"
        cmd = [sys.executable, "-m", "remotetrimmer_tf.prune", *_common(args, out),
               *extra, f"--workdir={wd}"]
        rc, seconds = _timed(cmd, out, out / f"run_{tag}.log")
        shown = " ".join(cmd[1:]).replace(str(out), "OUT")
        r = {"title": title, "rc": rc, "seconds": seconds,
             "command": "python " + shown, "problems": [], "info": {}}
        if rc == 0:
            try:
                r["info"], r["problems"] = inspect_run(wd, len(classes))
            except Exception as e:  # noqa: BLE001 - reported in the table
                r["problems"] = [f"inspection failed: {type(e).__name__}: {e}"]
        else:
            tail = (out / f"run_{tag}.log").read_text().strip().splitlines()[-1:]
            r["problems"] = [f"exit {rc}: {tail[0][:200] if tail else ''}"]
        results[tag] = r
        print(f"({tag}) rc={rc} {seconds:.0f}s {r['problems'] or 'ok'}", flush=True)
    for path, digest in user_files.items():
        if not path.exists() or _sha(path) != digest:
            for r in results.values():
                r["problems"].append(f"user file {path.name} changed")
    tail = "\n".join(user_log.read_text().splitlines()[-8:]) if user_log.exists() else ""
    from remotetrimmer_tf.export._io import write_bytes_atomic
    text = markdown(args, command, env_line, made, results, tail)
    write_bytes_atomic(args.results, text.encode(), overwrite=True)
    write_bytes_atomic(str(pathlib.Path(args.results).with_suffix(".json")),
                       json.dumps({"command": command, "results": results},
                                  indent=1, default=str).encode(), overwrite=True)
    bad = {t: r["problems"] for t, r in results.items() if r["problems"]}
    print(f"wrote {args.results}; {'all runs ok' if not bad else bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
