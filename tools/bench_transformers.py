"""Vision-transformer coverage: does every keras-hub and Keras-written ViT prune exactly?

For every keras-hub vision-transformer backbone class that builds offline
(``tools/keras_hub_vit_zoo.py``: small configs, random weights), in the ways
users hold it — the ``Backbone``, the backbone nested as a layer of a
classifier, the keras-hub ``ImageClassifier`` where one exists — and for
ViTs written in Keras (``tools/keras_vits.py``: the keras.io example,
functional pre/post-norm, GQA + gated MLP, a subclassed ``keras.Model``),
this runs ``Pruner(importance="l1", ratio=0.5)`` and reports: channel groups
(prunable), attention heads before → after, params / MACs before → after
(MACs include the attention matmuls), the no-op rebuild's error, the
dead-channel error (the plan's dropped heads / channels silenced with
``graph.silence_dropped``, then removed: exact pruning leaves the output
unchanged), the save / reload error, and the LiteRT float32 parity of the
pruned model (``export.litert``). A model that cannot be followed is listed
as refused, with the one-line reason the library gives.

    python tools/bench_transformers.py --out tools/results/transformer_coverage
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_hub_vit_zoo as zoo  # noqa: E402
import keras_vits  # noqa: E402
import remotetrimmer_tf as rt  # noqa: E402
from remotetrimmer_tf.graph import silence_dropped  # noqa: E402
from remotetrimmer_tf.utils.provenance import provenance  # noqa: E402

TOL = 1e-4
ATTENTION = (keras.layers.MultiHeadAttention, keras.layers.GroupQueryAttention)


def _out(model, x):
    return [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(model(x))]


def _rel_err(a, b):
    err = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return float("inf")
        err = max(err, float(np.max(np.abs(x - y))) / max(1.0, float(np.max(np.abs(x)))))
    return err


def _heads(model):
    """Attention heads (query heads) of every attention layer, nested models walked."""
    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.MultiHeadAttention):
            n += layer.num_heads
        elif isinstance(layer, keras.layers.GroupQueryAttention):
            n += layer.num_query_heads
    return n


def _litert(model, x):
    """Max |LiteRT - Keras| of the pruned model, or why it was not checked."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None, "n/a (several outputs)"
    from remotetrimmer_tf.export.litert import check_parity, convert_to_litert_bytes
    try:
        tflite = convert_to_litert_bytes(model)       # batch 1, as exported
        return check_parity(model, tflite, x[:1])["max_abs_diff"], None
    except Exception as err:  # noqa: BLE001 - reported in the table
        return None, f"failed ({type(err).__name__}: {str(err).splitlines()[0][:80]})"


def check(model, x, ratio=0.5, litert=True):
    """One row: prune ``model`` with l1 at ``ratio`` and check it."""
    row = {"params": rt.count_params(model, trainable_only=True), "macs": rt.count_macs(model),
           "heads": _heads(model)}
    t0 = time.perf_counter()
    pruner = rt.Pruner(model, importance="l1", ratio=ratio)
    keep = pruner.plan()
    graph = pruner.graph
    small = rt.prune_channels(graph.model, keep, graph=graph)
    row["prune_s"] = round(time.perf_counter() - t0, 2)
    row["groups"] = len(graph.groups)
    row["prunable"] = sum(g.prunable for g in graph.groups)
    row["head_groups"] = sum(g.units is not None and g.prunable for g in graph.groups)
    row["params_after"] = rt.count_params(small, trainable_only=True)
    row["macs_after"] = rt.count_macs(small)
    row["heads_after"] = _heads(small)
    ref = _out(model, x)
    row["noop_err"] = _rel_err(ref, _out(rt.prune_channels(model, {}, graph=graph), x))
    quiet = silence_dropped(model, keep, graph=graph)
    row["dead_err"] = _rel_err(_out(quiet, x), _out(rt.prune_channels(quiet, keep), x))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        small.save(path)
        row["reload_err"] = _rel_err(_out(small, x), _out(keras.saving.load_model(path), x))
    row["exact"] = max(row["noop_err"], row["dead_err"], row["reload_err"]) <= TOL
    if litert:
        row["litert_err"], row["litert_note"] = _litert(small, x)
    return row


def _forms(name):
    bb = zoo.backbone(name)
    return [("Backbone", lambda: bb), ("nested", lambda: zoo.nested(bb)),
            ("ImageClassifier", lambda: zoo.classifier(name, bb))]


def _row(source, name, form, make, x, litert):
    row = {"source": source, "model": name, "form": form}
    try:
        keras.utils.set_random_seed(0)
        model = make()
        if model is None:
            return None
        row["class"] = type(model).__name__
        row.update(check(model, x, litert=litert))
        row["status"] = "pruned exactly" if row["exact"] else "NOT EXACT"
    except (ValueError, TypeError) as err:
        row["status"] = "refused"
        row["reason"] = str(err).split(". Way out")[0][:300]
    return row


def run(hub_names, keras_names, litert=True):
    x = np.random.default_rng(0).standard_normal((2, zoo.SIZE, zoo.SIZE, 3)).astype("float32")
    jobs = [("keras-hub", n, form, make) for n in hub_names for form, make in _forms(n)]
    jobs += [("Keras", n, "model", keras_vits.MODELS[n]) for n in keras_names]
    rows = []
    for source, name, form, make in jobs:
        row = _row(source, name, form, make, x, litert)
        if row is None:
            continue
        rows.append(row)
        print(f"{name:58s} {form:16s} {row['status']}"
              + (f"  ({row.get('reason')})" if row.get("reason") else ""), flush=True)
    return rows


def _fmt(n):
    return f"{n:,}" if isinstance(n, int) else str(n)


def _cell(r):
    if r.get("litert_note"):
        return r["litert_note"]
    return f"{r['litert_err']:.1e}" if r.get("litert_err") is not None else ""


def to_markdown(rows, info):
    done = [r for r in rows if "params_after" in r]
    exact = sum(r["status"] == "pruned exactly" for r in rows)
    refused = sum(r["status"] == "refused" for r in rows)
    lines = [
        "# Vision-transformer coverage", "",
        f"Command: `{info['command']}`", "", f"Commit: `{info['commit']}`", "",
        f"keras-hub {_version('keras_hub')}, Keras {keras.__version__}, backend "
        f"{keras.backend.backend()}. Small configs built offline "
        "(`tools/keras_hub_vit_zoo.py`, `tools/keras_vits.py`), random weights, "
        f"{zoo.SIZE}×{zoo.SIZE} inputs; `Pruner(importance='l1', ratio=0.5)` (default "
        "options: the residual stream behind LayerNormalization stays whole).", "",
        f"**{exact} of {len(rows)} model forms pruned exactly, {refused} refused with a "
        f"named reason, {len(rows) - exact - refused} other** (no-op rebuild, "
        f"dead-channel removal and save/reload within {TOL:g} relative error). "
        "LiteRT: max |LiteRT − Keras| of the pruned model (float32, converted and run at "
        "batch 1).", "",
        "| source | model | form | groups (prunable) | heads before → after | params before → "
        "after | MACs before → after | no-op err | dead-channel err | reload err | LiteRT "
        "| prune s | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r in done:
            lines.append(
                f"| {r['source']} | {r['model']} | {r['form']} | {r['groups']} "
                f"({r['prunable']}) | {r['heads']} → {r['heads_after']} | "
                f"{_fmt(r['params'])} → {_fmt(r['params_after'])} | "
                f"{_fmt(r['macs'])} → {_fmt(r['macs_after'])} | {r['noop_err']:.1e} | "
                f"{r['dead_err']:.1e} | {r['reload_err']:.1e} | {_cell(r)} | "
                f"{r['prune_s']} | {r['status']} |")
        else:
            lines.append(f"| {r['source']} | {r['model']} | {r['form']} | | | | | | | | | | "
                         f"{r['status']}: {r.get('reason', '')} |")
    return "\n".join(lines) + "\n"


def _version(mod):
    try:
        return __import__(mod).__version__
    except Exception:  # pragma: no cover
        return "?"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tools/results/transformer_coverage",
                    help="output path without extension (.json and .md are written)")
    ap.add_argument("--models", default="",
                    help="model names separated by ';' (default: all of both lists)")
    ap.add_argument("--no_litert", action="store_true", help="skip the LiteRT parity column")
    args = ap.parse_args(argv)
    chosen = [n for n in args.models.split(";") if n]
    hub = [n for n in zoo.BACKBONES if not chosen or n in chosen]
    own = [n for n in keras_vits.MODELS if not chosen or n in chosen]
    rows = run(hub, own, litert=not args.no_litert)
    info = provenance([sys.argv[0].replace(str(pathlib.Path.cwd()) + os.sep, "")]
                      + list(sys.argv[1:] if argv is None else argv))
    from remotetrimmer_tf.utils.files import write_json_atomic, write_text_atomic
    write_json_atomic(args.out + ".json", {**info, "rows": rows}, default=str)
    write_text_atomic(args.out + ".md", to_markdown(rows, info))
    print(f"wrote {args.out}.md")


if __name__ == "__main__":
    main()
