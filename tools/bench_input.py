"""Input-pipeline throughput (images/s): tf.data (decode epoch, cached epochs) and load_numpy.

    TF_CPP_MIN_LOG_LEVEL=3 nice -n 10 python tools/bench_input.py \
        [--data-dir ../shared/data] [--datasets eurosat,uc_merced] [--epochs 3]

For each dataset's full train split (EuroSAT 18,900 at 64x64; UC Merced 1,470
at 256x256):
- tf.data ``load(...)``, batch 64, shuffle on: epoch 1 includes JPEG decode
  (and resize) and fills the in-memory cache; later epochs read the cache;
- ``load_numpy(...)`` (Pillow, thread pool), normalised float32.

Every batch is pulled to numpy (``as_numpy_iterator``), i.e. the cost a
training loop sees. Writes tools/results/input_pipeline.{json,md} atomically.
The numbers depend on the machine's load (recorded as loadavg).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bench_tf(name, data_dir, epochs, batch_size):
    from remotetrimmer_tf import data

    t0 = time.perf_counter()
    ds = data.load(name, "train", data_dir=data_dir, batch_size=batch_size)
    build = time.perf_counter() - t0
    rows = []
    for ep in range(epochs):
        t = time.perf_counter()
        n = 0
        for x, _ in ds.as_numpy_iterator():
            n += x.shape[0]
        dt = time.perf_counter() - t
        rows.append({"epoch": ep + 1, "images": n, "seconds": round(dt, 3),
                     "images_per_s": round(n / dt, 1),
                     "note": "decode + resize + cache fill" if ep == 0 else "from cache"})
    return {"build_seconds": round(build, 3), "epochs": rows,
            "image_size": int(x.shape[1])}


def bench_numpy(name, data_dir):
    from remotetrimmer_tf import data

    t = time.perf_counter()
    x, y = data.load_numpy(name, "train", data_dir=data_dir)
    dt = time.perf_counter() - t
    return {"images": int(len(y)), "seconds": round(dt, 3),
            "images_per_s": round(len(y) / dt, 1), "dtype": str(x.dtype),
            "shape": list(x.shape), "megabytes": round(x.nbytes / 1e6, 1)}


def best_of(runs):
    """Per dataset and row, the run with the highest images/s."""
    best = json.loads(json.dumps(runs[0]["datasets"]))
    for run in runs[1:]:
        for name, r in run["datasets"].items():
            for i, e in enumerate(r["tf_data"]["epochs"]):
                if e["images_per_s"] > best[name]["tf_data"]["epochs"][i]["images_per_s"]:
                    best[name]["tf_data"]["epochs"][i] = e
            if r["numpy"]["images_per_s"] > best[name]["numpy"]["images_per_s"]:
                best[name]["numpy"] = r["numpy"]
    return best


def write_atomic(path: pathlib.Path, text: str):
    from remotetrimmer_tf.utils.files import write_text_atomic
    write_text_atomic(path, text)


def to_markdown(res):
    lines = ["# Input-pipeline throughput", "",
             f"Command: `{res['command']}`", "",
             f"Commit: `{res.get('commit', 'not recorded')}`", "",
             f"Machine: {res['machine']['cpus']} CPUs, {res['machine']['platform']}, "
             f"TF {res['machine']['tensorflow']}; load average at start "
             f"{res['machine']['loadavg_start']}, at end {res['machine']['loadavg_end']} "
             f"(shared machine: numbers are lower bounds); best of "
             f"{len(res['runs'])} run(s) per row.", "",
             "| dataset | path | epoch | images | seconds | images/s |",
             "|---|---|---|---|---|---|"]
    for name, r in res["datasets"].items():
        for e in r["tf_data"]["epochs"]:
            lines.append(f"| {name} ({r['tf_data']['image_size']}px) | tf.data "
                         f"({e['note']}) | {e['epoch']} | {e['images']} | "
                         f"{e['seconds']} | {e['images_per_s']} |")
        n = r["numpy"]
        lines.append(f"| {name} | load_numpy (Pillow, float32) | - | {n['images']} | "
                     f"{n['seconds']} | {n['images_per_s']} |")
    lines += ["", "Batch 64, shuffle on, train split (70%). tf.data epoch 1 decodes the "
              "JPEGs (and resizes UC Merced to 256) and fills the uint8 cache; later "
              "epochs read the cache, batch, normalise and prefetch.", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)
    p.add_argument("--datasets", default="eurosat,uc_merced")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=1,
                   help="repeat the whole measurement; the table shows the best run "
                        "per row (the machine is shared), the JSON keeps every run")
    p.add_argument("--out", default=str(REPO / "tools" / "results"))
    a = p.parse_args(argv)
    import tensorflow as tf

    from remotetrimmer_tf.utils.provenance import git_commit
    res = {"commit": git_commit(), "command": ("TF_CPP_MIN_LOG_LEVEL=3 nice -n 10 python tools/bench_input.py "
                      + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "tensorflow": tf.__version__,
                       "loadavg_start": [round(v, 2) for v in os.getloadavg()]},
           "datasets": {}}
    runs = []
    for rep in range(a.repeats):
        run = {"loadavg_start": [round(v, 2) for v in os.getloadavg()], "datasets": {}}
        for name in a.datasets.split(","):
            run["datasets"][name] = {
                "tf_data": bench_tf(name, a.data_dir, a.epochs, a.batch_size),
                "numpy": bench_numpy(name, a.data_dir)}
            print(rep, name, json.dumps(run["datasets"][name]), flush=True)
        runs.append(run)
    res["runs"] = runs
    res["datasets"] = best_of(runs)
    res["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "input_pipeline.json", json.dumps(res, indent=2) + "\n")
    write_atomic(out / "input_pipeline.md", to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
