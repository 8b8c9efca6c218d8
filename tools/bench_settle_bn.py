"""Which way settles BatchNorm statistics after short training on a small folder?

The case of the issue: a few UC Merced classes (``--per_class`` images each,
70/30 split per class), keras.applications MobileNetV2 from scratch at 64 px,
a short ``training.fit``. Three ways, same seed, same recipe:

- ``keras 0.99``: Keras' default BN momentum, statistics as training left
  them (``settle_bn="off"``: what the pipeline did before);
- ``momentum 0.9``: every BN's momentum set to 0.9 (PyTorch's default),
  statistics as training left them;
- ``precise BN``: default momentum, statistics re-estimated after every
  epoch over the training images (``settle_bn="epoch"``, the new default).

Test accuracy (evaluation mode) after every epoch, per seed; the table gives
the final and the mean over epochs.

    python tools/bench_settle_bn.py --seeds 0,1 --epochs 8 \\
        --results tools/results/settle_bn.md
"""
import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WAYS = ("keras 0.99", "momentum 0.9", "precise BN")


def load_folder(source, classes, per_class, size, seed):
    """``(x_train, y_train, x_test, y_test)``: the first ``per_class`` images of
    each class, a seeded 70/30 split per class, pixels scaled to [-1, 1]."""
    from PIL import Image
    xs, ys, split = [], [], []
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        files = sorted((pathlib.Path(source) / name).iterdir())[:per_class]
        order = rng.permutation(len(files))
        n_train = int(round(0.7 * len(files)))
        for rank, i in enumerate(order):
            img = Image.open(files[i]).convert("RGB").resize((size, size), Image.BILINEAR)
            xs.append(np.asarray(img, np.float32) / 127.5 - 1.0)
            ys.append(label)
            split.append(rank < n_train)
    x, y, split = np.stack(xs), np.asarray(ys), np.asarray(split)
    return x[split], y[split], x[~split], y[~split]


def run_way(way, data, epochs, seed, args):
    """Test accuracy after every epoch of one way."""
    import keras
    from remotetrimmer_tf import training
    x, y, xt, yt = data
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(weights=None, input_shape=x.shape[1:],
                                           classes=int(y.max()) + 1,
                                           classifier_activation=None)
    if way == "momentum 0.9":
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
    curve = []

    class Eval(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            curve.append(training.evaluate(model, (xt, yt))["accuracy"])

    recipe = dict(epochs=epochs, batch_size=args.batch_size, lr=args.lr, momentum=0.9,
                  seed=seed, precision="float32")
    t0 = time.time()
    training.fit(model, (x, y), recipe=recipe, verbose=0, callbacks=[Eval()],
                 settle_bn="epoch" if way == "precise BN" else "off")
    return {"curve": curve, "seconds": round(time.time() - t0, 1)}


def write(results, args, n_train, n_test):
    from remotetrimmer_tf.utils.provenance import provenance, results_header
    from remotetrimmer_tf.utils.files import write_json_atomic, write_text_atomic
    lines = [results_header(), "",
             "# Settling BatchNorm statistics after short training on a small folder", "",
             f"UC Merced classes {', '.join(args.classes.split(','))} ({args.per_class} "
             f"images each; {n_train} train / {n_test} test images), keras.applications "
             f"MobileNetV2 from scratch at {args.image_size} px, SGD momentum 0.9 lr "
             f"{args.lr}, batch {args.batch_size}, {args.epochs} epochs "
             f"({-(-n_train // args.batch_size)} steps each), float32. Test accuracy in "
             "evaluation mode after each epoch.", "",
             "| way | seed | final | mean over epochs | per epoch | fit s |",
             "|---|---:|---:|---:|---|---:|"]
    for way in WAYS:
        for seed, r in sorted(results[way].items()):
            c = r["curve"]
            lines.append(f"| {way} | {seed} | {100 * c[-1]:.1f}% | {100 * np.mean(c):.1f}% | "
                         + " ".join(f"{100 * v:.0f}" for v in c) + f" | {r['seconds']} |")
    finals = {w: [r["curve"][-1] for r in results[w].values()] for w in WAYS}
    best = max(WAYS, key=lambda w: np.mean(finals[w]))
    lines += ["", "Mean final accuracy: " + "; ".join(
        f"{w} {100 * np.mean(finals[w]):.1f}%" for w in WAYS) + f". Best: **{best}**.", ""]
    write_text_atomic(args.results, "\n".join(lines))
    write_json_atomic(os.path.splitext(args.results)[0] + ".json",
                      {**provenance(), "results": results, "n_train": n_train,
                       "n_test": n_test})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="/work/shared/data/ucmerced/Images")
    p.add_argument("--classes", default="agricultural,beach,forest,harbor")
    p.add_argument("--per_class", type=int, default=60)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--results", default=str(REPO / "tools/results/settle_bn.md"))
    args = p.parse_args()
    data = load_folder(args.source, args.classes.split(","), args.per_class,
                       args.image_size, 0)
    results = {w: {} for w in WAYS}
    for seed in (int(s) for s in args.seeds.split(",")):
        for way in WAYS:
            results[way][seed] = run_way(way, data, args.epochs, seed, args)
            print(way, seed, results[way][seed], flush=True)
    write(results, args, len(data[1]), len(data[3]))


if __name__ == "__main__":
    main()
