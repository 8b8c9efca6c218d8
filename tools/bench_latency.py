"""LiteRT latency benchmark of unpruned vs structurally pruned ResNet-18.

For the unpruned ResNet-18 (10 classes, 64x64x3) and for RemoteTrimmer
pruned copies at ratios 0.3 / 0.5 / 0.7 (local L1 importance; ``--round-to``
entries such as ``1,8,16,16down``: kept widths rounded up to multiples of 8 or
16, or down with ``down``), exports float32 and full-int8 LiteRT models with
:func:`remotetrimmer_tf.export.to_litert` (each export parity-checked on
real EuroSAT test images), then times them with the ai_edge_litert
interpreter (XNNPACK, fixed thread counts, warm-up, batch 1, median of
interleaved repeats) and reports latency, file size, MACs, parameters, and
speed-up / MAC-reduction.

Weights: ``--weights model.keras`` loads a trained unpruned model; otherwise
the unpruned model is trained briefly here (``--train-images`` real EuroSAT
training images, ``--epochs``) and cached in ``--workdir``; each pruned model
is fine-tuned for ``--finetune-epochs`` on the same images. The table says
which. Optional comparison rows (``--qat-python``): TFMOT magnitude pruning
at the parameter sparsity of the ratio-0.7 model, and quantisation-aware
int8 of the ratio-0.7 model, both through the tfmot bridge.

Two modes:

    # full run: train/prune/export/check/time, write results
    python tools/bench_latency.py --out tools/results/latency

    # time already exported models listed in a manifest (needs only numpy
    # and ai_edge_litert; e.g. on a quieter machine)
    python tools/bench_latency.py --manifest work/manifest.json --out X

Results: ``<out>.json`` and ``<out>.md`` with the exact command at the top.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# --------------------------------------------------------------------------
# data


def load_eurosat(data_dir, n_train, n_test, seed=0):
    """A seeded random subset of real EuroSAT images of the project's 70/30
    split, decoded and normalised by ``remotetrimmer_tf.data``."""
    from remotetrimmer_tf.data import numpy_source
    from remotetrimmer_tf.data.api import normalize_numpy, split_file_list

    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        root, files, labels = split_file_list("eurosat", split, data_dir=data_dir)
        idx = np.sort(rng.permutation(len(files))[:n])
        x = numpy_source.decode_files([os.path.join(root, files[i]) for i in idx], 64)
        out[split] = (normalize_numpy(x, "eurosat"), labels[idx].astype(np.int32))
        log(f"loaded {len(idx)} {split} images from {root}")
    return out


# --------------------------------------------------------------------------
# models


def train(model, data, epochs, lr, batch_size=32, seed=0):
    """``training.fit`` with SGD (momentum 0.9, Nesterov), constant ``lr``,
    cross-entropy on logits, no augmentation; its history (None for 0 epochs)."""
    from remotetrimmer_tf import training

    if epochs <= 0:
        return None
    recipe = dict(epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=lr,
                  momentum=0.9, nesterov=True, schedule="constant", loss="ce",
                  augment="none", seed=seed)
    return training.fit(model, data, recipe=recipe, verbose=0)


def accuracy(logits, y):
    return float(np.mean(np.argmax(logits, -1) == y))


def keras_logits(model, x, batch_size=100):
    return np.concatenate([
        np.asarray(model(x[i:i + batch_size], training=False), np.float32)
        for i in range(0, len(x), batch_size)
    ])


def build_variants(args, data):
    """Unpruned + pruned Keras models: list of dicts with 'model' and facts."""
    import keras

    import remotetrimmer_tf as rt
    from remotetrimmer_tf.training import save_model_atomic

    os.makedirs(args.workdir, exist_ok=True)
    base_path = os.path.join(args.workdir, "resnet18_unpruned.keras")
    if args.weights:
        base = keras.saving.load_model(args.weights, compile=False)
        weights_note = f"loaded from {args.weights}"
        base_hist = None
    elif os.path.exists(base_path) and not args.retrain:
        base = keras.saving.load_model(base_path, compile=False)
        weights_note = (f"trained here: {args.epochs} epoch(s) on "
                        f"{len(data['train'][0])} EuroSAT train images (cached)")
        base_hist = None
    else:
        keras.utils.set_random_seed(args.seed)
        base = rt.models.resnet18(10, (64, 64, 3))
        log("training unpruned ResNet-18 ...")
        t = time.time()
        base_hist = train(base, data["train"], args.epochs, args.lr)
        log(f"  done in {time.time() - t:.0f}s: {base_hist}")
        save_model_atomic(base, base_path)
        weights_note = (f"trained here: {args.epochs} epoch(s) on "
                        f"{len(data['train'][0])} EuroSAT train images")
    variants = [{"name": "unpruned", "ratio": 0.0, "round_to": None,
                 "model": base, "finetune": None}]
    for round_to, round_mode in args.round_to:
        for ratio in args.ratios:
            name = f"r{ratio}_round{round_to}" + ("" if round_mode == "up" else round_mode)
            cache = os.path.join(args.workdir, f"{name}_finetuned.keras")
            hist = None
            if (os.path.exists(cache) and not args.retrain
                    and not args.weights and base_hist is None):
                log(f"reusing fine-tuned {cache}")
                pruned = keras.saving.load_model(cache, compile=False)
                hist = "cached"
            else:
                log(f"pruning ratio={ratio} round_to={round_to} ({round_mode})")
                pruned = rt.Pruner(base, importance="l1", ratio=ratio,
                                   round_to=round_to, round_mode=round_mode).prune()
                if args.finetune_epochs > 0:
                    t = time.time()
                    hist = train(pruned, data["train"], args.finetune_epochs,
                                 args.finetune_lr)
                    log(f"  fine-tuned in {time.time() - t:.0f}s: {hist}")
                save_model_atomic(pruned, cache)
            variants.append({"name": name, "ratio": ratio,
                             "round_to": round_to, "round_mode": round_mode,
                             "model": pruned,
                             "finetune": hist})
    for v in variants:
        v["macs"] = int(rt.count_macs(v["model"]))
        v["params"] = int(rt.count_params(v["model"], trainable_only=True))
        v["widths"] = [int(l.filters) for l in v["model"].layers
                       if l.__class__.__name__ == "Conv2D"
                       and not l.name.endswith("down_conv")][::4]
    return variants, weights_note, base_hist


def export_all(args, variants, data):
    """Export float32 + int8 for every variant; parity on real images."""
    from remotetrimmer_tf.export import run_litert, to_litert

    x_test, y_test = data["test"]
    x_cal = data["train"][0][: args.calibration]
    entries = []
    for v in variants:
        ref = keras_logits(v["model"], x_test)
        v["keras_acc"] = accuracy(ref, y_test)
        for quant in (None, "int8"):
            tag = "float32" if quant is None else "int8"
            path = os.path.join(args.workdir, f"{v['name']}_{tag}.tflite")
            t = time.time()
            res = to_litert(
                v["model"], path, quant,
                representative_data=x_cal if quant else None,
                check_data=x_test, overwrite=True, atol=args.atol,
            )
            acc = accuracy(run_litert(res.path, x_test), y_test)
            log(f"  {v['name']} {tag}: {res.size_bytes} B, max|diff| "
                f"{res.max_abs_diff:.2e}, top-1 agree {res.top1_agreement:.4f}, "
                f"acc {acc:.4f} (keras {v['keras_acc']:.4f}) "
                f"[{time.time() - t:.0f}s]")
            entries.append({
                "name": v["name"], "ratio": v["ratio"], "round_to": v["round_to"],
                "round_mode": v.get("round_mode"),
                "dtype": tag, "path": os.path.relpath(res.path, args.workdir),
                "size_bytes": res.size_bytes, "macs": v["macs"],
                "params": v["params"], "widths": v["widths"],
                "max_abs_diff": res.max_abs_diff,
                "top1_agreement": res.top1_agreement,
                "num_checked": res.num_checked,
                "keras_accuracy": v["keras_acc"], "litert_accuracy": acc,
            })
    return entries


def _round_spec(text):
    """``"16"`` / ``"16up"`` -> (16, "up"); ``"16down"`` -> (16, "down"); etc."""
    import re
    m = re.fullmatch(r"(\d+)(up|down|nearest)?", text.strip())
    if not m or int(m.group(1)) < 1:
        raise SystemExit(f"--round-to: bad entry {text!r}; use e.g. 1,8,16,16down")
    return int(m.group(1)), m.group(2) or "up"


def tfmot_rows(args, variants, data, entries):
    """Optional: TFMOT magnitude pruning and QAT comparison rows."""
    from remotetrimmer_tf.export import (compressed_size, qat_to_litert,
                                         run_litert, tfmot_prune_to_litert)

    x_test, y_test = data["test"]
    base = variants[0]
    target = next((v for v in variants if v["ratio"] == max(args.ratios)
                   and (v["round_to"], v.get("round_mode")) == args.round_to[0]), None)
    rows = []
    if target is None:
        return rows
    sparsity = 1.0 - target["params"] / base["params"]
    for quant in (None, "int8"):
        tag = "float32" if quant is None else "int8"
        path = os.path.join(args.workdir, f"tfmot_magnitude_{tag}.tflite")
        t = time.time()
        res = tfmot_prune_to_litert(
            base["model"], path, round(sparsity, 4), data["train"],
            quantize=quant, check_data=x_test, epochs=args.finetune_epochs,
            learning_rate=args.finetune_lr, python=args.qat_python,
            max_train_samples=args.tfmot_train_images, overwrite=True, representative_data=data["train"][0][: args.calibration],
        )
        acc = accuracy(run_litert(res.path, x_test), y_test)
        log(f"  tfmot magnitude {tag}: sparsity {res.extra['kernel_sparsity']:.3f},"
            f" {res.size_bytes} B, gzip {res.extra['gzip_bytes']} B, acc {acc:.4f}"
            f" [{time.time() - t:.0f}s]")
        rows.append({
            "name": "tfmot_magnitude", "ratio": None, "round_to": None,
            "dtype": tag, "path": os.path.relpath(res.path, args.workdir),
            "size_bytes": res.size_bytes, "gzip_bytes": res.extra["gzip_bytes"],
            "macs": base["macs"], "params": base["params"],
            "kernel_sparsity": res.extra["kernel_sparsity"],
            "top1_agreement": res.top1_agreement,  # vs the unpruned Keras model
            "litert_accuracy": acc, "num_checked": res.num_checked,
            "note": f"TFMOT prune_low_magnitude at the parameter sparsity of "
                    f"{target['name']} ({sparsity:.3f}), "
                    f"{args.finetune_epochs} epoch(s) fine-tune on "
                    f"{min(args.tfmot_train_images, len(data['train'][0]))} "
                    "images; dense kernels; top-1 agreement is vs the "
                    "unpruned Keras model",
        })
    path = os.path.join(args.workdir, f"{target['name']}_qat_int8.tflite")
    t = time.time()
    res = qat_to_litert(
        target["model"], path, data["train"], check_data=x_test,
        epochs=args.qat_epochs, learning_rate=args.qat_lr,
        python=args.qat_python, overwrite=True,
    )
    acc = accuracy(run_litert(res.path, x_test), y_test)
    log(f"  QAT int8 {target['name']}: agree {res.top1_agreement:.4f}, "
        f"acc {acc:.4f} [{time.time() - t:.0f}s]")
    rows.append({
        "name": f"{target['name']}_qat", "ratio": target["ratio"],
        "round_to": target["round_to"], "dtype": "int8 (QAT)",
        "path": os.path.relpath(res.path, args.workdir),
        "size_bytes": res.size_bytes, "macs": target["macs"],
        "params": target["params"], "widths": target["widths"],
        "top1_agreement": res.top1_agreement, "litert_accuracy": acc,
        "keras_accuracy": target["keras_acc"], "num_checked": res.num_checked,
        "bridge_max_abs_diff": res.extra["bridge_max_abs_diff"],
        "note": f"tfmot quantize_model + {args.qat_epochs} epoch(s) QAT "
                "(agreement vs the float Keras model before QAT)",
    })
    for r in rows:
        r.setdefault("gzip_bytes", compressed_size(os.path.join(args.workdir, r["path"])))
    return rows


# --------------------------------------------------------------------------
# timing


def time_models(entries, workdir, threads, warmup, repeats, rounds, seed=0):
    """Median per-invoke latency (ms) for every entry and thread count.

    Repeats are interleaved across models in ``rounds`` rounds so that slow
    drifts of a shared machine's load hit all models alike.
    """
    from remotetrimmer_tf.export.litert import LiteRTRunner

    x = np.random.default_rng(seed).standard_normal((1, 64, 64, 3)).astype(np.float32)
    results = {}
    for nt in threads:
        runners = {}
        for e in entries:
            r = LiteRTRunner(os.path.join(workdir, e["path"]), num_threads=nt)
            r.set_input(x)
            for _ in range(warmup):
                r.invoke()
            runners[e["path"]] = r
        samples = {k: [] for k in runners}
        per_round = max(1, repeats // rounds)
        for _ in range(rounds):
            for k, r in runners.items():
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    r.invoke()
                    samples[k].append(time.perf_counter() - t0)
        for k, s in samples.items():
            s = np.asarray(s) * 1e3
            results[(k, nt)] = {
                "median_ms": float(np.median(s)),
                "p10_ms": float(np.percentile(s, 10)),
                "p90_ms": float(np.percentile(s, 90)),
                "n": int(len(s)),
            }
        log(f"timed {len(runners)} models with {nt} thread(s)")
        del runners
    return results


def attach_timings(entries, timings, threads):
    base = {e["dtype"]: e for e in entries if e["name"] == "unpruned"}
    for e in entries:
        e["latency"] = {}
        for nt in threads:
            t = dict(timings[(e["path"], nt)])
            ref_dtype = "int8" if e["dtype"].startswith("int8") else "float32"
            ref = base.get(ref_dtype)
            if ref is not None:
                ref_ms = timings[(ref["path"], nt)]["median_ms"]
                t["speedup"] = ref_ms / t["median_ms"]
                t["mac_reduction"] = ref["macs"] / e["macs"]
                t["speedup_over_mac_reduction"] = t["speedup"] / t["mac_reduction"]
            e["latency"][str(nt)] = t


# --------------------------------------------------------------------------
# reporting


def machine_info():
    info = {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    try:
        import ai_edge_litert
        info["ai_edge_litert"] = getattr(ai_edge_litert, "__version__", "?")
    except ImportError:
        pass
    return info


def mb(n):
    return f"{n / 2**20:.2f}"


def write_results(out, payload):
    from remotetrimmer_tf.utils.files import write_text_atomic
    for ext, text in ((".json", json.dumps(payload, indent=1)),
                      (".md", markdown(payload))):
        write_text_atomic(out + ext, text + "\n")
    log(f"wrote {out}.json and {out}.md")


def markdown(p):
    threads = p["settings"]["threads"]
    lines = [
        "# LiteRT latency: unpruned vs RemoteTrimmer-pruned ResNet-18",
        "",
        "Command:",
        "",
        "```",
        p["command"],
        "```",
        "",
        f"Commit: `{p.get('commit', 'not recorded')}`",
        "",
        f"- Machine: {p['machine'].get('cpu', '?')}, {p['machine']['cpu_count']} "
        f"CPUs ({p['machine'].get('note', '')}); load average at start "
        f"{p['machine'].get('loadavg_at_start', '?')}; ai_edge_litert "
        f"{p['machine'].get('ai_edge_litert', '?')}.",
        f"- Timing: ai_edge_litert Interpreter (XNNPACK), batch 1, 64x64x3, "
        f"{p['settings']['warmup']} warm-up runs, median of "
        f"{p['settings']['repeats']} runs interleaved across models in "
        f"{p['settings']['rounds']} rounds; threads {threads}.",
        f"- Weights: {p.get('weights', '?')}. Pruning: local L1 importance "
        "(Pruner), ratios as listed; pruned models fine-tuned "
        f"{p['settings'].get('finetune_epochs', '?')} epoch(s).",
        f"- Parity on {p['settings'].get('check_images', '?')} real EuroSAT "
        "test images: float32 max |LiteRT - Keras| (bar: <= 1e-4); int8 top-1 "
        "agreement with the float Keras model (bar: >= 99%); int8 calibrated "
        f"on {p['settings'].get('calibration', '?')} real training images.",
        *([f"- Timed from the manifest of a full run ({p['timed_from_manifest']}): "
           "the same .tflite files, exported and parity-checked there."]
          if p.get("timed_from_manifest") else []),
        "- speed-up = unpruned latency / model latency (same dtype, same "
        "threads); MAC red. = unpruned MACs / model MACs; ratio = speed-up / "
        "MAC red. (bar for ratio 0.7: >= 0.8; 1.0 is the physical limit).",
        "",
    ]
    hdr = ("| model | dtype | widths (stem, s1..s4) | params | MMACs | MAC red. "
           "| size MB | max abs diff | top-1 agree | acc LiteRT "
           f"| GMAC/s ({threads[0]} thr) |")
    sep = "|---" * 11 + "|"
    for nt in threads:
        hdr += f" ms ({nt} thr) | speed-up ({nt} thr) | ratio ({nt} thr) |"
        sep += "---|---|---|"
    lines += [hdr, sep]
    for e in p["entries"]:
        lat = e.get("latency", {})
        anynt = lat.get(str(threads[0]), {})
        diff = e.get("max_abs_diff")
        agree = e.get("top1_agreement")
        acc = e.get("litert_accuracy")
        row = (f"| {e['name']} | {e['dtype']} | {e.get('widths', '')} | "
               f"{e['params']:,} | {e['macs'] / 1e6:.1f} | "
               f"{anynt.get('mac_reduction', float('nan')):.2f} | "
               f"{mb(e['size_bytes'])} | "
               f"{'' if diff is None else f'{diff:.1e}'} | "
               f"{'' if agree is None else f'{100 * agree:.1f}%'} | "
               f"{'' if acc is None else f'{100 * acc:.1f}%'} | "
               f"{e['macs'] / anynt['median_ms'] / 1e6 if anynt else float('nan'):.0f} |")
        for nt in threads:
            t = lat.get(str(nt))
            if t is None:
                row += " | | |"
            else:
                row += (f" {t['median_ms']:.2f} | {t.get('speedup', float('nan')):.2f}x"
                        f" | {t.get('speedup_over_mac_reduction', float('nan')):.2f} |")
        lines.append(row)
    extra = [e for e in p["entries"] if e.get("note")]
    if extra:
        lines += ["", "Notes on comparison rows:"]
        for e in extra:
            gz = f", gzip {mb(e['gzip_bytes'])} MB" if e.get("gzip_bytes") else ""
            sp = (f", measured kernel sparsity {e['kernel_sparsity']:.3f}"
                  if e.get("kernel_sparsity") is not None else "")
            lines.append(f"- {e['name']} ({e['dtype']}): {e['note']}{sp}{gz}.")
    if p.get("summary"):
        lines += ["", "Summary:", ""] + [f"- {s}" for s in p["summary"]]
    lines += ["", "Reading the table:", "",
              "- The unpruned float32 model (43 MB of weights) is memory-bound "
              "at batch 1, so on a shared machine its latency moves with other "
              "processes' memory traffic; the speed-ups of float32 rows inherit "
              "that noise. int8 and small models are compute-bound and stable.",
              "- GMAC/s shows how efficiently LiteRT/XNNPACK runs each width: "
              "int8 kernels work on blocks of output channels, so widths that "
              "are not multiples of 16 waste part of each block. Rounding the "
              "kept channels up (round_to=8, 16) costs MACs but converts the "
              "MAC reduction into speed-up far better.",
              *(["- This machine has only 2 cores shared with other jobs: "
                 "2 threads contend with them (often slower than 1), and "
                 "speed-up/MAC ratios above 1.0 at 2 threads are contention "
                 "artefacts of the slower baseline. Read the 1-thread columns."]
                if (p["machine"].get("cpu_count") or 99) <= 2 else []),
              "- int8 top-1 agreement depends on the float model's logit "
              "margins: with briefly trained weights many test images are "
              "near-ties, so agreement is lower than on a fully trained model."]
    return "\n".join(lines)


def summarise(p):
    out = []
    threads = p["settings"]["threads"]
    for e in p["entries"]:
        if e["ratio"] == max(p["settings"].get("ratios", [0.7])) and not e.get("note"):
            for nt in threads:
                t = e["latency"].get(str(nt), {})
                if "speedup" in t:
                    ok = "meets" if t["speedup_over_mac_reduction"] >= 0.8 else "misses"
                    out.append(
                        f"{e['name']} {e['dtype']} {nt} thread(s): speed-up "
                        f"{t['speedup']:.2f}x vs MAC reduction "
                        f"{t['mac_reduction']:.2f}x -> ratio "
                        f"{t['speedup_over_mac_reduction']:.2f} ({ok} the 0.8 bar)")
    fl = [e["max_abs_diff"] for e in p["entries"]
          if e["dtype"] == "float32" and e.get("max_abs_diff") is not None
          and not e.get("note")]
    if fl:
        out.append(f"float32 parity: worst max |LiteRT - Keras| = {max(fl):.2e} "
                   f"over all exported models (bar 1e-4)")
    ag = [e["top1_agreement"] for e in p["entries"]
          if e["dtype"] == "int8" and e.get("top1_agreement") is not None
          and not e.get("note")]
    if ag:
        out.append(f"int8 (PTQ) top-1 agreement: min {100 * min(ag):.1f}% over "
                   f"all exported models (bar 99%)")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tools/results/latency"),
                    help="results path without extension")
    ap.add_argument("--workdir", default="/tmp/rt_bench_latency",
                    help="where models and .tflite files go")
    ap.add_argument("--manifest", help="only time the models of this manifest")
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "../shared/data/eurosat"))
    ap.add_argument("--weights", help="trained unpruned ResNet-18 .keras")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--train-images", type=int, default=2000)
    ap.add_argument("--check-images", type=int, default=1000)
    ap.add_argument("--calibration", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--finetune-lr", type=float, default=0.01)
    ap.add_argument("--ratios", default="0.3,0.5,0.7")
    ap.add_argument("--round-to", default="1,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--qat-python", help="python with tfmot + tf_keras: adds "
                    "the TFMOT magnitude-pruning and QAT rows")
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--tfmot-train-images", type=int, default=512)
    ap.add_argument("--reuse-tfmot-rows", action="store_true",
                    help="reuse workdir/tfmot_rows.json from an earlier run")
    ap.add_argument("--qat-lr", type=float, default=1e-3)
    ap.add_argument("--machine-note", default="")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.ratios = [float(r) for r in args.ratios.split(",")]
    args.round_to = [_round_spec(r) for r in args.round_to.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    from remotetrimmer_tf.utils.files import write_json_atomic
    from remotetrimmer_tf.utils.provenance import git_commit
    machine = machine_info()
    machine["note"] = args.machine_note

    if args.manifest:
        with open(args.manifest) as f:
            payload = json.load(f)
        workdir = os.path.dirname(os.path.abspath(args.manifest))
        entries = []
        for e in payload["entries"]:
            if os.path.exists(os.path.join(workdir, e["path"])):
                entries.append(e)
            else:
                log(f"skipping {e['name']} {e['dtype']}: {e['path']} not found")
        payload["timed_from_manifest"] = os.path.abspath(args.manifest)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        data = load_eurosat(args.data_dir, args.train_images, args.check_images,
                            args.seed)
        variants, weights_note, base_hist = build_variants(args, data)
        entries = export_all(args, variants, data)
        if args.qat_python:
            rows_path = os.path.join(args.workdir, "tfmot_rows.json")
            if args.reuse_tfmot_rows and os.path.exists(rows_path):
                with open(rows_path) as f:
                    rows = json.load(f)
                log(f"reusing TFMOT/QAT rows from {rows_path}")
            else:
                rows = tfmot_rows(args, variants, data, entries)
                write_json_atomic(rows_path, rows, indent=1, sort_keys=False)
            entries += rows
        workdir = args.workdir
        payload = {
            "weights": weights_note, "base_history": base_hist,
            "settings": {"ratios": args.ratios, "round_to": args.round_to,
                         "train_images": args.train_images,
                         "check_images": args.check_images,
                         "calibration": args.calibration, "epochs": args.epochs,
                         "finetune_epochs": args.finetune_epochs,
                         "importance": "l1", "scope": "local"},
            "entries": entries,
        }
        manifest = dict(payload)
        manifest["entries"] = [{k: v for k, v in e.items() if k != "latency"}
                               for e in entries]
        write_json_atomic(os.path.join(workdir, "manifest.json"), manifest, indent=1,
                          sort_keys=False)
    log("timing ...")
    timings = time_models(entries, workdir, threads, args.warmup, args.repeats,
                          args.rounds, args.seed)
    attach_timings(entries, timings, threads)
    payload["command"] = command
    payload["commit"] = git_commit()
    payload["machine"] = machine
    payload["settings"].update({"threads": threads, "warmup": args.warmup,
                                "repeats": args.repeats, "rounds": args.rounds,
                                "batch": 1, "delegate": "XNNPACK (default)"})
    payload["entries"] = entries
    payload["summary"] = summarise(payload)
    write_results(args.out, payload)
    for s in payload["summary"]:
        log(s)


if __name__ == "__main__":
    main()
