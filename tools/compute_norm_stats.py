"""Per-channel mean/std (on 0..1) of a dataset's train split, for the registry.

    python tools/compute_norm_stats.py uc_merced [--data-dir ../shared/data] [--seed 0]
    python tools/compute_norm_stats.py eurosat

Decodes the train split with `load_numpy(..., normalize=False)` (Pillow, no
TensorFlow) at the dataset's default image size and prints the numbers that
go into `remotetrimmer_tf/data/registry.py` (std is the population std over
all pixels of the split).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from remotetrimmer_tf.data import load_numpy  # noqa: E402


def stats(name, data_dir=None, seed=0):
    x, _ = load_numpy(name, "train", data_dir=data_dir, seed=seed, normalize=False)
    n = x.shape[0] * x.shape[1] * x.shape[2]
    s1 = np.zeros(3, np.float64)
    s2 = np.zeros(3, np.float64)
    for i in range(0, len(x), 512):
        b = x[i:i + 512].astype(np.float64) / 255.0
        s1 += b.sum((0, 1, 2))
        s2 += (b * b).sum((0, 1, 2))
    mean = s1 / n
    std = np.sqrt(s2 / n - mean ** 2)
    return {"dataset": name, "split": "train", "seed": seed, "images": int(len(x)),
            "image_size": int(x.shape[1]), "mean": [round(float(v), 4) for v in mean],
            "std": [round(float(v), 4) for v in std]}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(json.dumps(stats(a.name, a.data_dir, a.seed)))


if __name__ == "__main__":
    main()
