"""keras-hub coverage: does the surgeon prune every keras-hub CNN exactly?

For every backbone class in ``keras_hub_zoo`` (small configs, built offline,
random weights), in the three ways users hold it — the ``Backbone`` object, a
backbone nested as a layer of a classifier, and the keras-hub
``ImageClassifier`` task (``preprocessor=None``) — this runs
``Pruner(importance="l1", ratio=0.5)`` and reports: channel groups (prunable),
params / MACs before → after, the no-op rebuild's error, the dead-channel
error (the plan's dropped channels silenced with ``graph.silence_dropped``,
then removed: exact pruning leaves the output unchanged), and whether the
pruned model saves to ``.keras`` and reloads with the same outputs.

    python tools/bench_keras_hub.py --out tools/results/keras_hub_coverage
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_hub_zoo as zoo  # noqa: E402
import remotetrimmer_tf as rt  # noqa: E402
from remotetrimmer_tf.utils.provenance import git_commit  # noqa: E402
from remotetrimmer_tf.graph import DependencyGraph, silence_dropped  # noqa: E402

TOL = 1e-4


def _out(model, x):
    return [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(model(x))]


def _rel_err(a, b):
    err = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return float("inf")
        err = max(err, float(np.max(np.abs(x - y))) / max(1.0, float(np.max(np.abs(x)))))
    return err


def check(model, x, ratio=0.5):
    """One row: prune ``model`` with l1 at ``ratio`` and check it."""
    row = {"params": rt.count_params(model, trainable_only=True), "macs": rt.count_macs(model)}
    t0 = time.perf_counter()
    pruner = rt.Pruner(model, importance="l1", ratio=ratio)
    small = pruner.prune()
    row["prune_s"] = round(time.perf_counter() - t0, 2)
    graph = pruner.graph
    keep = pruner.plan()
    row["groups"] = len(graph.groups)
    row["prunable"] = sum(g.prunable for g in graph.groups)
    row["pruned_groups"] = len(keep)
    row["params_after"] = rt.count_params(small, trainable_only=True)
    row["macs_after"] = rt.count_macs(small)
    ref = _out(model, x)
    row["noop_err"] = _rel_err(ref, _out(rt.prune_channels(model, {}, graph=graph), x))
    quiet = silence_dropped(model, keep, graph=graph)
    row["dead_err"] = _rel_err(_out(quiet, x), _out(rt.prune_channels(quiet, keep), x))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        small.save(path)
        again = keras.saving.load_model(path)
        row["reload_err"] = _rel_err(_out(small, x), _out(again, x))
    row["exact"] = max(row["noop_err"], row["dead_err"], row["reload_err"]) <= TOL
    return row


def run(names):
    x = np.random.default_rng(0).standard_normal(
        (2, zoo.SIZE, zoo.SIZE, 3)).astype("float32")
    rows = []
    for name in names:
        scope = zoo.BACKBONES[name][2]
        bb = zoo.backbone(name)
        forms = [("Backbone", lambda: bb), ("nested", lambda: zoo.nested(bb)),
                 ("ImageClassifier", lambda: zoo.classifier(name, bb))]
        for form, make in forms:
            row = {"model": name, "form": form, "scope": scope}
            try:
                model = make()
                if model is None:
                    continue
                row["class"] = type(model).__name__
                row.update(check(model, x))
                row["status"] = "pruned exactly" if row["exact"] else "NOT EXACT"
            except (ValueError, TypeError) as err:
                row["status"] = "refused"
                row["reason"] = str(err).split(". Way out")[0][:300]
            rows.append(row)
            print(f"{name:32s} {form:16s} {row['status']}"
                  + (f"  ({row.get('reason')})" if row.get("reason") else ""), flush=True)
    return rows


def _fmt(n):
    return f"{n:,}" if isinstance(n, int) else str(n)


def to_markdown(rows, command):
    cnn = [r for r in rows if r["scope"] == "cnn"]
    ok = sum(r["status"] == "pruned exactly" for r in cnn)
    lines = [
        "# keras-hub coverage of the surgeon",
        "",
        f"Command: `{command}`",
        "",
        f"Commit: `{git_commit()}`",
        "",
        f"keras-hub {_version('keras_hub')}, Keras {keras.__version__}, backend "
        f"{keras.backend.backend()}. Small configs built offline (`tools/keras_hub_zoo.py`), "
        "random weights, 64×64 inputs; `Pruner(importance='l1', ratio=0.5)`.",
        "",
        f"**CNN backbones: {ok} of {len(cnn)} model forms pruned exactly** "
        "(no-op rebuild, dead-channel removal and save/reload all within "
        f"{TOL:g} relative error); transformer backbones are listed as out of scope.",
        "",
        "| model | form | groups (prunable) | params before → after | MACs before → after "
        "| no-op err | dead-channel err | reload err | prune s | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "params_after" in r:
            lines.append(
                f"| {r['model']} | {r['form']} | {r['groups']} ({r['prunable']}) | "
                f"{_fmt(r['params'])} → {_fmt(r['params_after'])} | "
                f"{_fmt(r['macs'])} → {_fmt(r['macs_after'])} | {r['noop_err']:.1e} | "
                f"{r['dead_err']:.1e} | {r['reload_err']:.1e} | {r['prune_s']} | "
                f"{r['status']} |")
        else:
            scope = " (out of scope: transformer)" if r["scope"] != "cnn" else ""
            lines.append(f"| {r['model']} | {r['form']} | | | | | | | | "
                         f"{r['status']}{scope}: {r.get('reason', '')} |")
    return "\n".join(lines) + "\n"


def _version(mod):
    try:
        return __import__(mod).__version__
    except Exception:  # pragma: no cover
        return "?"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tools/results/keras_hub_coverage",
                    help="output path without extension (.json and .md are written)")
    ap.add_argument("--models", default="", help="zoo names separated by ';' (default: all)")
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(";") if n] or list(zoo.BACKBONES)
    rows = run(names)
    command = "python tools/bench_keras_hub.py" + (
        f" --models '{args.models}'" if args.models else "") + f" --out {args.out}"
    from remotetrimmer_tf.export._io import write_bytes_atomic
    write_bytes_atomic(args.out + ".json", json.dumps(
        {"command": command, "commit": git_commit(), "rows": rows}, indent=1, default=str).encode(),
        overwrite=True)
    write_bytes_atomic(args.out + ".md", to_markdown(rows, command).encode(),
                       overwrite=True)
    print(f"wrote {args.out}.md")


if __name__ == "__main__":
    main()
