"""Surgery coverage benchmark over keras.applications CNN families.

For every family that builds offline with ``weights=None``: build the graph,
plan with ``Pruner(importance="l1", ratio=0.5)`` (local: every prunable group
keeps its largest-L1 half), rebuild, save to ``.keras``, reload and check the
reloaded model reproduces the pruned one. Writes ``tools/results/surgeon_coverage.json`` and ``.md`` (atomically,
after every model so partial results survive).

Usage:
    python tools/bench_surgeon.py                      # all families
    python tools/bench_surgeon.py --models ResNet50,VGG16 --out /tmp/x
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from remotetrimmer_tf.graph import DependencyGraph  # noqa: E402
from remotetrimmer_tf.cost import count_macs, count_params  # noqa: E402
from remotetrimmer_tf.pruner import Pruner  # noqa: E402
from remotetrimmer_tf.surgeon import prune_channels  # noqa: E402

# (name, input size); ResNet50 at 224 for the speed figure, others small.
MODELS = [
    ("ResNet50", 224), ("ResNet101", 96), ("ResNet152", 96),
    ("ResNet50V2", 96), ("ResNet101V2", 96), ("ResNet152V2", 96),
    ("VGG16", 96), ("VGG19", 96),
    ("DenseNet121", 96), ("DenseNet169", 96), ("DenseNet201", 96),
    ("MobileNet", 96), ("MobileNetV2", 96),
    ("MobileNetV3Small", 96), ("MobileNetV3Large", 96),
    ("EfficientNetB0", 96), ("EfficientNetB1", 96), ("EfficientNetB2", 96),
    ("EfficientNetB3", 96), ("EfficientNetB4", 96), ("EfficientNetB5", 96),
    ("EfficientNetB6", 96), ("EfficientNetB7", 96),
    ("EfficientNetV2B0", 96), ("EfficientNetV2B1", 96), ("EfficientNetV2B2", 96),
    ("EfficientNetV2B3", 96), ("EfficientNetV2S", 96), ("EfficientNetV2M", 96),
    ("EfficientNetV2L", 96),
    ("NASNetMobile", 96), ("NASNetLarge", 96),
    ("InceptionV3", 96), ("InceptionResNetV2", 96), ("Xception", 96),
    ("ConvNeXtTiny", 96), ("ConvNeXtSmall", 96), ("ConvNeXtBase", 96),
    ("ConvNeXtLarge", 96), ("ConvNeXtXLarge", 96),
]


def pruner_plan(model, graph, ratio=0.5):
    """The library's plan: ``Pruner(importance="l1", ratio=0.5)`` on ``graph``."""
    pruner = Pruner(model, importance="l1", ratio=ratio)
    pruner.graph = graph          # plan() reuses a graph built for this model
    return pruner.plan()


def run_one(name, size, tmpdir):
    row = {"model": name, "input": size}
    t = time.perf_counter()
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    row["build_s"] = round(time.perf_counter() - t, 2)
    t0 = time.perf_counter()
    graph = DependencyGraph(model)
    t1 = time.perf_counter()
    keep = pruner_plan(model, graph)
    t2 = time.perf_counter()
    small = prune_channels(model, keep, graph=graph)
    t3 = time.perf_counter()
    row.update({
        "groups": len(graph.groups),
        "prunable_groups": sum(g.prunable for g in graph.groups),
        "pruned_groups": len(keep),
        "graph_s": round(t1 - t0, 3), "surgery_s": round(t3 - t2, 3),
        "graph_surgery_s": round((t1 - t0) + (t3 - t2), 3),
        "params_before": count_params(model, trainable_only=False),
        "params_after": count_params(small, trainable_only=False),
        "macs_before": count_macs(model), "macs_after": count_macs(small),
    })
    frozen = [g.reason for g in graph.groups if not g.prunable
              and not g.reason.startswith("model ")]
    row["frozen_groups_other"] = len(frozen)
    row["frozen_examples"] = sorted(set(r.split("'")[0] + "'...'" + r.split("'")[-1]
                                        if "'" in r else r for r in frozen))[:3]
    x = np.random.RandomState(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(small(x, training=False))
    path = os.path.join(tmpdir, f"{name}.keras")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*numpy.*")
        small.save(path)
    back = keras.saving.load_model(path)
    y2 = keras.ops.convert_to_numpy(back(x, training=False))
    row["reload_max_abs_diff"] = float(np.max(np.abs(y - y2)))
    row["reloads"] = bool(row["reload_max_abs_diff"] <= 1e-5 and back.count_params() == small.count_params())
    os.remove(path)
    row["ok"] = row["reloads"] and row["params_after"] < row["params_before"]
    return row


def speed_resnet50(repeats=5):
    """Best-of-N graph+surgery seconds for ResNet50 at 224, alternated with
    ``keras.models.clone_model`` of the same model (the Keras floor of any
    rebuild), so that the ratio is robust to the machine's load."""
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    times, cpu, clone = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        keras.models.clone_model(model)
        clone.append(time.perf_counter() - t0)
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        graph = DependencyGraph(model)
        c1, t1 = time.process_time(), time.perf_counter()
        keep = pruner_plan(model, graph)
        c2, t2 = time.process_time(), time.perf_counter()
        prune_channels(model, keep, graph=graph)
        c3, t3 = time.process_time(), time.perf_counter()
        times.append((t1 - t0) + (t3 - t2))
        cpu.append((c1 - c0) + (c3 - c2))
        gc.collect()
    return {"repeats": repeats, "best_s": round(min(times), 3),
            "median_s": round(float(np.median(times)), 3),
            "all_s": [round(t, 3) for t in times],
            "best_cpu_s": round(min(cpu), 3),
            "clone_model_best_s": round(min(clone), 3),
            "clone_model_median_s": round(float(np.median(clone)), 3),
            "ratio_best": round(min(times) / min(clone), 2),
            "load_avg_1min": round(os.getloadavg()[0], 1)}


def _write_atomic(path, text):
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=os.path.basename(path))
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_results(rows, out, command, speed=None):
    meta = {"resnet50_224_graph_plus_surgery": speed,"command": command, "keras": keras.__version__,
            "backend": keras.backend.backend(), "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "ratio": 0.5, "plan": "Pruner(importance='l1', ratio=0.5): local, "
                                  "largest-L1 half of each prunable group"}
    n_ok = sum(bool(r.get("ok")) for r in rows)
    meta["ok"] = f"{n_ok}/{len(rows)}"
    _write_atomic(out + ".json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Surgery coverage on keras.applications (weights=None)", "",
        f"Command: `{command}`  ",
        f"Keras {meta['keras']} ({meta['backend']}), Python {meta['python']}, "
        f"{meta['machine']}. Plan: Pruner(importance='l1', ratio=0.5), local, "
        "largest-L1 half kept.  ",
        f"**Pruned, saved and reloaded: {meta['ok']}**  ",
        "ResNet50 @224 graph+surgery (best/median of "
        + (f"{speed['repeats']}): {speed['best_s']} s / {speed['median_s']} s wall"
           + (f", best process CPU {speed['best_cpu_s']} s, load average "
              f"{speed['load_avg_1min']} on {os.cpu_count()} cores"
              if "best_cpu_s" in speed else "")
           + (f"; keras.models.clone_model of the same model, alternated: "
              f"{speed['clone_model_best_s']} s best, ratio {speed['ratio_best']}"
              if "clone_model_best_s" in speed else "")
           if speed else "N): not measured (use --speed)") + "  ",
        "Per-model seconds below are single runs on a shared, loaded machine.", "",
        "| model | input | groups | prunable | params before | params after | "
        "MMACs before | MMACs after | graph+surgery s | reload ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['input']} | ERROR: {r['error'][:120]} |"
                         " | | | | | | no |")
            continue
        lines.append(
            f"| {r['model']} | {r['input']} | {r['groups']} | {r['prunable_groups']} | "
            f"{r['params_before']:,} | {r['params_after']:,} | "
            f"{r['macs_before'] / 1e6:,.1f} | {r['macs_after'] / 1e6:,.1f} | "
            f"{r['graph_surgery_s']:.2f} | {'yes' if r.get('ok') else 'no'} |")
    _write_atomic(out + ".md", "\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated subset")
    p.add_argument("--speed", action="store_true",
                   help="also time ResNet50@224 graph+surgery, best of 5")
    p.add_argument("--merge", action="store_true",
                   help="with --models: replace those rows in existing results")
    p.add_argument("--speed-only", action="store_true",
                   help="only re-time ResNet50 and update the speed in existing results")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "surgeon_coverage"))
    args = p.parse_args(argv)
    if args.speed_only:
        with open(args.out + ".json") as f:
            old = json.load(f)
        speed = speed_resnet50()
        print(json.dumps({"resnet50_speed": speed}), flush=True)
        command = old["meta"]["command"].split(" ; ")[0] + \
            " ; speed re-timed by: python tools/bench_surgeon.py --speed-only"
        write_results(old["rows"], args.out, command, speed)
        return 0
    wanted = [m for m in args.models.split(",") if m]
    models = [(n, s) for n, s in MODELS if not wanted or n in wanted]
    command = "python tools/bench_surgeon.py" + (" --speed" if args.speed else "") + \
        (f" --models {args.models}" if wanted else "")
    speed = speed_resnet50() if args.speed else None
    if speed:
        print(json.dumps({"resnet50_speed": speed}), flush=True)
        keras.backend.clear_session()
        gc.collect()
    rows, old_rows = [], None
    if args.merge and os.path.exists(args.out + ".json"):
        with open(args.out + ".json") as f:
            old = json.load(f)
        old_rows = old["rows"]
        speed = speed or old["meta"].get("resnet50_224_graph_plus_surgery")
        command = old["meta"]["command"] + " ; rows re-run by: " + command + " --merge"
    with tempfile.TemporaryDirectory() as tmpdir:
        for name, size in models:
            try:
                row = run_one(name, size, tmpdir)
            except Exception as e:  # record and continue
                row = {"model": name, "input": size, "error": f"{type(e).__name__}: {e}",
                       "ok": False}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if old_rows is not None:
                old_rows = [row if r["model"] == row["model"] else r for r in old_rows]
                write_results(old_rows, args.out, command, speed)
            else:
                write_results(rows, args.out, command, speed)
            keras.backend.clear_session()
            gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
