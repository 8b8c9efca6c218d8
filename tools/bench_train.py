"""Training speed on CPU: our ``training.fit`` vs plain ``model.fit`` vs PyTorch.

    TF_CPP_MIN_LOG_LEVEL=3 python tools/bench_train.py [--repeats 3] \
        [--models resnet18,pruned] [--precisions float32,mixed_bfloat16] \
        [--torch-python /tmp/torchvenv/bin/python] [--epochs 3]

Seconds per step (batch 64, 64x64 RGB, 10 classes) of, alternated in one run
(A B C A B C ...), every measurement in a fresh process:

- ``ours``: ``training.fit`` with the modern recipe (SGD Nesterov momentum,
  L2 5e-4, one-cycle, flips + rot90 augmentation on) on the tf.data pipeline
  of the embedded EuroSAT sample (``data.load``: decode, cache, shuffle,
  batch, normalise, prefetch), i.e. the input pipeline included; with
  ``precision`` = ``float32`` or ``mixed_bfloat16`` (recipe field);
- ``plain``: plain ``model.fit`` of the same Keras model on the same tf.data
  pipeline with the same augmentation mapped in tf.data, the same optimizer,
  schedule and cross-entropy, the L2 term as ``kernel_regularizer=L2(wd/2)``
  on the conv / dense kernels, same precision;
- ``torch``: the PyTorch reference step, fp32: the torchvision ResNet-18
  topology (7x7/2 stem, 3x3/2 max-pool, basic blocks, 1x1 shortcuts; written
  out below, with the channel widths of the Keras model so the pruned model is
  the same network), SGD momentum 0.9 Nesterov with weight decay 5e-4,
  cross-entropy, on in-memory tensors (no data loader: the compute-only step,
  the harder bar), with 1 and with 2 threads (``--torch-threads``; the
  reference is the faster: OpenMP's 2-thread barriers collapse when other
  processes hold the cores).

Models: the published ResNet-18 (``models.resnet18``, no SE) and the same
pruned at ratio 0.7 (``Pruner(model, importance="l1", ratio=0.7).prune()``).
Steady state: the first epoch (tracing, cache fill) is dropped, the per-step
time is the time of the next ``--epochs`` epochs divided by their steps
(the sample's 560 training images give 8 full batches of 64). For each
(model, variant) the table shows the minimum and the median over the repeats;
the machine may be shared, so the load average is recorded around every
measurement. Also: images/s of the input pipeline alone (the same tf.data
pipeline + augmentation, cached epochs, pulled to numpy).

PyTorch is optional and runs in its own virtualenv (it is not a dependency):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy

Without it the torch rows are skipped. Writes tools/results/train_speed.{json,md}
atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BATCH, SIZE, CLASSES = 64, 64, 10
CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16",
                         "amx_tile", "amx_int8", "avx_vnni")


# ------------------------------------------------------------------ TF workers
def _keras_model(kind):
    import remotetrimmer_tf as rt
    from remotetrimmer_tf.models import resnet18
    model = resnet18(CLASSES, (SIZE, SIZE, 3))
    if kind == "pruned":
        model = rt.Pruner(model, importance="l1", ratio=0.7).prune()
    return model


def _widths(model):
    """Channel widths of a (pruned) ResNet-18 by layer name, for the torch twin."""
    out = {"stem": int(model.get_layer("stem_conv").filters)}
    for s in range(1, 5):
        for b in (1, 2):
            p = f"stage{s}_block{b}"
            out[f"{p}_mid"] = int(model.get_layer(f"{p}_conv1").filters)
            out[f"{p}_out"] = int(model.get_layer(f"{p}_conv2").filters)
    return out


def _train_data():
    from remotetrimmer_tf import data
    return data.load("eurosat", "train", data_dir=data.sample_dir(), batch_size=BATCH,
                     image_size=SIZE, drop_remainder=True)


class _Clock:
    """Epoch wall times (Keras callback built lazily so torch workers need no Keras)."""

    @staticmethod
    def make():
        import keras

        class EpochClock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds, self.steps, self.cpu = [], [], []

            def on_epoch_begin(self, epoch, logs=None):
                self._t, self._c = time.perf_counter(), time.process_time()
                self.steps.append([])

            def on_train_batch_begin(self, batch, logs=None):
                self._tb = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.steps[-1].append(time.perf_counter() - self._tb)

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._t)
                self.cpu.append(time.process_time() - self._c)

        return EpochClock()


def worker_tf(variant, kind, precision, epochs):
    import keras
    from remotetrimmer_tf import training
    from remotetrimmer_tf.training import precision as precision_lib

    model = _keras_model(kind)
    train = _train_data()
    steps = int(train.cardinality())
    recipe = training.recipes.modern()
    recipe.epochs = 1 + epochs
    recipe.batch_size = BATCH
    clock = _Clock.make()
    if variant == "ours":
        recipe.precision = precision
        training.fit(model, train, recipe=recipe, callbacks=[clock], verbose=0)
    else:
        import tensorflow as tf
        model = _with_l2(model, float(recipe.weight_decay))
        if precision != "float32":
            model = precision_lib.with_policy(model, precision)
        aug = training.make_augment(recipe.augment, seed=int(recipe.seed))
        ds = train.map(lambda x, y: (aug(x, training=True), y),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
        opt = keras.optimizers.SGD(
            learning_rate=training.make_schedule(recipe, steps),
            momentum=float(recipe.momentum), nesterov=bool(recipe.nesterov))
        model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), metrics=["accuracy"])
        model.fit(ds, epochs=recipe.epochs, callbacks=[clock], verbose=0)
    return dict(_timings(clock.seconds, clock.cpu, clock.steps, steps),
                tf_threads=_tf_threads())


def _timings(seconds, cpu, step_seconds, steps):
    """Per-run figures from per-epoch wall / CPU seconds and per-step wall seconds
    (the first epoch, tracing and cache fill, is dropped)."""
    timed = seconds[1:]
    per_step = sorted(x for e in step_seconds[1:] for x in e)
    return {"ms_per_step": 1000.0 * sum(timed) / (steps * len(timed)),
            "step_median_ms": 1000.0 * statistics.median(per_step),
            "cpu_ms_per_step": 1000.0 * sum(cpu[1:]) / (steps * len(timed)),
            "epoch_seconds": [round(s, 3) for s in seconds],
            "epoch_cpu_seconds": [round(s, 3) for s in cpu], "steps_per_epoch": steps}


def _with_l2(model, weight_decay):
    """The plain-Keras way to the recipe's L2 term: a clone whose conv / dense
    kernels carry ``L2(weight_decay / 2)`` (= ``0.5 * wd * ||W||^2``)."""
    import keras

    def clone_layer(layer):
        config = layer.get_config()
        if "kernel_regularizer" in config:
            config["kernel_regularizer"] = keras.regularizers.L2(weight_decay / 2)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    for d, s in zip(clone.weights, model.weights):
        d.assign(s.value)
    return clone


def _tf_threads():
    import tensorflow as tf
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count()}


def worker_input(epochs):
    import tensorflow as tf
    from remotetrimmer_tf import training
    train = _train_data()
    aug = training.make_augment("flips_rot90", seed=0)
    ds = train.map(lambda x, y: (aug(x, training=True), y),
                   num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    rows = {}
    for name, d in (("pipeline", train), ("pipeline+augment", ds)):
        rates = []
        for ep in range(1 + epochs):
            t, n = time.perf_counter(), 0
            for x, _ in d.as_numpy_iterator():
                n += x.shape[0]
            if ep:  # epoch 0 decodes and fills the cache
                rates.append(n / (time.perf_counter() - t))
        rows[name] = round(max(rates), 1)
    return {"images_per_s": rows}


# --------------------------------------------------------------- torch worker
def worker_torch(widths, epochs, steps=8):
    import torch
    from torch import nn

    torch.manual_seed(0)

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)

    class Block(nn.Module):
        def __init__(self, cin, mid, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
            self.bn1 = bn(mid)
            self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
            self.bn2 = bn(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    class ResNet18(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, w["stem"], 7, 2, 3, bias=False),
                                      bn(w["stem"]), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, 1))
            blocks, cin = [], w["stem"]
            for s in range(1, 5):
                for b in (1, 2):
                    p = f"stage{s}_block{b}"
                    stride = 2 if (s > 1 and b == 1) else 1
                    blocks.append(Block(cin, w[f"{p}_mid"], w[f"{p}_out"], stride))
                    cin = w[f"{p}_out"]
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(cin, CLASSES)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    model = ResNet18(widths)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(steps, BATCH, 3, SIZE, SIZE)
    y = torch.randint(0, CLASSES, (steps, BATCH))
    model.train()

    seconds, cpu, step_seconds = [], [], []
    for _ in range(1 + epochs):
        t, c = time.perf_counter(), time.process_time()
        step_seconds.append([])
        for i in range(steps):
            ts = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[i]), y[i])
            loss.backward()
            opt.step()
            step_seconds[-1].append(time.perf_counter() - ts)
        seconds.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return dict(_timings(seconds, cpu, step_seconds, steps),
                torch=torch.__version__, torch_threads=torch.get_num_threads(),
                params=sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------- parent
def cpu_info():
    """Model name and the vector / matrix flags that matter for bf16."""
    name, flags = platform.processor() or "?", set()
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and name in ("?", "x86_64", ""):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": name, "cpus": os.cpu_count(),
            "flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags]}


def _spawn(python, args, env=None):
    cmd = [python, str(pathlib.Path(__file__).resolve())] + args
    load0 = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO))
    load1 = os.getloadavg()[0]
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    out["loadavg_1min"] = [round(load0, 2), round(load1, 2)]
    return out


def _tf_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


METRICS = ("ms_per_step", "step_median_ms", "cpu_ms_per_step")


def summarize(runs):
    """Minimum and median over the repeats of every metric, per (model, variant, precision)."""
    rows = {}
    for r in runs:
        rows.setdefault((r["model"], r["variant"], r["precision"]), []).append(r)
    out = []
    for (model, variant, precision), rs in rows.items():
        row = {"model": model, "variant": variant, "precision": precision, "n": len(rs)}
        for m in METRICS:
            v = [r[m] for r in rs]
            row[m] = {"min": round(min(v), 1), "median": round(statistics.median(v), 1),
                      "all": [round(x, 1) for x in v]}
        out.append(row)
    return out


def _torch_reference(summary, model):
    """The faster PyTorch thread setting per metric (the harder bar)."""
    rows = [r for r in summary if r["model"] == model and r["variant"] == "torch"]
    if not rows:
        return None
    return {m: {"min": min(r[m]["min"] for r in rows)} for m in METRICS}


def _ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def to_markdown(res):
    cpu = res["cpu"]
    lines = ["# Training speed on CPU", "", f"Command: `{res['command']}`", "",
             f"Commit: `{res.get('commit', 'not recorded')}`", "",
             f"CPU: {cpu['model']}, {cpu['cpus']} CPUs; flags: {', '.join(cpu['flags'])}; "
             f"{res['platform']}; TF {res['tensorflow']}, Keras {res['keras']}"
             + (f", PyTorch {res['torch']}"
                if res.get("torch") else ", PyTorch not installed (torch rows skipped)")
             + f"; TF threads {res['tf_threads']}.", "",
             f"Load: `uptime` at start `{res['uptime_start']}`, at end `{res['uptime_end']}` "
             "(the machine is shared; every measurement's 1-min load average is in the "
             f"JSON). {res['repeats']} repeats, alternated, each in a fresh process; "
             f"steady state = epochs 2-{res['epochs'] + 1} of one call, "
             f"{res['steps_per_epoch']} steps of 64 images each.", "",
             "- **wall**: wall seconds of the timed epochs / steps (min and median over "
             "the repeats); **step median**: the median single-step wall time of a run "
             "(min over the repeats); **CPU**: process CPU seconds (all threads, the "
             "input pipeline's included) per step (min over the repeats), the figure "
             "least disturbed by other load.",
             "- ratios: ours / PyTorch fp32 and ours / plain `model.fit` (same precision), "
             "each from the minima.", "",
             "| model | what | precision | wall min | wall median | step median | CPU "
             "| wall vs PyTorch | CPU vs PyTorch | wall vs plain | CPU vs plain |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by = {(r["model"], r["variant"], r["precision"]): r for r in res["summary"]}
    what = {"ours": "`training.fit`", "plain": "plain `model.fit`", "torch": "PyTorch"}
    for r in res["summary"]:
        ref = _torch_reference(res["summary"], r["model"])
        plain = by.get((r["model"], "plain", r["precision"]))
        w, c = r["ms_per_step"]["min"], r["cpu_ms_per_step"]["min"]
        cells = [r["model"], what[r["variant"]], r["precision"], w,
                 r["ms_per_step"]["median"], r["step_median_ms"]["min"], c]
        cells += ([_ratio(w, ref["ms_per_step"]["min"]),
                   _ratio(c, ref["cpu_ms_per_step"]["min"])]
                  if ref and r["variant"] != "torch" else ["-", "-"])
        cells += ([_ratio(w, plain["ms_per_step"]["min"]),
                   _ratio(c, plain["cpu_ms_per_step"]["min"])]
                  if plain and r["variant"] == "ours" else ["-", "-"])
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    lines += ["", "`training.fit`: the modern recipe (SGD Nesterov 0.9, L2 5e-4 on the "
              "kernels, one-cycle, flips + rot90 mapped into the tf.data input by fit, cross-entropy) "
              "on `data.load` of the EuroSAT sample (tf.data: cached, shuffled, batched, "
              "normalised, prefetched). Plain `model.fit`: the same model, optimizer, "
              "schedule and loss, the augmentation mapped in tf.data, the L2 term as "
              "`kernel_regularizer=L2(wd/2)`. "
              "PyTorch: the torchvision ResNet-18 topology with the same channel widths, "
              "SGD Nesterov 0.9 + weight decay 5e-4, fp32, NCHW, on in-memory tensors "
              "(no data loader)."]
    if res.get("input"):
        lines += ["", "Input pipeline alone (EuroSAT sample, cached epochs, batch 64, pulled "
                  "to numpy, best epoch): " + ", ".join(
                      f"{k} {v:,.0f} images/s" for k, v in res["input"]["images_per_s"].items())
                  + "."]
    lines.append("")
    return "\n".join(lines)


def _uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    p.add_argument("--models", default="resnet18,pruned")
    p.add_argument("--variants", default="ours,plain,torch")
    p.add_argument("--precisions", default="float32,mixed_bfloat16",
                   help="TF precisions (the torch reference is always float32)")
    p.add_argument("--torch-python", default="/tmp/torchvenv/bin/python")
    p.add_argument("--torch-threads", default="1,2")
    p.add_argument("--out", default=str(REPO / "tools" / "results"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default="resnet18", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--widths", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.worker:
        if a.worker == "torch":
            res = worker_torch(json.loads(a.widths), a.epochs)
        else:
            sys.path.insert(0, str(REPO))
            if a.worker == "widths":
                res = _widths(_keras_model(a.model))
            elif a.worker == "input":
                res = worker_input(a.epochs)
            else:
                res = worker_tf(a.worker, a.model, a.precision, a.epochs)
        print("RESULT " + json.dumps(res), flush=True)
        return

    argv_s = argv if argv is not None else sys.argv[1:]
    env = _tf_env()
    me = sys.executable
    torch_py = a.torch_python if a.torch_python and os.path.exists(a.torch_python) else None
    variants = [v for v in a.variants.split(",") if v != "torch" or torch_py]
    if "torch" in a.variants and not torch_py:
        print(f"bench_train: no PyTorch at {a.torch_python}; skipping the torch rows "
              "(python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy)")
    models = a.models.split(",")
    precisions = a.precisions.split(",")
    from remotetrimmer_tf.utils.provenance import git_commit
    res = {"command": ("TF_CPP_MIN_LOG_LEVEL=3 python tools/bench_train.py "
                       + " ".join(argv_s)).strip(), "commit": git_commit(),
           "cpu": cpu_info(), "platform": platform.platform(), "uptime_start": _uptime(),
           "repeats": a.repeats, "epochs": a.epochs, "runs": []}
    info = _spawn(me, ["--worker", "widths", "--model", "resnet18"], env)  # warm caches
    widths = {m: _spawn(me, ["--worker", "widths", "--model", m], env) for m in models}
    res["widths"] = widths
    del info
    res["input"] = _spawn(me, ["--worker", "input", "--epochs", str(a.epochs)], env)
    plan = []
    for m in models:
        for v in variants:
            if v == "torch":
                plan += [(m, v, f"float32 ({t} thr)") for t in a.torch_threads.split(",")]
            else:
                plan += [(m, v, prec) for prec in precisions]
    for rep in range(a.repeats):
        for m, v, prec in plan:
            if v == "torch":
                threads = prec.split("(")[1].split()[0]
                r = _spawn(torch_py, ["--worker", "torch", "--widths", json.dumps(widths[m]),
                                      "--epochs", str(a.epochs)],
                           dict(os.environ, OMP_NUM_THREADS=threads))
                res["torch"] = r["torch"]
            else:
                r = _spawn(me, ["--worker", v, "--model", m, "--precision", prec,
                                "--epochs", str(a.epochs)], env)
                res["tf_threads"] = r["tf_threads"]
            r.update(model=m, variant=v, precision=prec, repeat=rep)
            res["runs"].append(r)
            res["steps_per_epoch"] = r["steps_per_epoch"]
            print(f"rep {rep} {m:9s} {v:6s} {prec:15s} wall {r['ms_per_step']:7.1f} "
                  f"step-median {r['step_median_ms']:7.1f} cpu {r['cpu_ms_per_step']:7.1f} "
                  f"ms/step  load {r['loadavg_1min']}", flush=True)
        _write(res, a.out)   # after every repeat: a partial table survives an interrupted run


def _write(res, out):
    import keras
    import tensorflow as tf  # only for the version line
    res["summary"] = summarize(res["runs"])
    res["uptime_end"] = _uptime()
    res["tensorflow"], res["keras"] = tf.__version__, keras.__version__
    res.setdefault("tf_threads", None)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from remotetrimmer_tf.utils.files import write_text_atomic
    write_text_atomic(out / "train_speed.json", json.dumps(res, indent=2) + "\n")
    write_text_atomic(out / "train_speed.md", to_markdown(res))
    print(to_markdown(res), flush=True)


if __name__ == "__main__":
    main()
