"""Record the plans of tests/plan_cases.py into tests/data/plan_recording.json.

Run once on the code whose behaviour is the reference (it was run on main
4907e7f, before the planning layer was split out of the Pruner):

    PYTHONPATH=$PWD python tools/record_plans.py [--only NAME,...]

tests/test_plan_equivalence.py replays every case and compares.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
import plan_cases  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated case names (merged in)")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(plan_cases.CASES)
    out = {}
    if args.only and plan_cases.RECORDING.exists():
        out = json.loads(plan_cases.RECORDING.read_text())["cases"]
    built = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            t0 = time.perf_counter()
            out[name] = plan_cases.run_case(name, tmp, built)
            print(f"{name}: {plan_cases.digest(out[name])} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    from remotetrimmer_tf.utils.files import write_text_atomic
    from remotetrimmer_tf.utils.provenance import git_commit
    text = json.dumps({"command": "python tools/record_plans.py " + " ".join(argv or sys.argv[1:]),
                       "commit": git_commit(), "cases": dict(sorted(out.items()))},
                      indent=0, sort_keys=True)
    write_text_atomic(str(plan_cases.RECORDING), text + "\n")


if __name__ == "__main__":
    main()
