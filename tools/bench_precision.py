"""float32 vs mixed_bfloat16 training: curves on the same seed, time, LiteRT parity.

    TF_CPP_MIN_LOG_LEVEL=3 python tools/bench_precision.py \
        [--datasets eurosat_sample:20,uc_merced:15] [--data-dir /work/shared/data/ucmerced]

For each dataset (``name:epochs``; ``eurosat_sample`` is the EuroSAT sample
shipped in the package, ``uc_merced`` is read at 64x64 from ``--data-dir``)
the published ResNet-18 (``models.resnet18``, seed 0 weights) is trained from
scratch by ``training.fit`` with the modern recipe (batch 64, seed 0) twice,
``recipe.precision="float32"`` then ``"mixed_bfloat16"``, with the test split
as ``val`` so that every epoch's test accuracy is logged (the curve). Then
both trained models (float32 after training in either precision) are exported
by ``export.to_litert`` as float32 (parity check: max |diff| <= 1e-4) and int8
(top-1 agreement with Keras) on the test images.

Writes tools/results/precision_curves.{json,md} atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))


def _data(name, data_dir):
    from remotetrimmer_tf import data
    if name == "eurosat_sample":
        kw = dict(name="eurosat", data_dir=data.sample_dir())
    else:
        kw = dict(name=name, data_dir=data_dir)
    train = data.load(split="train", batch_size=64, image_size=64, **kw)
    test = data.load(split="test", batch_size=64, image_size=64, **kw)
    return train, test, len(train.class_names)


def _run(name, epochs, precision, data_dir):
    import keras
    import numpy as np
    from remotetrimmer_tf import export, training
    from remotetrimmer_tf.models import resnet18

    train, test, classes = _data(name, data_dir)
    keras.utils.set_random_seed(0)
    model = resnet18(classes, (64, 64, 3))
    recipe = training.recipes.modern()
    recipe.epochs, recipe.batch_size, recipe.precision = int(epochs), 64, precision
    t0 = time.perf_counter()
    hist = training.fit(model, train, val=test, recipe=recipe, verbose=0)
    seconds = time.perf_counter() - t0
    policies = sorted({layer.dtype_policy.name for layer in model.layers})
    x_test = np.concatenate([x for x, _ in test.as_numpy_iterator()])
    x_cal = np.concatenate([x for x, _ in train.take(4).as_numpy_iterator()])
    with tempfile.TemporaryDirectory() as tmp:
        f32 = export.to_litert(model, os.path.join(tmp, "f.tflite"), check_data=x_test)
        i8 = export.to_litert(model, os.path.join(tmp, "q.tflite"), "int8",
                              representative_data=x_cal, check_data=x_test)
    return {"dataset": name, "precision": precision, "epochs": int(epochs),
            "seconds": round(seconds, 1),
            "val_accuracy": [round(v, 4) for v in hist["val_accuracy"]],
            "train_loss": [round(v, 4) for v in hist["loss"]],
            "final": training.evaluate(model, test),
            "model_dtype_policies": policies,
            "litert_float32_max_abs_diff": float(f32.max_abs_diff),
            "litert_int8_top1_agreement": float(i8.top1_agreement),
            "loadavg_end": [round(v, 2) for v in os.getloadavg()]}


def to_markdown(res):
    lines = ["# float32 vs mixed_bfloat16 training (same seed)", "",
             f"Command: `{res['command']}`", "",
             f"Commit: `{res.get('commit', 'not recorded')}`", "",
             f"CPU: {res['cpu']['model']}, {res['cpu']['cpus']} CPUs, flags "
             f"{', '.join(res['cpu']['flags'])}; TF threads = CPUs. Load: `uptime` at start "
             f"`{res['uptime_start']}`, at end `{res['uptime_end']}` (shared machine: "
             "the times are indicative, the bf16/fp32 step ratio is in train_speed.md).", "",
             "Published ResNet-18, from scratch, modern recipe (batch 64, seed 0, flips + "
             "rot90), test split as `val`. The trained model is float32 in both cases "
             "(its layers' dtype policies listed); LiteRT float32 parity = max |Keras - "
             "LiteRT| on the test images (bar 1e-4), int8 = top-1 agreement with Keras.", "",
             "| dataset | precision | epochs | final test acc | best test acc | train s "
             "| policies after fit | LiteRT f32 max diff | int8 top-1 agreement |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in res["runs"]:
        lines.append(f"| {r['dataset']} | {r['precision']} | {r['epochs']} | "
                     f"{100 * r['final']['accuracy']:.2f}% | {100 * max(r['val_accuracy']):.2f}% | "
                     f"{r['seconds']} | {', '.join(r['model_dtype_policies'])} | "
                     f"{r['litert_float32_max_abs_diff']:.2e} | "
                     f"{100 * r['litert_int8_top1_agreement']:.2f}% |")
    lines += ["", "Test accuracy per epoch (the curves):", ""]
    for r in res["runs"]:
        lines.append(f"- {r['dataset']} {r['precision']}: "
                     + " ".join(f"{100 * v:.1f}" for v in r["val_accuracy"]))
    lines += ["", "Training loss per epoch:", ""]
    for r in res["runs"]:
        lines.append(f"- {r['dataset']} {r['precision']}: "
                     + " ".join(f"{v:.3f}" for v in r["train_loss"]))
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    import bench_train
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="eurosat_sample:20,uc_merced:15")
    p.add_argument("--data-dir", default=None,
                   help="UC Merced folder (default: the library lookup, $REMOTETRIMMER_DATA, ../shared/data)")
    p.add_argument("--out", default=str(REPO / "tools" / "results"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        name, epochs, precision = a.worker.split(":")
        print("RESULT " + json.dumps(_run(name, epochs, precision, a.data_dir)), flush=True)
        return
    argv_s = argv if argv is not None else sys.argv[1:]
    from remotetrimmer_tf.utils.provenance import git_commit
    res = {"commit": git_commit(), "command": ("TF_CPP_MIN_LOG_LEVEL=3 python tools/bench_precision.py "
                       + " ".join(argv_s)).strip(),
           "cpu": bench_train.cpu_info(), "uptime_start": bench_train._uptime(), "runs": []}
    env = bench_train._tf_env()
    for spec in a.datasets.split(","):
        for precision in ("float32", "mixed_bfloat16"):
            extra = ["--data-dir", a.data_dir] if a.data_dir else []
            proc = subprocess.run([sys.executable, __file__, "--worker", f"{spec}:{precision}"]
                                  + extra, capture_output=True, text=True,
                                  env=env, cwd=str(REPO))
            if proc.returncode:
                raise SystemExit(f"bench_precision: {spec} {precision} failed:\n"
                                 f"{proc.stderr[-3000:]}")
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
            r = json.loads(line[len("RESULT "):])
            print(json.dumps(r), flush=True)
            res["runs"].append(r)
    res["uptime_end"] = bench_train._uptime()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    bench_train.write_atomic(out / "precision_curves.json", json.dumps(res, indent=2) + "\n")
    bench_train.write_atomic(out / "precision_curves.md", to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
