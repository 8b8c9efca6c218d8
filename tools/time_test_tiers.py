"""Times a test tier and writes the measurement into tools/results/test_tiers.md.

    python tools/time_test_tiers.py --tier fast --workers 2   # pytest -m "not slow" -n 2 tests
    python tools/time_test_tiers.py --tier full --workers 2   # pytest -n 2 tests (CI)

Records the wall time, the CPU time of pytest and every process it started
(user + system: what the tier costs, nearly independent of other load on a
shared machine), the load average before and after, the pass/fail counts,
and which modules of the package no pytest process (the main one or an
``-n`` worker) imported
(the command-line subprocesses import more). Appends one section per run,
with the command and commit at its top (utils.provenance).
"""
import argparse
import json
import os
import pathlib
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Every pytest process (the main one and each -n worker) writes the package
# modules it imported into its own file of the folder RT_TIER_MODULES.
PLUGIN = '''
import json, os, sys
def pytest_sessionfinish(session, exitstatus):
    names = sorted(m for m in sys.modules if m.startswith("remotetrimmer_tf"))
    path = os.path.join(os.environ["RT_TIER_MODULES"], f"modules-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump(names, f)
'''


def package_modules():
    out = []
    for path in sorted((ROOT / "remotetrimmer_tf").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def imported_modules(folder):
    """The union of the module lists the pytest processes wrote."""
    names = set()
    for path in pathlib.Path(folder).glob("modules-*.json"):
        names.update(json.loads(path.read_text()))
    return names


def run_tier(tier, extra=(), workers=0):
    args = [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
            "-p", "rt_tier_modules"]
    if tier == "fast":
        args[4:4] = ["-m", "not slow"]
    if workers:
        args += ["-n", str(workers), "--dist", "loadgroup"]
    args += list(extra)
    with tempfile.TemporaryDirectory() as tmp:
        (pathlib.Path(tmp) / "rt_tier_modules.py").write_text(PLUGIN)
        env = dict(os.environ, RT_TIER_MODULES=tmp,
                   TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=os.pathsep.join([str(ROOT), tmp,
                                               os.environ.get("PYTHONPATH", "")]))
        load0, t0 = os.getloadavg(), time.time()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, load1 = time.time() - t0, os.getloadavg()
        imported = imported_modules(tmp)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = [l for l in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", l)]
    return {"tier": tier, "command": shlex.join(["python"] + args[1:]), "wall_s": wall,
            "cpu_s": cpu, "load_before": load0, "load_after": load1,
            "returncode": proc.returncode, "summary": summary[-1] if summary else "",
            "not_imported": [m for m in package_modules() if m not in imported],
            "tail": proc.stdout[-3000:], "stdout": proc.stdout}


def write(result, out, argv):
    from remotetrimmer_tf.utils.files import write_text_atomic
    from remotetrimmer_tf.utils.provenance import results_header
    out = pathlib.Path(out)
    text = out.read_text() if out.exists() else (
        "# Test tiers: wall and CPU time\n\nEach section is one run of "
        "`tools/time_test_tiers.py`. CPU = user + system seconds of pytest and "
        "every process it started; on a shared machine the wall time depends on "
        "the other load (the load averages are given), the CPU time much less.\n")
    la = lambda v: ", ".join(f"{x:.1f}" for x in v)  # noqa: E731
    section = [
        "", f"## {result['tier']} tier, {time.strftime('%Y-%m-%d %H:%M')}", "",
        results_header(argv),
        f"Ran: `{result['command']}` (exit {result['returncode']}): "
        f"{result['summary'].strip('= ')}", "",
        f"- wall {result['wall_s'] / 60:.1f} min ({result['wall_s']:.0f} s); CPU "
        f"{result['cpu_s']:.0f} s (user + system, pytest and its subprocesses); "
        f"{os.cpu_count()} cores",
        f"- load average before: {la(result['load_before'])}; after: "
        f"{la(result['load_after'])}",
        f"- package modules no pytest process imported (CLI subprocesses "
        f"may): {', '.join(result['not_imported']) or 'none'}", ""]
    write_text_atomic(out, text + "\n".join(section))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", choices=("fast", "full"), required=True)
    ap.add_argument("--workers", type=int, default=0,
                    help="pytest-xdist worker processes (-n N --dist loadgroup: tests/conftest.py groups them); "
                    "0: one process")
    ap.add_argument("--out", default=str(ROOT / "tools/results/test_tiers.md"))
    ap.add_argument("--log", help="also write pytest's whole output here "
                    "(e.g. with --durations=0 after the tool's own flags)")
    args, extra = ap.parse_known_args(argv)
    result = run_tier(args.tier, extra, args.workers)
    if args.log:
        pathlib.Path(args.log).write_text(result["stdout"])
    write(result, args.out, [os.path.relpath(sys.argv[0], ROOT)]
          + list(sys.argv[1:] if argv is None else argv))
    print(result["summary"], f"wall {result['wall_s']:.0f} s, cpu {result['cpu_s']:.0f} s")
    if result["returncode"] != 0:
        print(result["tail"])
    return result["returncode"]


if __name__ == "__main__":
    sys.exit(main())
