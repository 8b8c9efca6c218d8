"""Reproduce (and beat) RemoteTrimmer's accuracy: train, prune, recalibrate, fine-tune.

For one dataset this trains the unpruned backbone twice (with SE gates for
CAP, plain for the baselines), prunes it with each criterion at each ratio,
re-estimates BatchNorm statistics, fine-tunes with the Adaptive Mining Loss
and with cross-entropy, and writes a results table (JSON + Markdown). Rows
are ``criterion+loss[+kd]``: ``+kd`` also distils from the row's unpruned
parent while fine-tuning (``--distill_weight``, ``--distill_temperature``);
``--round_to`` / ``--round_mode`` round the kept widths (default: published).

Every unit of work is a *job* run in its own process, so independent jobs run
in parallel (``--parallel``; on a GPU several small ResNet-18 jobs share the
card) and a rerun skips jobs whose result file exists (resume after a crash).
It runs on any Keras backend; the GPU path is ``KERAS_BACKEND=jax`` without
TensorFlow (data are decoded with Pillow by ``remotetrimmer_tf.data.load_numpy``).

Example (the command behind tools/results/reproduce_eurosat.md is written at
the top of that file):

    KERAS_BACKEND=jax python tools/reproduce.py --dataset=eurosat \
        --data_dir=/tmp/data/eurosat --out=/tmp/repro --train_epochs=60 \
        --finetune_epochs=30 --ratios=0.7 --parallel=6
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROWS_DEFAULT = "cap+aml,cap+ce,slim+aml,slim+ce,l1+ce,random+ce"
# A row is criterion+loss[+kd]; "+kd" distills from the row's unpruned parent
# during fine-tuning (job and table loss "aml_kd" / "ce_kd").


def _rows(args):
    """``[(criterion, loss_tag)]`` from ``--rows``; loss_tag is e.g. "aml" or "aml_kd"."""
    rows = []
    for spec in str(args.rows).split(","):
        if not spec:
            continue
        parts = spec.split("+")
        if len(parts) not in (2, 3) or parts[1] not in ("aml", "ce") or \
                (len(parts) == 3 and parts[2] != "kd"):
            raise SystemExit(f"--rows: bad row {spec!r}; use criterion+loss[+kd] with "
                             "loss aml or ce, e.g. cap+aml,slim+ce+kd")
        rows.append((parts[0], parts[1] + ("_kd" if len(parts) == 3 else "")))
    return rows


# ----------------------------------------------------------------------------
# jobs


def _job_names(args):
    """All jobs with their dependencies, in an order that respects them."""
    jobs = {"data": []}
    rows = _rows(args)
    for seed in _seeds(args):
        need_se = any(crit == "cap" for crit, _ in rows)
        need_plain = any(crit != "cap" for crit, _ in rows)
        if need_se:
            jobs[f"train-se-s{seed}"] = ["data"]
        if need_plain:
            jobs[f"train-plain-s{seed}"] = ["data"]
        for ratio in _ratios(args):
            for crit, loss in rows:
                base = _parent_job(crit, seed)
                prune = f"prune-{crit}-r{ratio}-s{seed}"
                jobs.setdefault(prune, [base])
                jobs[f"finetune-{crit}-{loss}-r{ratio}-s{seed}"] = [prune]
    return jobs


def _parent_job(crit, seed):
    """The training job whose model a criterion prunes (CAP needs the SE backbone)."""
    return f"train-{'se' if crit == 'cap' else 'plain'}-s{seed}"


def _seeds(args):
    return [int(s) for s in str(args.seeds).split(",") if s != ""]


def _ratios(args):
    return [r for r in str(args.ratios).split(",") if r]


def _paths(args, name):
    return (os.path.join(args.out, "jobs", name + ".json"),
            os.path.join(args.out, "models", name + ".keras"))


def _write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _data(args):
    """Decode the split once into .npy files; later jobs memory-map them."""
    cache = os.path.join(args.out, "data")
    path = lambda split, k: os.path.join(cache, f"{split}_{k}.npy")  # noqa: E731
    if not all(os.path.exists(path(s, k)) for s in ("train", "test") for k in "xy"):
        from remotetrimmer_tf import data
        os.makedirs(cache, exist_ok=True)
        for split in ("train", "test"):
            x, y = data.load_numpy(args.dataset, split, data_dir=args.data_dir,
                                   image_size=args.image_size, seed=args.split_seed)
            for k, v in (("x", x.astype(np.float32)), ("y", y.astype(np.int32))):
                tmp = path(split, k) + ".tmp.npy"
                np.save(tmp, v)
                os.replace(tmp, path(split, k))
    return {s: (np.load(path(s, "x"), mmap_mode="r"), np.load(path(s, "y")))
            for s in ("train", "test")}


def _recipe(args, phase, seed):
    from remotetrimmer_tf.training import recipes
    recipe = getattr(recipes, args.recipe)()
    recipe.epochs = args.train_epochs if phase == "train" else args.finetune_epochs
    recipe.seed = seed
    if phase == "finetune" and args.finetune_lr:
        recipe.lr = args.finetune_lr
    if args.batch_size:
        recipe.batch_size = args.batch_size
    return recipe


def run_job(args, name):
    import keras

    import remotetrimmer_tf as rt
    from remotetrimmer_tf import training

    result_path, model_path = _paths(args, name)
    start = time.time()
    splits = _data(args)
    if name == "data":
        result = {k: int(len(v[1])) for k, v in splits.items()}
        _write_json(result_path, {"job": name, **result})
        return
    train, test = splits["train"], splits["test"]
    kind, rest = name.split("-", 1)
    seed = int(name.rsplit("-s", 1)[1])
    keras.utils.set_random_seed(seed)
    result = {"job": name, "seed": seed}
    if kind == "train":
        se = rest.startswith("se")
        build = getattr(rt.models, args.arch)
        model = build(num_classes=int(train[1].max()) + 1,
                      input_shape=train[0].shape[1:], se=se)
        recipe = _recipe(args, "train", seed)
        recipe.loss = "ce"
        history = training.fit(model, train, val=None, recipe=recipe, verbose=2)
        result["epochs"] = recipe.epochs
        result["accuracy"] = training.evaluate(model, test)["accuracy"]
        result["train_history"] = _last(history)
    elif kind == "prune":
        crit, ratio = rest.split("-")[0], float(rest.split("-")[1][1:])
        base = _parent_job(crit, seed)
        model = keras.saving.load_model(_paths(args, base)[1])
        kwargs = {}
        if crit == "cap":
            attention = rt.collect_attention(
                model, _batches(train[0], args.attention_batches))
            folded = rt.fold_attention(model, attention)
            result["accuracy_folded"] = training.evaluate(folded, test)["accuracy"]
            model = folded
            importance = "slim"  # |gamma'| = |gamma| * mean attention: CAP
        else:
            importance = crit
            if crit == "taylor":
                kwargs["data"] = (train[0][:512], train[1][:512])
        pruner = rt.Pruner(model, importance=importance, ratio=ratio,
                           scope=args.scope, seed=seed, round_to=args.round_to,
                           round_mode=args.round_mode)
        pruned = pruner.prune(**kwargs)
        result["params"] = rt.count_params(pruned)
        result["macs"] = rt.count_macs(pruned)
        result["params_unpruned"] = rt.count_params(model)
        result["macs_unpruned"] = rt.count_macs(model)
        result["accuracy_pruned"] = training.evaluate(pruned, test)["accuracy"]
        recal = rt.recalibrate_bn(pruned, _batches(train[0], args.recal_batches))
        result["accuracy_recalibrated"] = training.evaluate(recal, test)["accuracy"]
        model = recal
    elif kind == "finetune":
        crit, loss_tag, ratio_s = rest.split("-")[:3]
        loss, _, kd = loss_tag.partition("_")
        prune = f"prune-{crit}-{ratio_s}-s{seed}"
        model = keras.saving.load_model(_paths(args, prune)[1])
        recipe = _recipe(args, "finetune", seed)
        recipe.loss = loss
        teacher = None
        if kd:
            base = _parent_job(crit, seed)
            teacher = keras.saving.load_model(_paths(args, base)[1])
            recipe.distill_weight = args.distill_weight
            recipe.distill_temperature = args.distill_temperature
            result["distill"] = {"teacher": base, "weight": args.distill_weight,
                                 "temperature": args.distill_temperature}
        history = training.fit(model, train, val=None, recipe=recipe, verbose=2,
                               teacher=teacher)
        result["epochs"] = recipe.epochs
        result["accuracy"] = training.evaluate(model, test)["accuracy"]
        result["params"] = rt.count_params(model)
        result["train_history"] = _last(history)
    else:
        raise SystemExit(f"unknown job {name!r}")
    training.save_model_atomic(model, model_path)
    result["seconds"] = round(time.time() - start, 1)
    result["backend"] = keras.backend.backend()
    _write_json(result_path, result)


def _batches(x, n, batch_size=64):
    """First ``n`` batches of images, for attention and BN statistics."""
    return [x[i:i + batch_size] for i in range(0, min(len(x), n * batch_size),
                                               batch_size)]


def _last(history):
    hist = getattr(history, "history", history) or {}
    return {k: float(v[-1]) for k, v in hist.items() if len(v)}


# ----------------------------------------------------------------------------
# orchestration


def orchestrate(args):
    jobs = _job_names(args)
    done = lambda n: os.path.exists(_paths(args, n)[0])  # noqa: E731
    running = {}
    failed = set()
    t0 = time.time()
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    while True:
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                status = "ok" if proc.returncode == 0 else f"rc={proc.returncode}"
                print(f"[{time.time() - t0:7.1f}s] {name}: {status}", flush=True)
                if proc.returncode != 0:
                    failed.add(name)
                summarize(args, time.time() - t0, echo=False)  # partial table
        pending = [n for n in jobs if not done(n) and n not in running
                   and n not in failed
                   and not any(d in failed for d in jobs[n])]
        ready = [n for n in pending if all(done(d) for d in jobs[n])]
        limit = 1 if not done("data") else args.parallel
        for name in ready[: max(0, limit - len(running))]:
            env = dict(os.environ)
            if env.get("KERAS_BACKEND") == "jax":
                env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
            log = open(os.path.join(args.out, "logs", name + ".log"), "w")
            cmd = [sys.executable, os.path.abspath(__file__), "--job", name]
            cmd += [a for a in args.argv if not a.startswith("--job")]
            running[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                             env=env)
            print(f"[{time.time() - t0:7.1f}s] start {name}", flush=True)
        if not running and not [n for n in pending if all(done(d) for d in jobs[n])]:
            break
        time.sleep(1.0)
    summarize(args, time.time() - t0)
    if failed:
        print("failed jobs:", ", ".join(sorted(failed)), "(see", args.out + "/logs)")
        return 1
    return 0


def _hardware():
    import keras
    info = {"backend": keras.backend.backend(), "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "keras": keras.__version__}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            info["gpu"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def summarize(args, wall, echo=True):
    """Aggregate job results into results.json and results.md (mean ± std)."""
    def load(name):
        path = _paths(args, name)[0]
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        return None

    rows = _rows(args)
    table = []
    for ratio in _ratios(args):
        for crit, loss in rows:
            per_seed = []
            for seed in _seeds(args):
                base = load(_parent_job(crit, seed))
                prune = load(f"prune-{crit}-r{ratio}-s{seed}")
                fine = load(f"finetune-{crit}-{loss}-r{ratio}-s{seed}")
                if not (base and prune and fine):
                    continue
                per_seed.append({
                    "seed": seed,
                    "unpruned": base["accuracy"],
                    "folded": prune.get("accuracy_folded"),
                    "pruned": prune["accuracy_pruned"],
                    "recalibrated": prune["accuracy_recalibrated"],
                    "finetuned": fine["accuracy"],
                    "params": prune["params"], "macs": prune["macs"],
                    "params_unpruned": prune["params_unpruned"],
                    "macs_unpruned": prune["macs_unpruned"],
                    "train_epochs": base["epochs"], "finetune_epochs": fine["epochs"],
                    "seconds": base["seconds"] + prune["seconds"] + fine["seconds"],
                })
            if per_seed:
                table.append({"ratio": float(ratio), "criterion": crit, "loss": loss,
                              "backbone": f"{args.arch}{'+SE' if crit == 'cap' else ''}",
                              "seeds": per_seed})
    report = {"command": "python tools/reproduce.py " + " ".join(
                  a for a in args.argv if not a.startswith(("--job", "--summarize"))),
              "dataset": args.dataset, "arch": args.arch, "recipe": args.recipe,
              "image_size": args.image_size,
              "wall_seconds": None if wall is None else round(wall, 1),
              "hardware": _hardware(), "round_to": args.round_to,
              "round_mode": args.round_mode, "distill_weight": args.distill_weight,
              "distill_temperature": args.distill_temperature, "rows": table}
    _write_json(os.path.join(args.out, "results.json"), report)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(report))
    if echo:
        print(markdown(report))


def _fmt(values, pct=True):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    scale = 100.0 if pct else 1.0
    mean = float(np.mean(values)) * scale
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {float(np.std(values)) * scale:.2f}"


def markdown(report):
    lines = [f"# RemoteTrimmer reproduction: {report['dataset']}, {report['arch']}, "
             f"{report['recipe']} recipe", "",
             f"Command: `{report['command']}`", "",
             f"Hardware: {report['hardware']}; wall time "
             + (f"{report['wall_seconds']} s." if report["wall_seconds"] is not None
                else "not recorded (table rewritten with --summarize)."), "",
             "Test accuracy (%); mean ± std over seeds where several."
             + (f" Rows marked '+ KD' fine-tune with knowledge distillation from their "
                f"own unpruned parent (loss + {report.get('distill_weight')} × T² × KL, "
                f"T = {report.get('distill_temperature')})."
                if any(r["loss"].endswith("_kd") for r in report["rows"]) else "")
             + (f" Kept widths rounded {report.get('round_mode')} to multiples of "
                f"{report.get('round_to')} (not the published widths)."
                if (report.get("round_to") or 1) > 1 else ""), "",
             "| ratio | backbone | criterion | loss | params | MACs | unpruned | "
             "folded | pruned | +BN recal | fine-tuned | epochs | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        s = row["seeds"]
        lines.append(
            f"| {row['ratio']} | {row['backbone']} | {row['criterion']} | "
            f"{row['loss'].replace('_kd', ' + KD')} | "
            f"{s[0]['params']:,} | {s[0]['macs']:,} | "
            f"{_fmt([x['unpruned'] for x in s])} | {_fmt([x['folded'] for x in s])} | "
            f"{_fmt([x['pruned'] for x in s])} | {_fmt([x['recalibrated'] for x in s])} | "
            f"**{_fmt([x['finetuned'] for x in s])}** | "
            f"{s[0]['train_epochs']} + {s[0]['finetune_epochs']} | {len(s)} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="eurosat")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--split_seed", type=int, default=0)
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "vgg16_bn"])
    p.add_argument("--recipe", default="modern", choices=["modern", "published"])
    p.add_argument("--train_epochs", type=int, default=60)
    p.add_argument("--finetune_epochs", type=int, default=30)
    p.add_argument("--finetune_lr", type=float, default=None)
    p.add_argument("--distill_weight", type=float, default=1.0,
                   help="weight of T^2*KL(teacher || student) in '+kd' rows")
    p.add_argument("--distill_temperature", type=float, default=4.0)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--ratios", default="0.7")
    p.add_argument("--rows", default=ROWS_DEFAULT)
    p.add_argument("--scope", default="local")
    p.add_argument("--round_to", type=int, default=1,
                   help="round kept widths to multiples of this (1 = published)")
    p.add_argument("--round_mode", default="up", choices=["up", "down", "nearest"])
    p.add_argument("--seeds", default="0")
    p.add_argument("--attention_batches", type=int, default=100)
    p.add_argument("--recal_batches", type=int, default=100)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--job", default=None, help="run one job (internal)")
    p.add_argument("--summarize", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for jobs and reports
    if args.job:
        run_job(args, args.job)
        return 0
    if args.summarize:   # rewrite the table from finished jobs; no wall time
        summarize(args, None)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
