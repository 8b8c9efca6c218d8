"""CAP with inserted SE gates vs slim vs l1 on a keras.applications CNN.

For each seed the command-line tool (`python -m remotetrimmer_tf.prune`)
trains a gate-free keras.applications CNN (``--config.model.arch``) on a
dataset and prunes it with ``importance=cap`` (SE gates inserted after every
prunable BatchNorm, trained for ``--gate_epochs`` with the backbone frozen,
attention folded into the BNs); the same trained model is then pruned with
``slim`` and ``l1`` (``--init_model``), at the same ratio, and every pruned
model is recalibrated and fine-tuned with the same recipe. The table gives
mean ± std over the seeds of the test accuracy of each criterion.

Every run is a CLI call (its exact command is in the JSON); a rerun skips
finished runs (the pipeline resumes its run folders).

Example (the command behind tools/results/own_model_cap.md is at its top):

    python tools/own_model_cap.py --out=/tmp/own_cap --seeds=0,1,2 \
        --data_dir=/work/shared/data --train_epochs=30 --finetune_epochs=10
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from remotetrimmer_tf.utils.files import write_text_atomic  # noqa: E402 - keras-free
from remotetrimmer_tf.utils.provenance import git_commit  # noqa: E402
CRITERIA = ("cap", "slim", "l1")


def _flags(args, seed):
    return [
        f"--config={args.config}",
        f"--config.data.name={args.dataset}",
        f"--config.data.data_dir={args.data_dir}",
        f"--config.data.image_size={args.image_size}",
        f"--config.data.batch_size={args.batch_size}",
        f"--config.model.arch={args.arch}",
        "--config.model.se=False",
        f"--config.train.epochs={args.train_epochs}",
        f"--config.train.batch_size={args.batch_size}",
        f"--config.train.seed={seed}",
        f"--config.finetune.epochs={args.finetune_epochs}",
        f"--config.finetune.batch_size={args.batch_size}",
        f"--config.finetune.seed={seed}",
        f"--config.prune.ratio={args.ratio}",
        f"--config.prune.seed={seed}",
        f"--config.recalibrate.steps={args.recalibrate_steps}",
        f"--config.attention.gate_epochs={args.gate_epochs}",
        "--config.export.quantize=none", "--config.export.check=False",
        "--verbose=2",
    ]


def _run(cmd, log):
    t0 = time.time()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}); see {log}")
    return time.time() - t0


def _result(workdir):
    rep = json.loads((workdir / "report.json").read_text())
    models = rep["models"]
    return {"accuracy": rep["accuracy"].get("finetuned"),
            "pruned_accuracy": rep["accuracy"].get("pruned"),
            "recalibrated_accuracy": rep["accuracy"].get("recalibrated"),
            "trained_accuracy": rep["accuracy"].get("trained"),
            "params": models.get("finetuned", {}).get("params"),
            "macs": models.get("finetuned", {}).get("macs"),
            "params_before": (models.get("folded") or models.get("trained"))["params"],
            "macs_before": (models.get("folded") or models.get("trained"))["macs"],
            "test_samples": rep.get("evaluated_samples")}


def summarize(results):
    """``{criterion: {metric: (mean, std, n)}}`` over seeds."""
    out = {}
    for crit in CRITERIA:
        rows = [r for r in results if r["criterion"] == crit]
        if not rows:
            continue
        out[crit] = {}
        for k in ("accuracy", "recalibrated_accuracy", "params", "macs"):
            vals = np.array([r[k] for r in rows if r.get(k) is not None], float)
            out[crit][k] = (float(vals.mean()), float(vals.std(ddof=1))
                            if len(vals) > 1 else 0.0, int(len(vals)))
    return out


def markdown(args, results, command):
    s = summarize(results)
    lines = [f"<!-- {command} -->", "",
             f"# CAP with inserted SE gates vs slim vs l1 ({args.arch}, "
             f"{args.dataset} {args.image_size}x{args.image_size})", "",
             f"Command: `{command}`", "",
             f"Commit: `{git_commit()}`", "",
             f"Each seed trains a gate-free {args.arch} (weights=None) for "
             f"{args.train_epochs} epochs ({os.path.basename(args.config)}'s "
             f"recipe, batch {args.batch_size}); cap inserts SE gates after every "
             f"prunable BN and trains them {args.gate_epochs} epochs with the "
             "backbone frozen; every criterion prunes the same trained model "
             f"at local ratio {args.ratio}, recalibrates BN "
             f"({args.recalibrate_steps} steps) and fine-tunes "
             f"{args.finetune_epochs} epochs (AML). Test split accuracy, "
             f"mean ± std over seeds {sorted({r['seed'] for r in results})}.", "",
             "| criterion | seeds | accuracy after fine-tune | after prune + BN recalibration | params | MACs |",
             "|---|---:|---:|---:|---:|---:|"]
    for crit, m in s.items():
        a, p = m["accuracy"], m["recalibrated_accuracy"]
        lines.append(f"| {crit} | {a[2]} | {100 * a[0]:.2f} ± {100 * a[1]:.2f}% | "
                     f"{100 * p[0]:.2f} ± {100 * p[1]:.2f}% | {m['params'][0]:,.0f} | "
                     f"{m['macs'][0]:,.0f} |")
    if results:
        r0 = results[0]
        lines += ["", f"Unpruned: params {r0['params_before']:,}, MACs "
                  f"{r0['macs_before']:,}; trained accuracy per seed: "
                  + ", ".join(f"{100 * r['trained_accuracy']:.2f}%"
                              for r in results if r["criterion"] == "slim")]
    lines += ["", "## Per run", "",
              "| seed | criterion | accuracy | recalibrated | pruned (before recalibration) |",
              "|---:|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['seed']} | {r['criterion']} | {100 * r['accuracy']:.2f}% | "
                     f"{100 * r['recalibrated_accuracy']:.2f}% | "
                     f"{100 * r['pruned_accuracy']:.2f}% |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--config", default=str(REPO / "configs" / "ucmerced_resnet18_modern.py"),
                   help="config the runs start from (arch, sizes, epochs overridden)")
    p.add_argument("--dataset", default="uc_merced")
    p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--arch", default="MobileNetV2")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train_epochs", type=int, default=30)
    p.add_argument("--finetune_epochs", type=int, default=10)
    p.add_argument("--gate_epochs", type=int, default=3)
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--recalibrate_steps", type=int, default=20)
    p.add_argument("--results", default=str(REPO / "tools" / "results" / "own_model_cap"))
    p.add_argument("--summarize", action="store_true",
                   help="only tabulate the finished runs in --out (run nothing)")
    args = p.parse_args(argv)
    command = "python tools/own_model_cap.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:])
        if a != "--summarize")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    cli = [sys.executable, "-m", "remotetrimmer_tf.prune"]
    results = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        base = _flags(args, seed)
        for crit in CRITERIA:
            wd = out / f"s{seed}_{crit}"
            cmd = cli + base + [f"--config.prune.importance={crit}",
                                f"--workdir={wd}"]
            if crit != "cap":
                cmd.append(f"--init_model={out / f's{seed}_cap' / 'model_trained.keras'}")
            seconds = 0.0
            if not (wd / "report.json").exists():
                if args.summarize:
                    continue
                seconds = _run(cmd, log)
            r = _result(wd)
            r.update(seed=seed, criterion=crit, seconds=seconds,
                     command=" ".join(cmd))
            results.append(r)
            res = pathlib.Path(args.results)
            res.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(res.with_suffix(".json"), json.dumps(
                {"command": command, "commit": git_commit(), "results": results,
                 "summary": summarize(results)}, indent=2) + "\n")
            write_text_atomic(res.with_suffix(".md"), markdown(args, results, command))
            print(f"seed {seed} {crit}: accuracy {r['accuracy']:.4f} "
                  f"({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
