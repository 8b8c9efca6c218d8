"""Train one backbone with a training recipe on a dataset and record the result.

Checks `remotetrimmer_tf.training.fit` and the recipes at full scale (the GPU
path is KERAS_BACKEND=jax without TensorFlow; data decoded with Pillow by
`data.load_numpy`). The test split is passed as `val` only to log a per-epoch
curve; the reported accuracy is the LAST epoch's (no selection on test).

Writes <out>/check_recipe_<dataset>_<arch>_<recipe>.json and .md.

Example (the command behind tools/results/check_recipe_eurosat_resnet18_modern.*):

    KERAS_BACKEND=jax python tools/check_recipe.py --dataset=eurosat \
        --data_dir=/tmp/eurosat --arch=resnet18 --recipe=modern --epochs=60 \
        --out=tools/results
"""
import argparse
import json
import os
import platform
import sys
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="eurosat")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--arch", default="resnet18", choices=("resnet18", "vgg16_bn"))
    p.add_argument("--se", action="store_true", help="with SE gates")
    p.add_argument("--recipe", default="modern", choices=("modern", "published"))
    p.add_argument("--epochs", type=int, default=None, help="override recipe.epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="tools/results")
    p.add_argument("--workdir", default=None, help="fit workdir (log.csv, checkpoints)")
    args = p.parse_args(argv)

    import keras
    import numpy as np

    import remotetrimmer_tf as rt
    from remotetrimmer_tf import data, training

    t0 = time.time()
    x_train, y_train = data.load_numpy(args.dataset, "train", data_dir=args.data_dir)
    x_test, y_test = data.load_numpy(args.dataset, "test", data_dir=args.data_dir)
    t_data = time.time() - t0
    print(f"data: train {x_train.shape} test {x_test.shape} in {t_data:.1f}s", flush=True)

    keras.utils.set_random_seed(args.seed)
    build = getattr(rt.models, args.arch)
    model = build(num_classes=int(y_train.max()) + 1, input_shape=x_train.shape[1:], se=args.se)
    recipe = training.recipes.get(args.recipe, "train")
    if args.epochs:
        recipe.epochs = args.epochs
    recipe.seed = args.seed

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._t)

    timer = EpochTimer()
    t1 = time.time()
    history = training.fit(model, (x_train, y_train), (x_test, y_test), recipe=recipe,
                           callbacks=[timer], verbose=2, workdir=args.workdir)
    t_fit = time.time() - t1
    final = training.evaluate(model, (x_test, y_test), batch_size=256)

    devices = [str(d) for d in keras.distribution.list_devices()]
    name = f"check_recipe_{args.dataset}_{args.arch}{'_se' if args.se else ''}_{args.recipe}"
    result = {
        "command": "KERAS_BACKEND=%s python tools/check_recipe.py %s" % (
            keras.backend.backend(), " ".join(sys.argv[1:] if argv is None else argv)),
        "dataset": args.dataset, "arch": args.arch, "se": args.se, "recipe": args.recipe,
        "recipe_fields": recipe.to_dict(), "seed": args.seed,
        "train_size": int(len(y_train)), "test_size": int(len(y_test)),
        "params": int(rt.count_params(model)) if hasattr(rt, "count_params") else None,
        "test_accuracy_last_epoch": final["accuracy"], "test_loss_last_epoch": final["loss"],
        "best_val_accuracy_seen": max(history.get("val_accuracy", [float("nan")])),
        "epoch_seconds_first": timer.times[0] if timer.times else None,
        "epoch_seconds_median": float(np.median(timer.times[1:])) if len(timer.times) > 1 else None,
        "fit_seconds": t_fit, "data_seconds": t_data,
        "history": history,
        "backend": keras.backend.backend(), "keras": keras.__version__,
        "devices": devices, "python": platform.python_version(),
    }
    os.makedirs(args.out, exist_ok=True)
    tmp = os.path.join(args.out, name + ".json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, os.path.join(args.out, name + ".json"))
    md = [f"# {args.arch}{' + SE' if args.se else ''} on {args.dataset}, {args.recipe} recipe",
          "", f"Command: `{result['command']}`", "",
          f"Devices: {', '.join(devices)}; Keras {keras.__version__} ({keras.backend.backend()})", "",
          "| epochs | test acc (last epoch) | test CE | best val acc seen | s/epoch (median) | first epoch s |",
          "|---|---|---|---|---|---|",
          f"| {recipe.epochs} | {final['accuracy']*100:.2f}% | {final['loss']:.4f} | "
          f"{result['best_val_accuracy_seen']*100:.2f}% | {result['epoch_seconds_median'] or 0:.2f} | "
          f"{result['epoch_seconds_first'] or 0:.1f} |", ""]
    tmp = os.path.join(args.out, name + ".md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(md))
    os.replace(tmp, os.path.join(args.out, name + ".md"))
    print("RESULT", json.dumps({k: result[k] for k in (
        "test_accuracy_last_epoch", "best_val_accuracy_seen", "epoch_seconds_median",
        "epoch_seconds_first", "fit_seconds")}), flush=True)


if __name__ == "__main__":
    main()
