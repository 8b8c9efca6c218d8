"""1 process vs N workers (`--strategy=multi_worker`) on this machine: wall
time, per-stage seconds, and whether the workers agreed.

    TF_CPP_MIN_LOG_LEVEL=3 python tools/bench_multi_worker.py --workers=1,2 \
        [--out=tools/results/multi_worker] [-- <extra CLI flags>]

For every count N the same CLI command (`python -m remotetrimmer_tf.prune`
with the embedded demo config and the extra flags) runs once: N=1 as one
plain process (`--strategy=default`), N>1 as N processes on loopback ports
(127.0.0.1) with `TF_CONFIG`, every worker running the same command. The
chief's run folder gives the stage seconds and accuracies; the workers' log
lines give the weight digests of each training stage (they must be equal).
The global batch is the config's batch in both cases, so N workers do the
same optimizer steps as one process, each on 1/N of every batch.

Writes `<out>.json` and `<out>.md` atomically, the exact command at the top.
On a machine with fewer cores than workers x threads the workers compete
for the same cores: the point of the numbers is that the run is correct
and what the coordination costs, not a speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_ports(n):
    """`n` free TCP ports on 127.0.0.1."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_once(n, extra, root, timeout):
    """Runs the CLI as 1 process (n=1) or n workers; returns a result row."""
    base = [sys.executable, "-m", "remotetrimmer_tf.prune",
            f"--workdir={root / 'run'}", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    ports = free_ports(n)
    procs, t0 = [], time.perf_counter()
    for i in range(n):
        penv = dict(env)
        args = list(base)
        if n > 1:
            penv["TF_CONFIG"] = json.dumps({
                "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                "task": {"type": "worker", "index": i}})
            args.append("--strategy=multi_worker")
        log = open(root / f"worker{i}.log", "w")
        procs.append((subprocess.Popen(args, cwd=root, env=penv, stdout=log,
                                       stderr=subprocess.STDOUT, text=True), log))
    walls, codes = [], []
    for p, log in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
        walls.append(round(time.perf_counter() - t0, 1))
        log.close()
    ledger = json.loads((root / "run" / "stages.json").read_text()) \
        if (root / "run" / "stages.json").exists() else {"stages": {}}
    stages = {k: v.get("seconds") for k, v in ledger["stages"].items()}
    digests = {}
    for i in range(n):
        for line in (root / f"worker{i}.log").read_text().splitlines():
            if "weights sha256" in line:
                stage = line.split(": ")[-1].split(" weights")[0]
                digests.setdefault(stage, []).append(line.rsplit(" ", 1)[1])
    failed = {i: (root / f"worker{i}.log").read_text()[-3000:]
              for i, code in enumerate(codes) if code}
    info = ledger["stages"].get("evaluate", {}).get("info", {})
    return {"workers": n, "exit_codes": codes, "wall_seconds": walls,
            "stage_seconds": stages,
            "train_epochs": ledger.get("config", {}).get("train", {}).get("epochs"),
            "finetune_epochs": ledger.get("config", {}).get("finetune", {}).get("epochs"),
            "finetuned_accuracy": info.get("metrics", {}).get("accuracy"),
            "weights_agree": {k: len(set(v)) == 1 and len(v) == n
                              for k, v in digests.items()} if n > 1 else None,
            **({"failed_log_tails": failed} if failed else {})}


def to_markdown(res):
    lines = [f"# 1 process vs several workers (`--strategy=multi_worker`) on one machine",
             "", "```", res["command"], "```", "",
             f"Commit: `{res.get('commit', 'not recorded')}`", "",
             f"Machine: {res['machine']} ({res['cpus']} CPUs, load average "
             f"{res['loadavg']} at the start); {res['date']}.", "",
             "| workers | exit codes | wall s (per process) | train s | finetune s | "
             "finetuned acc | workers' weights agree |",
             "|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        st = r["stage_seconds"]
        agree = ("-" if r["weights_agree"] is None else
                 ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in r["weights_agree"].items()))
        acc = r["finetuned_accuracy"]
        lines.append(f"| {r['workers']} | {r['exit_codes']} | {r['wall_seconds']} | "
                     f"{st.get('train', '-')} | {st.get('finetune', '-')} | "
                     f"{'-' if acc is None else f'{acc:.4f}'} | {agree} |")
    lines += ["", res["note"], ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--out", default=str(REPO / "tools" / "results" / "multi_worker"))
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("extra", nargs="*", help="extra CLI flags (after --)")
    args = parser.parse_args(argv)
    from remotetrimmer_tf.pipeline.workdir import Workdir
    command = "TF_CPP_MIN_LOG_LEVEL=3 python tools/bench_multi_worker.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    from remotetrimmer_tf.utils.provenance import git_commit
    res = {"command": command, "commit": git_commit(), "machine": f"{platform.system()} {platform.machine()}",
           "cpus": os.cpu_count(), "loadavg": round(os.getloadavg()[0], 2),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": [],
           "note": ("Global batch = the config's batch in every row (each of N "
                    "workers trains on batch/N samples per step). The workers "
                    "share this machine's cores, so N workers are not faster "
                    "here; the table shows the runs finish, agree, and what "
                    "coordination costs.")}
    for n in [int(v) for v in args.workers.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"bench-mw{n}-") as tmp:
            row = run_once(n, args.extra, pathlib.Path(tmp), args.timeout)
        print(json.dumps(row), flush=True)
        res["runs"].append(row)
    out = pathlib.Path(args.out)
    wd = Workdir(out.parent)
    wd.write_text(out.name + ".json", json.dumps(res, indent=2) + "\n")
    wd.write_text(out.name + ".md", to_markdown(res))
    bad = [r for r in res["runs"] if any(r["exit_codes"]) or
           (r["weights_agree"] and not all(r["weights_agree"].values()))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
