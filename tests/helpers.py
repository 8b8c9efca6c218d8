"""Helpers shared by the test files (import them: ``from helpers import cli``).

The fixtures built from them (``assets``, ``tiny_run``, ``tiny_run_copy``)
live in ``tests/conftest.py``; no test file imports from another test file.

- `cli` runs ``python -m remotetrimmer_tf.prune`` in a subprocess (`env`:
  this checkout first on the path, TensorFlow's C++ logs off, no GPU).
- `make_eurosat_folder` / `save_tiny_se_model` / `tiny_args`: the tiny
  10-class EuroSAT-layout folder (32x32 JPEGs) and SE model a CLI run
  finishes on in seconds, and the flags that keep it small.
- `make_class_folder`: a tiny folder of your own classes (16x16 PNGs).
- `stderr_lines`, `one_error_line`: what a bad input must print (exit 2,
  one ``error:`` line naming the flag and the fix, no traceback).
- `fast_first`: a parametrized sweep whose first cases run in the fast tier
  and the rest only in the full suite (``slow``).
- `load_tool`: a module of ``tools/`` (a model zoo, a benchmark) by name.
"""
import hashlib
import importlib.util
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway",
           "Industrial", "Pasture", "PermanentCrop", "Residential", "River",
           "SeaLake")
ARTIFACTS = ("model_trained.keras", "attention.npz", "model_folded.keras",
             "model_pruned.keras", "kept.json", "model_recalibrated.keras",
             "model_finetuned.keras", "metrics.json", "model.tflite",
             "report.json", "report.md", "stages.json")
OWN_CLASSES = ("dunes", "fields", "lakes")


def fast_first(values, keep=1):
    """``values`` for ``pytest.mark.parametrize``: the first ``keep`` stay in
    the fast tier, the others are marked ``slow`` (a sweep over many models
    keeps one case in ``-m "not slow"`` and all of them in the full suite)."""
    import pytest
    return [v if i < keep else pytest.param(v, marks=pytest.mark.slow)
            for i, v in enumerate(values)]


def load_tool(name):
    """``tools/<name>.py`` imported as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def env():
    """The environment of a CLI subprocess."""
    out = dict(os.environ)
    out["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    out.setdefault("CUDA_VISIBLE_DEVICES", "")
    return out


def cli(*args, cwd, timeout=300):
    """Runs the CLI; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "remotetrimmer_tf.prune", *map(str, args)],
        cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def stderr_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.strip()]


def one_error_line(proc, *needles, code=2):
    """Exit ``code``, exactly one stderr line, no traceback, every needle in it."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    lines = stderr_lines(proc)
    assert len(lines) == 1, lines
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def bad_exit(proc, *words):
    """Exit 2 with one ``error:`` line naming every word (progress lines of
    stages that ran before may precede it), no traceback."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def make_eurosat_folder(root, per_class=6, size=32, prefix=""):
    """``root/2750/<class>/<prefix><class>_<k>.jpg``: a tiny EuroSAT-layout
    folder (a prefix keeps the names apart from the embedded sample's)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for i, cls in enumerate(CLASSES):
        d = pathlib.Path(root) / "2750" / cls
        d.mkdir(parents=True)
        for k in range(per_class):
            img = (rng.random((size, size, 3)) * 60 + i * 20).astype(np.uint8)
            Image.fromarray(img).save(d / f"{prefix}{cls}_{k}.jpg")
    return pathlib.Path(root)


def save_keras_quietly(model, path):
    """``model.save(path)`` without numpy's deprecation noise; returns path."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        model.save(path)
    return path


def save_tiny_se_model(path, size=32, classes=10):
    """conv-BN-ReLU-SE twice, GAP, Dense: CAP works on it in seconds."""
    import keras
    from remotetrimmer_tf.models import SqueezeExcite
    L = keras.layers
    x = keras.Input((size, size, 3))
    h = L.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(x)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(name="r1")(h)
    h = SqueezeExcite(reduction=4, name="se1")(h)
    h = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="c2")(h)
    h = L.BatchNormalization(name="bn2")(h)
    h = L.ReLU(name="r2")(h)
    h = SqueezeExcite(reduction=4, name="se2")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    y = L.Dense(classes, name="fc")(h)
    return save_keras_quietly(keras.Model(x, y, name="tiny"), path)


def tiny_args(assets, workdir, *extra):
    """Flags of a full CLI run on the tiny folder and model (seconds)."""
    return [f"--init_model={assets['model']}", f"--workdir={workdir}",
            f"--config.data.data_dir={assets['data']}",
            "--config.data.image_size=32", "--config.data.batch_size=16",
            "--config.finetune.epochs=1", "--config.finetune.batch_size=16",
            "--config.recalibrate.steps=2",
            "--config.export.representative_steps=1",
            "--config.export.check_samples=16", "--config.export.quantize=none",
            "--verbose=0", *extra]


def make_class_folder(root, classes=OWN_CLASSES, n=6):
    """``root/<class>/*.png`` (16x16; one grey and one RGBA image per class)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for i, cls in enumerate(classes):
        d = pathlib.Path(root) / cls
        d.mkdir(parents=True)
        for k in range(n):
            img = (rng.random((16, 16, 3)) * 50 + i * 70).astype(np.uint8)
            mode = "L" if k == 0 else ("RGBA" if k == 1 else "RGB")
            Image.fromarray(img).convert(mode).save(d / f"{cls}_{k}.png")
    return pathlib.Path(root)


def group_of(graph, producer):
    """The channel group whose producers include layer ``producer``."""
    return next(g for g in graph.groups if any(m.layer == producer for m in g.producers))


def zero_bn_channels(model, drop):
    """Zero gamma and beta of channels ``drop`` of the layer named "bn"."""
    bn = model.get_layer("bn")
    g, b, mean, var = bn.get_weights()
    g[drop] = 0
    b[drop] = 0
    bn.set_weights([g, b, mean, var])


def outputs(model, x):
    """Every output of ``model(x)`` as numpy arrays."""
    import keras
    return [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(model(x))]


def assert_close(a, b, tol=1e-4):
    """Outputs ``a`` and ``b`` equal in shape and within ``tol`` relative to ``a``."""
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert np.max(np.abs(x - y)) <= tol * max(1.0, np.max(np.abs(x)))
