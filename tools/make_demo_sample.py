"""Builds the embedded EuroSAT demo sample (deterministic, byte-for-byte copies).

    python tools/make_demo_sample.py [--src ../shared/data/eurosat/2750] [--per-class 80]

Selection: per class, the sorted file names are permuted with
``numpy.random.RandomState([seed, crc32(class)])`` (seed 2025) and the first
``per_class`` are copied unchanged into
``remotetrimmer_tf/assets/eurosat_sample/2750/<Class>/``. The split used by
``load(..., data_dir=sample_dir())`` is the library's usual 70/30 split of
those files (56 / 24 per class). A MANIFEST.txt with the sha256 of every file is
written next to them. Existing sample files are never overwritten: the script
refuses to run when the target folder exists (delete it first to rebuild).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import shutil
import sys
import zlib

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from remotetrimmer_tf.data.registry import EUROSAT  # noqa: E402

ATTRIBUTION = """# EuroSAT demo sample — attribution

This folder holds {n} JPEG images ({per} per class, 10 classes) of **EuroSAT RGB**,
copied byte-for-byte from the official release (`EuroSAT.zip`, folder `2750/`).
They were selected deterministically by `tools/make_demo_sample.py`
(seed {seed}; see MANIFEST.txt for every file's sha256).

- Dataset: EuroSAT (RGB), Sentinel-2 imagery, 64x64 px, 10 land-use classes.
- Homepage: https://github.com/phelber/eurosat
- License: MIT, as published in https://github.com/phelber/EuroSAT (LICENSE,
  reproduced in full in the file LICENSE next to this one).
- Cite: P. Helber, B. Bischke, A. Dengel, D. Borth, "EuroSAT: A Novel Dataset
  and Deep Learning Benchmark for Land Use and Land Cover Classification",
  IEEE Journal of Selected Topics in Applied Earth Observations and Remote
  Sensing, 2019. Also: "Introducing EuroSAT: A Novel Dataset and Deep Learning
  Benchmark for Land Use and Land Cover Classification", IGARSS 2018.
- Contains modified Copernicus Sentinel data (Sentinel-2), subject to the
  Copernicus open data terms.

Use: `remotetrimmer_tf.data.load("eurosat", "train", data_dir=remotetrimmer_tf.data.sample_dir())`.
It is a demo: accuracy on {n} images says little about the full benchmark.
"""


LICENSE = """MIT License

Copyright (c) 2023 Patrick Helber

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def select(src: pathlib.Path, per_class: int, seed: int) -> list:
    chosen = []
    for cls in EUROSAT.class_names:
        names = sorted(n for n in os.listdir(src / cls) if n.lower().endswith(".jpg"))
        if len(names) < per_class:
            raise ValueError(f"{src / cls}: only {len(names)} images, need {per_class}")
        rng = np.random.RandomState([seed, zlib.crc32(cls.encode())])
        idx = np.sort(rng.permutation(len(names))[:per_class])
        chosen.extend(f"{cls}/{names[i]}" for i in idx)
    return chosen


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=str(REPO.parent / "shared" / "data" / "eurosat" / "2750"))
    p.add_argument("--dst", default=str(REPO / "remotetrimmer_tf" / "assets" / "eurosat_sample"))
    p.add_argument("--per-class", type=int, default=80)
    p.add_argument("--seed", type=int, default=2025)
    args = p.parse_args(argv)
    src, dst = pathlib.Path(args.src), pathlib.Path(args.dst)
    if dst.exists():
        raise SystemExit(f"{dst} exists; refusing to overwrite (delete it to rebuild)")
    files = select(src, args.per_class, args.seed)
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    lines = []
    for rel in files:
        out = tmp / "2750" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, out)
        lines.append(f"{hashlib.sha256(out.read_bytes()).hexdigest()}  2750/{rel}")
    (tmp / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
    (tmp / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(
        n=len(files), per=args.per_class, seed=args.seed))
    (tmp / "LICENSE").write_text(LICENSE)
    os.replace(tmp, dst)
    total = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"wrote {len(files)} images ({total / 1e6:.2f} MB) to {dst}")


if __name__ == "__main__":
    main()
