"""Shared fixtures and the test tiers.

Tiers: ``@pytest.mark.slow`` marks what takes more than ~20 s or starts
many interpreters (CLI end-to-end runs, several workers, the long property
run, keras-hub sweeps, LiteRT latency searches; a sweep keeps its first
cases fast, ``helpers.fast_first``). ``pytest -m "not slow" -n 2 --dist
loadgroup tests`` is the fast tier (every module, in two worker processes);
CI runs everything, also in two workers. Helpers (CLI runner, tiny data and
models) are in helpers.py.
"""
import shutil

import keras
import pytest

from helpers import cli, make_eurosat_folder, save_tiny_se_model, sha, tiny_args


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: > ~20 s or many subprocesses; left out of the fast "
        "tier (pytest -m \"not slow\"), run by CI")
    config.addinivalue_line(
        "markers", "xdist_group(name): pytest-xdist --dist loadgroup runs the "
        "tests of one group in one worker")


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Groups for ``pytest -n 2 --dist loadgroup``: a module's tests run in one
    worker (its module fixtures are built once), and every test that reads the
    session's tiny CLI run shares one worker, so that run is made once."""
    for item in items:
        uses_run = {"tiny_run", "tiny_run_copy"} & set(getattr(item, "fixturenames", ()))
        group = "tiny_run" if uses_run else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True, scope="module")
def _seeded_module():
    """Module fixtures draw the same initial weights whichever worker runs
    them and whatever ran before (Keras initialisers without a seed read
    the global generator)."""
    keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True)
def _seeded_test():
    """The same for every test: its random draws do not depend on the order
    or the worker pytest-xdist gives it."""
    keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True)
def full_float32_matmuls():
    """Exactness checks need true float32 matmuls; GPUs default to TF32."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        old = jax.config.jax_default_matmul_precision
        jax.config.update("jax_default_matmul_precision", "highest")
        yield
        jax.config.update("jax_default_matmul_precision", old)
    elif backend == "tensorflow":
        import tensorflow as tf
        old = tf.config.experimental.tensor_float_32_execution_enabled()
        tf.config.experimental.enable_tensor_float_32_execution(False)
        yield
        tf.config.experimental.enable_tensor_float_32_execution(old)
    else:
        yield


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """A 10-class EuroSAT-layout folder (6 JPEGs per class, 32x32) and a tiny
    SE model (`helpers.save_tiny_se_model`), shared by every CLI test."""
    root = tmp_path_factory.mktemp("assets")
    make_eurosat_folder(root / "data")
    model = save_tiny_se_model(root / "tiny.keras")
    return {"root": root, "data": root / "data", "model": model,
            "model_sha": sha(model)}


@pytest.fixture(scope="session")
def tiny_run(assets, tmp_path_factory):
    """One finished CLI run of the tiny model (all nine stages), made once
    per session: ``{"workdir", "stdout", "stderr", "args"}``. Read it only;
    a test that changes a run folder takes `tiny_run_copy`."""
    wd = tmp_path_factory.mktemp("tiny_run") / "run"
    args = tiny_args(assets, wd)
    proc = cli(*args, cwd=wd.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"workdir": wd, "stdout": proc.stdout, "stderr": proc.stderr,
            "args": args}


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path):
    """A private copy of `tiny_run`'s folder (resume it, change it)."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run["workdir"], dst)
    return dst
