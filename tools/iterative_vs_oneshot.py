"""One-shot vs iterative pruning at equal total fine-tuning epochs.

Does pruning in k rounds with fine-tuning between (``--config.prune.rounds=k``,
Torch-Pruning's ``iterative_steps``) pay over one-shot pruning when both get
the same fine-tuning epochs in all? For every seed one parent is trained
(the train, attention and fold stages of the CLI's pipeline in
``OUT/runs/train-s<seed>``);
every schedule k of ``--rounds`` then branches a copy of that run folder
(``reproduce.branch_run_folder``, as reproduce.py's fine-tune jobs branch
their prune job) and runs the remaining stages with ``prune.rounds=k``:
``finetune.epochs`` = ``--finetune_epochs`` is split over the k rounds, and
every schedule ends at the one-shot model's size. The job configs are
tools/reproduce.py's (``reproduce._config``: its recipe, attention, BN
recalibration and seeds), with ``--criterion`` / ``--loss`` / ``--ratio``.

Writes ``--results``.md / .json (default tools/results/iterative_vs_oneshot):
the command and commit at the top, per schedule mean ± std over seeds of the
test accuracy, params, MACs and fine-tuning seconds, the paired difference to
one-shot per seed, and a one-line verdict computed from them. A rerun skips
the jobs whose result file exists in ``OUT/jobs`` (and the pipeline resumes a
killed job, per round).

Example (the measurement of issue 29; UC Merced at 64 px on CPU; 40 + 20
epochs as tools/results/reproduce/ucmerced_resnet18_cpu64_3seeds.md, whose
cap + aml row is the same one-shot job):

    python tools/iterative_vs_oneshot.py --data_dir=/work/shared/data/ucmerced \\
        --out=/tmp/ivo --train_epochs=40 --finetune_epochs=20 --seeds=0,1,2

A smoke run (two classes, one seed, bounded epochs; results kept out of
tools/results):

    python tools/iterative_vs_oneshot.py --data_dir=/work/shared/data/ucmerced \\
        --classes=agricultural,airplane --train_epochs=1 --finetune_epochs=3 \\
        --seeds=0 --rounds=1,3 --out=/tmp/ivo_smoke --results=/tmp/ivo_smoke/table
"""
import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
for _path in (str(HERE.parent), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import reproduce  # noqa: E402  (tools/reproduce.py: job configs, run folders)

from remotetrimmer_tf.utils.files import write_json_atomic, write_text_atomic  # noqa: E402
from remotetrimmer_tf.utils.provenance import provenance  # noqa: E402

DEFAULT_RESULTS = HERE / "results" / "iterative_vs_oneshot"


def parse(argv=None):
    """The options; ``args.job_args``: the namespace ``reproduce._config`` reads."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="uc_merced")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--classes", default=None,
                   help="comma list: only these classes of the dataset (read as a folder of "
                        "your own classes; for smoke runs)")
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "vgg16_bn"])
    p.add_argument("--recipe", default="modern", choices=["modern", "published"])
    p.add_argument("--criterion", default="cap")
    p.add_argument("--loss", default="aml", choices=["aml", "ce", "aml_kd", "ce_kd"],
                   help="fine-tuning loss; _kd also distils from the seed's parent")
    p.add_argument("--ratio", type=float, default=0.7)
    p.add_argument("--train_epochs", type=int, default=40)
    p.add_argument("--finetune_epochs", type=int, default=20,
                   help="TOTAL fine-tuning epochs of every schedule (split over its rounds)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", default="1,3,5", help="the schedules; 1 = one-shot")
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--steps_per_epoch", type=int, default=None,
                   help="bound every training epoch to this many batches (smoke runs)")
    p.add_argument("--out", required=True, help="work folder (run folders, job results)")
    p.add_argument("--results", default=str(DEFAULT_RESULTS),
                   help="results path without suffix (.md and .json are written)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.seed_list = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.round_list = [int(k) for k in str(args.rounds).split(",") if k.strip()]
    if not args.seed_list or not args.round_list or min(args.round_list) < 1:
        p.error("--seeds and --rounds need at least one value; rounds are integers >= 1")
    job_args = reproduce.build_parser().parse_args(["--out", args.out])
    for key in ("dataset", "data_dir", "image_size", "arch", "recipe", "train_epochs",
                "finetune_epochs", "batch_size"):
        setattr(job_args, key, getattr(args, key))
    args.job_args = job_args
    return args


def job_config(args, seed, rounds):
    """The pipeline config of a seed's parent / schedule (``prune.rounds``)."""
    cfg = reproduce._config(args.job_args, seed, crit=args.criterion, ratio=args.ratio,
                            loss=args.loss)
    cfg.name = f"iterative-{args.dataset}-{args.arch}-{args.recipe}"
    cfg.prune.rounds = int(rounds)
    if args.classes:
        from remotetrimmer_tf.data.folder import find_root
        cfg.data.name = "folder"
        cfg.data.data_dir = str(find_root(args.dataset, args.data_dir))
        cfg.data.classes = args.classes
    if args.steps_per_epoch:
        cfg.train.steps_per_epoch = cfg.finetune.steps_per_epoch = args.steps_per_epoch
    return cfg


def _job_path(args, name):
    return os.path.join(args.out, "jobs", name + ".json")


def run_train(args, seed):
    """The seed's parent: trained, its SE attention collected and folded
    (stages train, attention, fold: the same for every schedule)."""
    name = f"train-s{seed}"
    t0 = time.time()
    wd = reproduce._run_stages(args.job_args, name, job_config(args, seed, 1),
                               "train,attention,fold")
    info = (wd.entry("train") or {}).get("info") or {}
    return {"job": name, "seed": seed, "accuracy": (info.get("metrics") or {}).get("accuracy"),
            "train_seconds": info.get("train_seconds"), "seconds": round(time.time() - t0, 1)}


def run_schedule(args, seed, rounds):
    """A copy of the seed's parent run folder pruned in ``rounds`` rounds and
    fine-tuned (every stage after train)."""
    name = f"rounds{rounds}-s{seed}"
    reproduce.branch_run_folder(reproduce._paths(args.job_args, f"train-s{seed}")[1],
                                reproduce._paths(args.job_args, name)[1])
    t0 = time.time()
    wd = reproduce._run_stages(args.job_args, name, job_config(args, seed, rounds), None)
    return dict(schedule_result(wd.read_json("report.json"), rounds), job=name, seed=seed,
                seconds=round(time.time() - t0, 1))


def schedule_result(rep, rounds):
    """What the table needs of one schedule's report.json."""
    per_round = rep.get("rounds") or []
    finetune = (rep.get("stages") or {}).get("finetune") or {}
    seconds = ([r.get("finetune_seconds") or 0.0 for r in per_round] if per_round
               else [finetune.get("train_seconds") or 0.0])
    timings = rep.get("timings_s") or {}
    final = rep["models"]["finetuned"]
    return {"rounds": rounds, "accuracy": rep["accuracy"].get("finetuned"),
            "params": final["params"], "macs": final["macs"],
            "params_unpruned": rep["models"]["folded"]["params"],
            "macs_unpruned": rep["models"]["folded"]["macs"],
            "epochs": [r.get("epochs") for r in per_round] or [finetune.get("epochs")],
            "finetune_seconds": round(float(sum(seconds)), 2),
            "prune_to_finetune_seconds": round(sum(timings.get(s) or 0.0 for s in (
                "prune", "recalibrate", "finetune")), 2),
            "per_round": [{k: r.get(k) for k in ("round", "params", "macs", "accuracy_pruned",
                                                 "accuracy", "epochs")} for r in per_round]}


def run_all(args):
    """Every job not finished yet (parent first), then the table."""
    for seed in args.seed_list:
        jobs = [(f"train-s{seed}", lambda s=seed: run_train(args, s))]
        jobs += [(f"rounds{k}-s{seed}", lambda s=seed, k=k: run_schedule(args, s, k))
                 for k in args.round_list]
        for name, job in jobs:
            path = _job_path(args, name)
            if os.path.exists(path):
                print(f"[iterative_vs_oneshot] {name}: finished earlier", flush=True)
                continue
            print(f"[iterative_vs_oneshot] {name}: running", flush=True)
            write_json_atomic(path, job())
    return summarize(args)


def _load(args, name):
    path = _job_path(args, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _stats(values):
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def summarize(args):
    """results .json / .md from the job files; returns the report dict."""
    parents = {s: _load(args, f"train-s{s}") for s in args.seed_list}
    found = {(k, s): _load(args, f"rounds{k}-s{s}")
             for k in args.round_list for s in args.seed_list}
    rows = [_row(k, [found[(k, s)] for s in args.seed_list if found[(k, s)]],
                 {s: found.get((1, s)) for s in args.seed_list}) for k in args.round_list]
    rows = [r for r in rows if r]
    report = {**provenance(["tools/iterative_vs_oneshot.py"] + args.argv),
              "settings": {k: getattr(args, k) for k in (
                  "dataset", "image_size", "classes", "arch", "recipe", "criterion", "loss",
                  "ratio", "train_epochs", "finetune_epochs", "seeds", "rounds",
                  "batch_size", "steps_per_epoch")},
              "hardware": reproduce._hardware(),
              "parents": {str(s): p for s, p in parents.items() if p}, "schedules": rows}
    report["verdict"] = verdict(rows)
    write_json_atomic(args.results + ".json", report)
    write_text_atomic(args.results + ".md", markdown(report))
    print(markdown(report))
    return report


def _row(k, seeds, one_shot):
    """One schedule over its seeds, with the paired difference to one-shot."""
    if not seeds:
        return None
    diffs = [100 * (r["accuracy"] - one_shot[r["seed"]]["accuracy"]) for r in seeds
             if k != 1 and one_shot.get(r["seed"]) and r["accuracy"] is not None]
    return {"rounds": k, "seeds": [r["seed"] for r in seeds],
            "epochs_per_round": seeds[0]["epochs"],
            **{key: _stats([r[key] for r in seeds]) for key in (
                "accuracy", "params", "macs", "finetune_seconds",
                "prune_to_finetune_seconds")},
            "vs_one_shot_points": _stats(diffs), "jobs": seeds}


def verdict(rows):
    """One line from the numbers: per schedule the paired gain over one-shot
    (points, mean ± std over seeds) and whether it exceeds the seed-to-seed
    std of the accuracies of both schedules."""
    base = next((r for r in rows if r["rounds"] == 1), None)
    parts = []
    for r in rows:
        d = r.get("vs_one_shot_points")
        if r["rounds"] == 1 or not d or base is None:
            continue
        spread = 100 * max(r["accuracy"]["std"], base["accuracy"]["std"])
        if d["n"] < 2:
            judged = "1 seed: no seed spread to compare with"
        else:
            judged = ("exceeds" if abs(d["mean"]) > spread else "within") + \
                f" the seed std ({spread:.1f})"
        parts.append(f"{r['rounds']} rounds: {d['mean']:+.1f} ± {d['std']:.1f} points vs "
                     f"one-shot ({judged})")
    if not parts:
        return "no comparison: one-shot and an iterative schedule are both needed"
    return "; ".join(parts) + " — at equal total fine-tuning epochs and final size."


def _pm(s, scale=1.0, fmt="{:.2f}"):
    if not s:
        return "—"
    text = fmt.format(s["mean"] * scale)
    spread = fmt.replace("+", "").format(s["std"] * scale)   # a spread has no sign
    return text if s["n"] == 1 else f"{text} ± {spread}"


def markdown(report):
    st = report["settings"]
    data = f"{st['dataset']} at {st['image_size']} px" + (
        f", classes {st['classes']}" if st.get("classes") else "")
    lines = ["# One-shot vs iterative pruning at equal fine-tuning epochs", "",
             f"Command: `{report['command']}`", "", f"Commit: `{report['commit']}`", "",
             f"Hardware: {report['hardware']}.", "",
             f"{data}; {st['arch']} ({st['recipe']} recipe; training epochs: "
             f"{st['train_epochs']}, one parent per seed shared by its schedules); criterion "
             f"{st['criterion']}, ratio {st['ratio']}, fine-tuning loss {st['loss']}, "
             f"{st['finetune_epochs']} fine-tuning epochs IN ALL per schedule (split over "
             "its rounds; BN recalibration after every prune). Every schedule ends at the "
             "one-shot model's size. Test accuracy (%), mean ± std over seeds; Δ = paired "
             "difference to one-shot of the same seed (points).", "",
             "| schedule | epochs per round | params | MACs | accuracy | Δ vs one-shot | "
             "fine-tune s | prune→finetune s | seeds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["schedules"]:
        name = "one-shot" if r["rounds"] == 1 else f"{r['rounds']} rounds"
        lines.append(
            f"| {name} | {', '.join(str(e) for e in r['epochs_per_round'])} | "
            f"{_pm(r['params'], fmt='{:,.0f}')} | {_pm(r['macs'], fmt='{:,.0f}')} | "
            f"**{_pm(r['accuracy'], 100)}** | {_pm(r['vs_one_shot_points'], fmt='{:+.2f}')} | "
            f"{_pm(r['finetune_seconds'], fmt='{:.1f}')} | "
            f"{_pm(r['prune_to_finetune_seconds'], fmt='{:.1f}')} | "
            f"{','.join(str(s) for s in r['seeds'])} |")
    parents = [p["accuracy"] for p in report["parents"].values() if p.get("accuracy") is not None]
    if parents:
        lines += ["", f"Unpruned parents: {_pm(_stats(parents), 100)} % test accuracy."]
    lines += ["", f"**Verdict:** {report['verdict']}", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse(argv)
    os.makedirs(os.path.join(args.out, "jobs"), exist_ok=True)
    run_all(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
