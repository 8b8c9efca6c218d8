"""Reproduce (and beat) RemoteTrimmer's accuracy: train, prune, recalibrate, fine-tune.

For one dataset this trains the unpruned backbone twice (with SE gates for
CAP, plain for the baselines), prunes it with each criterion at each ratio,
re-estimates BatchNorm statistics, fine-tunes with the Adaptive Mining Loss
and with cross-entropy, and writes a results table (JSON + Markdown). Rows
are ``criterion+loss[+kd]``: ``+kd`` also distils from the row's unpruned
parent while fine-tuning (``--distill_weight``, ``--distill_temperature``);
``--round_to`` / ``--round_mode`` round the kept widths (default: published).
``--latency_twins=importance,macs`` adds, for every row and ratio, a twin
pruned instead to be no slower than that row's ratio model on LiteRT
(``target_latency_of``, ``--latency_dtype``, ``--latency_threads``, with that
search objective) and fine-tuned the same way: the accuracy of budget-pruned
widths at the published widths' measured latency. Jobs that time latency run
alone (nothing else runs beside them).

Every unit of work is a *job* run in its own process: some stages of the
CLI's pipeline (``remotetrimmer_tf.pipeline``) in the job's own run folder
``OUT/runs/<job>``: ``train-*`` runs the train stage, ``prune-*`` starts from
its parent's trained model (``--init_model``) and runs attention, fold (CAP),
prune and recalibrate, and ``finetune-*`` branches a copy of its prune job's
run folder and runs the finetune stage there (so several losses share one
pruned model). Independent jobs run in parallel (``--parallel``; on a GPU several small ResNet-18 jobs share the
card) and a rerun skips jobs whose result file exists (resume after a crash).
It runs on any Keras backend; the GPU path is ``KERAS_BACKEND=jax`` without
TensorFlow (data are decoded with Pillow by ``remotetrimmer_tf.data.load_numpy``).

Example (the command behind tools/results/reproduce/eurosat_resnet18_h200_60x30.md
is written at the top of that file; tools/results/reproduce/README.md lists
every table):

    KERAS_BACKEND=jax python tools/reproduce.py --dataset=eurosat \
        --data_dir=/tmp/data/eurosat --out=/tmp/repro --train_epochs=60 \
        --finetune_epochs=30 --ratios=0.7 --parallel=6
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np

from remotetrimmer_tf.choices import DTYPES, OBJECTIVES, ROUND_MODES  # keras-free
from remotetrimmer_tf.utils.files import atomic_path, write_json_atomic, write_text_atomic
from remotetrimmer_tf.utils.provenance import git_commit

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
                for objective in _twins(args):   # no slower than `prune`'s model
                    token = _token(ratio, objective)
                    twin = f"prune-{crit}-{token}-s{seed}"
                    jobs.setdefault(twin, [prune])
                    jobs[f"finetune-{crit}-{loss}-{token}-s{seed}"] = [twin]
    return jobs


def _twins(args):
    """The search objectives of ``--latency_twins`` (``[]``: none)."""
    out = [o for o in str(getattr(args, "latency_twins", "") or "").split(",") if o]
    bad = [o for o in out if o not in OBJECTIVES]
    if bad:
        raise SystemExit(f"--latency_twins: {bad[0]!r} is not one of {', '.join(OBJECTIVES)}")
    return out


def _token(ratio, twin=None):
    """A job name's ratio token: ``r0.7``, or ``r0.7+lat_macs`` for a latency twin."""
    return f"r{ratio}" + (f"+lat_{twin}" if twin else "")


def _variant(token):
    """``"r0.7"`` -> ``(0.7, None)``; ``"r0.7+lat_macs"`` -> ``(0.7, "macs")``."""
    ratio, _, twin = token.partition("+lat_")
    return float(ratio[1:]), (twin or None)


def _times_latency(name):
    """A job that times models on the runtime: it runs alone."""
    return name.startswith("prune-") and "+lat_" in name


def _startable(ready, running):
    """The ready jobs that may start now: none beside a latency search, and a
    latency search only once nothing else runs (then alone)."""
    timing = [n for n in ready if _times_latency(n)]
    if any(_times_latency(n) for n in running):
        return []
    if timing:
        return [] if running else timing[:1]
    return list(ready)


def _parent_job(crit, seed):
    """The training job whose model a criterion prunes (CAP needs the SE backbone)."""
    return f"train-{'se' if crit == 'cap' else 'plain'}-s{seed}"


def _seeds(args):
    return [int(s) for s in str(args.seeds).split(",") if s != ""]


def _ratios(args):
    return [r for r in str(args.ratios).split(",") if r]


def _paths(args, name):
    """(result JSON, pipeline run folder) of a job."""
    return (os.path.join(args.out, "jobs", name + ".json"),
            os.path.join(args.out, "runs", name))


def _write_json(path, obj):
    write_json_atomic(path, obj)


def _config(args, seed, se=None, crit=None, ratio=None, loss=None, twin=None,
            reference=None):
    """The pipeline config of a job (``configs/base.py`` schema); a latency twin
    (``twin`` = its search objective) prunes to be no slower than the
    ``reference`` model file instead of by the ratio.

    Both recipe sections are the tool's ``--recipe`` (as before: the same
    recipe trains and fine-tunes, with its own epochs, ``--finetune_lr`` and
    the row's loss); accuracies are measured on the test split, nothing is
    exported.
    """
    from remotetrimmer_tf.pipeline import config_base
    from remotetrimmer_tf.training import recipes
    cfg = config_base().get_config()
    cfg.name = f"reproduce-{args.dataset}-{args.arch}-{args.recipe}"
    cfg.deterministic = False            # seeded, but the fastest kernels (as before)
    cfg.data.name, cfg.data.data_dir, cfg.data.seed = args.dataset, args.data_dir, args.split_seed
    cfg.data.image_size = args.image_size or config_base().DATASET_IMAGE_SIZE.get(
        args.dataset, cfg.data.image_size)
    cfg.data.val_fraction = 0.0
    cfg.model.arch = args.arch
    cfg.model.se = bool(se if se is not None else crit == "cap")
    for section, phase in ((cfg.train, "train"), (cfg.finetune, "finetune")):
        for key, value in getattr(recipes, args.recipe)().items():
            section[key] = value
        section.epochs = args.train_epochs if phase == "train" else args.finetune_epochs
        section.seed = seed
        if args.batch_size:
            section.batch_size = args.batch_size
    cfg.train.loss = "ce"
    if args.finetune_lr:
        cfg.finetune.lr = args.finetune_lr
    cfg.attention.steps = args.attention_batches
    cfg.prune.importance = crit or "cap"
    cfg.prune.ratio = float(ratio) if ratio is not None else cfg.prune.ratio
    cfg.prune.scope, cfg.prune.seed = args.scope, seed
    cfg.prune.round_to, cfg.prune.round_mode = args.round_to, args.round_mode
    cfg.prune.steps = -(-512 // int(cfg.data.batch_size))   # taylor: ~512 images
    cfg.recalibrate.steps = args.recal_batches
    if loss:
        cfg.finetune.loss, _, kd = loss.partition("_")
        if kd:
            cfg.finetune.distill_weight = args.distill_weight
            cfg.finetune.distill_temperature = args.distill_temperature
    cfg.evaluate.split = "test"
    cfg.export.quantize = ()
    if twin:
        cfg.prune.target_latency_of = reference
        cfg.prune.dtype, cfg.prune.threads = args.latency_dtype, args.latency_threads
        cfg.prune.objective = twin
    return cfg


def _row_config(args, seed, crit, token, loss=None):
    """The config of a row's prune / fine-tune job at ratio token ``token``
    (``r0.7``, or a latency twin ``r0.7+lat_macs``: no slower than the
    model of that row's ``prune-<crit>-r0.7`` job; the fine-tune job carries
    the same prune settings, so the pipeline resumes after its prune stage)."""
    ratio, twin = _variant(token)
    reference = None
    if twin:
        published = f"prune-{crit}-{token.partition('+lat_')[0]}-s{seed}"
        reference = os.path.join(_paths(args, published)[1], "model_pruned.keras")
    return _config(args, seed, crit=crit, ratio=ratio, loss=loss, twin=twin,
                   reference=reference)


def _run_stages(args, name, cfg, stages, init_model=None):
    """Run ``stages`` of the pipeline in the job's run folder; its ledger."""
    from remotetrimmer_tf.pipeline import Workdir, run_pipeline
    folder = _paths(args, name)[1]
    run_pipeline(cfg, workdir=folder, init_model=init_model, stages=stages, resume=True,
                 verbose=2, log=lambda line: print(line, flush=True))
    return Workdir(folder)


def _metric(wd, stage, key="metrics"):
    return ((wd.entry(stage) or {}).get("info", {}).get(key) or {}).get("accuracy")


def _trained_model(args, crit, seed):
    return os.path.join(_paths(args, _parent_job(crit, seed))[1], "model_trained.keras")


def _data_job(args):
    """Check the data once (classes, every image) and count the splits."""
    from remotetrimmer_tf import data
    return {split: int(len(data.load_numpy(args.dataset, split, data_dir=args.data_dir,
                                           image_size=args.image_size,
                                           seed=args.split_seed)[1]))
            for split in ("train", "test")}


def run_job(args, name):
    """One job = some stages of the pipeline (``remotetrimmer_tf.pipeline``)
    in the job's run folder ``OUT/runs/<job>``; its result JSON summarizes
    the ledger."""
    import keras

    import remotetrimmer_tf as rt

    result_path, folder = _paths(args, name)
    start = time.time()
    if name == "data":
        _write_json(result_path, {"job": name, **_data_job(args)})
        return
    kind, rest = name.split("-", 1)
    seed = int(name.rsplit("-s", 1)[1])
    result = {"job": name, "seed": seed, "run_folder": folder}
    if kind == "train":
        cfg = _config(args, seed, se=rest.startswith("se"))
        wd = _run_stages(args, name, cfg, "train")
        result.update(epochs=cfg.train.epochs, accuracy=_metric(wd, "train"),
                      train_history=_last_values(wd, "train"))
    elif kind == "prune":
        crit, token = rest.split("-")[:2]
        twin = _variant(token)[1]
        cfg = _row_config(args, seed, crit, token)
        # train (= the parent's model, copied in), attention + fold (CAP), prune, recalibrate
        wd = _run_stages(args, name, cfg, "train,attention,fold,prune,recalibrate",
                         init_model=_trained_model(args, crit, seed))
        folded = keras.saving.load_model(os.path.join(folder, "model_folded.keras"))
        pruned = keras.saving.load_model(os.path.join(folder, "model_pruned.keras"))
        result.update(params=rt.count_params(pruned, trainable_only=True),
                      macs=rt.count_macs(pruned),
                      params_unpruned=rt.count_params(folded, trainable_only=True),
                      macs_unpruned=rt.count_macs(folded),
                      accuracy_pruned=_metric(wd, "prune"),
                      accuracy_recalibrated=(_metric(wd, "recalibrate")
                                             or _metric(wd, "prune")))
        if crit == "cap":
            result["accuracy_folded"] = _metric(wd, "fold")
        if twin:
            b = (wd.entry("prune") or {}).get("info", {}).get("budget") or {}
            result["latency"] = {k: b.get(k) for k in (
                "target", "measured_ms", "predicted_ms", "margin", "met", "margin_met",
                "dtype", "threads", "objective", "rounds", "search_s")}
    elif kind == "finetune":
        crit, loss_tag, ratio_s = rest.split("-")[:3]
        cfg = _row_config(args, seed, crit, ratio_s, loss=loss_tag)
        # the pruned run, branched for this loss
        branch_run_folder(_paths(args, f"prune-{crit}-{ratio_s}-s{seed}")[1], folder)
        wd = _run_stages(args, name, cfg, "finetune", init_model=_trained_model(args, crit, seed))
        model = keras.saving.load_model(os.path.join(folder, "model_finetuned.keras"))
        result.update(epochs=cfg.finetune.epochs, accuracy=_metric(wd, "finetune"),
                      params=rt.count_params(model, trainable_only=True),
                      train_history=_last_values(wd, "finetune"))
        if cfg.finetune.distill_weight > 0:
            result["distill"] = {"teacher": _parent_job(crit, seed),
                                 "weight": args.distill_weight,
                                 "temperature": args.distill_temperature}
    else:
        raise SystemExit(f"unknown job {name!r}")
    result["seconds"] = round(time.time() - start, 1)
    result["backend"] = keras.backend.backend()
    _write_json(result_path, result)


def branch_run_folder(source, folder):
    """A copy of the run folder ``source`` at ``folder`` (made once, atomically;
    without its lock, logs and superseded results): a later job resumes there
    after the stages ``source`` finished."""
    if not os.path.exists(folder):
        with atomic_path(folder) as tmp:
            shutil.copytree(source, tmp,
                            ignore=shutil.ignore_patterns(".lock", "logs", "superseded"))


def _last_values(wd, stage):
    """The last logged value of every training metric of ``stage``."""
    history = (wd.entry(stage) or {}).get("info", {}).get("history") or {}
    return {k: v for k, v in history.items() if k != "epochs_run"}


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
        ready = _startable(ready, running)
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
    for ratio, twin in [(r, t) for r in _ratios(args) for t in [None] + _twins(args)]:
        token = _token(ratio, twin)
        for crit, loss in rows:
            per_seed = []
            for seed in _seeds(args):
                base = load(_parent_job(crit, seed))
                prune = load(f"prune-{crit}-{token}-s{seed}")
                fine = load(f"finetune-{crit}-{loss}-{token}-s{seed}")
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
                    **({"latency": prune["latency"]} if prune.get("latency") else {}),
                })
            if per_seed:
                table.append({"ratio": float(ratio), "criterion": crit, "loss": loss,
                              "widths": (f"latency of r{ratio} ({twin})" if twin
                                         else "published"),
                              "backbone": f"{args.arch}{'+SE' if crit == 'cap' else ''}",
                              "seeds": per_seed})
    report = {"command": "python tools/reproduce.py " + " ".join(
                  a for a in args.argv if not a.startswith(("--job", "--summarize"))),
              "dataset": args.dataset, "arch": args.arch, "recipe": args.recipe,
              "image_size": args.image_size,
              "wall_seconds": None if wall is None else round(wall, 1),
              "hardware": _hardware(), "round_to": args.round_to,
              "round_mode": args.round_mode, "distill_weight": args.distill_weight,
              "distill_temperature": args.distill_temperature, "rows": table,
              "commit": git_commit()}
    _write_json(os.path.join(args.out, "results.json"), report)
    write_text_atomic(os.path.join(args.out, "results.md"), markdown(report))
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
             f"Commit: `{report.get('commit', 'not recorded')}`", "",
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
             "| ratio | widths | backbone | criterion | loss | params | MACs | unpruned | "
             "folded | pruned | +BN recal | fine-tuned | epochs | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes, seen = [], set()
    for row in report["rows"]:
        s = row["seeds"]
        lines.append(
            f"| {row['ratio']} | {row.get('widths', 'published')} | {row['backbone']} | "
            f"{row['criterion']} | {row['loss'].replace('_kd', ' + KD')} | "
            f"{_count([x['params'] for x in s])} | {_count([x['macs'] for x in s])} | "
            f"{_fmt([x['unpruned'] for x in s])} | {_fmt([x['folded'] for x in s])} | "
            f"{_fmt([x['pruned'] for x in s])} | {_fmt([x['recalibrated'] for x in s])} | "
            f"**{_fmt([x['finetuned'] for x in s])}** | "
            f"{s[0]['train_epochs']} + {s[0]['finetune_epochs']} | {len(s)} |")
        lat = [x["latency"] for x in s if x.get("latency")]
        note_key = (row.get("widths"), row["criterion"])
        if lat and note_key not in seen:
            seen.add(note_key)
            per_seed = ", ".join(
                "{:.4g} / {:.4g}{}".format(q["measured_ms"], q["target"],
                                           "" if q.get("margin_met", q.get("met"))
                                           else " (not under by the margin)")
                for q in lat)
            margins = ", ".join("{:.1f}%".format(100 * (q.get("margin") or 0)) for q in lat)
            notes.append(
                f"- {row['widths']}, {row['criterion']}: LiteRT {lat[0]['dtype']}, "
                f"{lat[0]['threads']} thread(s); per seed, measured in the search side by "
                f"side with the published-width model (ms, result / published): {per_seed}; "
                f"noise margin {margins}.")
    if notes:
        lines += ["", "Rows 'latency of rR (objective)' are pruned to be no slower than the "
                  "published widths at ratio R on the runtime (`target_latency_of`), then "
                  "fine-tuned the same way; params and MACs are means over seeds.", ""] + notes
    return "\n".join(lines) + "\n"


def _count(values):
    """A count, or the mean of counts that differ between seeds."""
    return f"{values[0]:,}" if len(set(values)) == 1 else f"{float(np.mean(values)):,.0f} (mean)"


def build_parser():
    """The tool's options (also the defaults tools/iterative_vs_oneshot.py
    builds its job configs from, through ``_config``)."""
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
    p.add_argument("--round_mode", default="up", choices=ROUND_MODES)
    p.add_argument("--seeds", default="0")
    p.add_argument("--attention_batches", type=int, default=100)
    p.add_argument("--recal_batches", type=int, default=100)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--job", default=None, help="run one job (internal)")
    p.add_argument("--latency_twins", default="",
                   help=f"search objectives ({','.join(OBJECTIVES)}): also prune every row "
                        "to be no slower on LiteRT than its ratio model, and fine-tune it")
    p.add_argument("--latency_dtype", default="int8", choices=list(DTYPES))
    p.add_argument("--latency_threads", type=int, default=1)
    p.add_argument("--summarize", action="store_true")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
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
