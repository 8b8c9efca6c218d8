"""Float32 and int8 LiteRT parity of a pruned ResNet-18 on real EuroSAT images.

Prunes ResNet-18 (local L1, ``--ratio``) starting from the unpruned weights of
``--base`` (e.g. the model cached by ``tools/bench_latency.py``) or from
random weights, trains the pruned model for ``--epochs`` on ``--train-images``
real EuroSAT training images, exports float32 and full-int8 LiteRT models with
:func:`remotetrimmer_tf.export.to_litert` (int8 calibrated on
``--calibration`` training images) and compares them with Keras on
``--check-images`` test images: float32 max abs diff (bar 1e-4) and int8
top-1 agreement (bar 99%). Writes ``<out>.json`` / ``<out>.md``.

    python tools/int8_parity.py --base /tmp/rt_bench_latency/resnet18_unpruned.keras
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tools/results/int8_parity"))
    ap.add_argument("--workdir", default="/tmp/rt_int8_parity")
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "../shared/data/eurosat"))
    ap.add_argument("--base", help="unpruned ResNet-18 .keras (default: random)")
    ap.add_argument("--model", help="an already pruned and trained .keras (e.g. a "
                    "fine-tuned model from tools/reproduce.py): exported as is; "
                    "--base/--ratio/--round-to/--epochs are then unused")
    ap.add_argument("--ratio", type=float, default=0.7)
    ap.add_argument("--round-to", type=int, default=1)
    ap.add_argument("--train-images", type=int, default=12000)
    ap.add_argument("--check-images", type=int, default=1000)
    ap.add_argument("--calibration", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    import bench_latency as bl
    import remotetrimmer_tf as rt
    from remotetrimmer_tf.export import run_litert, to_litert

    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    os.makedirs(args.workdir, exist_ok=True)
    data = bl.load_eurosat(args.data_dir, args.train_images, args.check_images,
                           args.seed)
    keras.utils.set_random_seed(args.seed)
    if args.model:
        model = keras.saving.load_model(args.model, compile=False)
        start = f"the trained model {os.path.basename(args.model)}"
        hist, args.epochs = {}, 0
        how = f"{start}, exported as is"
    else:
        if args.base:
            base = keras.saving.load_model(args.base, compile=False)
            start = f"pruned from {args.base}"
        else:
            base = rt.models.resnet18(10, (64, 64, 3))
            start = "pruned from random weights"
        model = rt.Pruner(base, importance="l1", ratio=args.ratio,
                          round_to=args.round_to).prune()
        t = time.time()
        hist = bl.train(model, data["train"], args.epochs, args.lr)
        bl.log(f"trained in {time.time() - t:.0f}s: {hist}")
        how = (f"ResNet-18 pruned at ratio {args.ratio} (local L1, round_to "
               f"{args.round_to}), {start}, then trained {args.epochs} epoch(s) on "
               f"{args.train_images} EuroSAT train images")
    x_test, y_test = data["test"]
    ref = bl.keras_logits(model, x_test)
    rows = []
    for quant in (None, "int8"):
        tag = "float32" if quant is None else "int8"
        res = to_litert(
            model, os.path.join(args.workdir, f"pruned_{tag}.tflite"), quant,
            representative_data=data["train"][0][: args.calibration] if quant else None,
            check_data=x_test, overwrite=True,
        )
        acc = bl.accuracy(run_litert(res.path, x_test), y_test)
        top2 = np.sort(ref, -1)
        margin = top2[:, -1] - top2[:, -2]
        rows.append({"dtype": tag, "size_bytes": res.size_bytes,
                     "max_abs_diff": res.max_abs_diff,
                     "top1_agreement": res.top1_agreement,
                     "num_checked": res.num_checked, "litert_accuracy": acc,
                     "median_logit_margin": float(np.median(margin))})
        bl.log(f"{tag}: {rows[-1]}")
    from remotetrimmer_tf.utils.files import write_text_atomic
    from remotetrimmer_tf.utils.provenance import git_commit
    payload = {
        "command": command, "commit": git_commit(), "start": start, "model": args.model, "ratio": args.ratio,
        "round_to": args.round_to, "params": int(rt.count_params(model, trainable_only=True)),
        "macs": int(rt.count_macs(model)), "train_images": args.train_images,
        "epochs": args.epochs, "history": hist,
        "keras_accuracy": bl.accuracy(ref, y_test), "rows": rows,
    }
    lines = [
        "# LiteRT parity of a pruned ResNet-18 on real EuroSAT test images", "",
        "Command:", "", "```", command, "```", "",
        f"Commit: `{payload['commit']}`", "",
        f"- Model: {how} ({payload['params']:,} params, {payload['macs']:,} MACs); "
        f"Keras test accuracy {100 * payload['keras_accuracy']:.1f}% on "
        f"{args.check_images} test images.",
        f"- int8: full-integer PTQ, calibrated on {args.calibration} train "
        "images, float32 I/O.", "",
        "| dtype | size MB | max abs diff vs Keras | top-1 agreement | "
        "accuracy LiteRT | median float logit margin |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['dtype']} | {r['size_bytes'] / 2**20:.2f} | "
                     f"{r['max_abs_diff']:.2e} | {100 * r['top1_agreement']:.1f}% "
                     f"({r['num_checked']} images) | "
                     f"{100 * r['litert_accuracy']:.1f}% | "
                     f"{r['median_logit_margin']:.2f} |")
    for ext, text in ((".json", json.dumps(payload, indent=1)),
                      (".md", "\n".join(lines))):
        write_text_atomic(args.out + ext, text + "\n")
    bl.log(f"wrote {args.out}.json/.md")


if __name__ == "__main__":
    main()
