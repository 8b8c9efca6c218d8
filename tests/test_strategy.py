"""Distribution: get_strategy, and fit under MirroredStrategy (2 logical CPUs,
TF backend) and keras.distribution.DataParallel (2 host devices, JAX)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from remotetrimmer_tf.training import strategy  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny net WITHOUT BatchNorm (per-replica BN statistics would differ from a
# single-device run), trained with momentum + L2 decay for 4 steps, once
# distributed and once on one device from the same weights: the two runs must
# agree, which checks the loss / L2 scaling across replicas.
_COMMON = """
import json, sys
import numpy as np, keras
from remotetrimmer_tf import training

def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
    return x, y

def tiny():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(2)(h))

RECIPE = dict(epochs=1, batch_size=8, lr=0.1, momentum=0.9, weight_decay=1e-2,
              schedule="onecycle", warmup_fraction=0.3, loss="aml", augment="none", seed=1)

def teacher():
    keras.utils.set_random_seed(5)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.GlobalAveragePooling2D()(inp)
    return keras.Model(inp, keras.layers.Dense(2)(h))

def run(strategy, recipe=RECIPE, **kw):
    x, y = data()
    model = tiny()
    w0 = [w.copy() for w in model.get_weights()]
    hist = training.fit(model, (x, y), recipe=recipe, strategy=strategy, verbose=0, **kw)
    changed = not np.allclose(w0[0], model.get_weights()[0])
    return model, hist, changed
"""


def _run(code, backend, extra_env=None, cwd=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1])


def test_default_and_unknown():
    assert strategy.get_strategy("default") is None
    assert strategy.get_strategy(None) is None
    with pytest.raises(ValueError, match="unknown strategy 'horovod'"):
        strategy.get_strategy("horovod")
    with pytest.raises(TypeError, match="strategy must be"):
        strategy.strategy_scope(object())
    with strategy.strategy_scope(None):
        pass


@pytest.mark.slow
def test_fit_under_mirrored_strategy_two_logical_cpus(tmp_path):
    code = textwrap.dedent("""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """) + _COMMON + textwrap.dedent(f"""
        s = training.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
        dist, hist, changed = run(s)
        single, _, _ = run(None)
        diff = max(float(np.abs(a - b).max()) for a, b in
                   zip(dist.get_weights(), single.get_weights()))
        # distillation: the KD term is scaled across replicas like the loss
        kd = dict(RECIPE, distill_weight=2.0)
        dist_kd, _, _ = run(s, recipe=kd, teacher=teacher())
        single_kd, _, _ = run(None, recipe=kd, teacher=teacher())
        diff_kd = max(float(np.abs(a - b).max()) for a, b in
                      zip(dist_kd.get_weights(), single_kd.get_weights()))
        moved = max(float(np.abs(a - b).max()) for a, b in
                    zip(dist_kd.get_weights(), single.get_weights()))
        x, y = data()
        ev = training.evaluate(dist, (x, y))
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        model = tiny()
        h_ds = training.fit(model, ds, ds, recipe=RECIPE, strategy=s, verbose=0,
                            workdir={str(tmp_path)!r})
        best = keras.saving.load_model({str(tmp_path / "best.keras")!r})
        print("RESULT", json.dumps(dict(
            replicas=s.num_replicas_in_sync, changed=changed, diff=diff,
            diff_kd=diff_kd, moved=moved,
            epochs=len(hist["loss"]), ds_epochs=len(h_ds["loss"]),
            acc=ev["accuracy"], best_layers=len(best.layers))))
    """)
    out = _run(code, "tensorflow", cwd=str(tmp_path))
    assert out["replicas"] == 2 and out["changed"] and out["epochs"] == 1
    assert out["ds_epochs"] == 1 and out["best_layers"] == 4
    assert out["diff"] < 1e-4, out
    assert out["diff_kd"] < 1e-4 and out["moved"] > 1e-3, out


@pytest.mark.slow
def test_fit_under_jax_data_parallel_two_devices(tmp_path):
    code = textwrap.dedent("""
        import sys
        class _NoTF:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ImportError("tensorflow blocked for this test")
        sys.meta_path.insert(0, _NoTF())
    """) + _COMMON + textwrap.dedent("""
        import warnings
        import jax
        from remotetrimmer_tf.training import strategy as strategy_mod
        # multi-process initialisation, as one process of a 1-process "cluster"
        mw = training.get_strategy("multi_worker")
        init = dict(kind=type(mw).__name__, chief=strategy_mod.is_chief(mw),
                    workers=strategy_mod.num_workers(mw),
                    processes=jax.process_count(),
                    echo=strategy_mod.broadcast_json(mw, {"plan": [1, 2]}))
        s = training.get_strategy("data_parallel")
        dist, hist, changed = run(s)
        single, _, _ = run(None)
        diff = max(float(np.abs(a - b).max()) for a, b in
                   zip(dist.get_weights(), single.get_weights()))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            one = training.get_strategy("data_parallel", devices=jax.devices()[:1])
        print("RESULT", json.dumps(dict(devices=len(jax.devices()),
              kind=type(s).__name__, changed=changed, diff=diff, init=init,
              mirrored=type(training.get_strategy("mirrored")).__name__,
              one_device_warning=[str(w.message) for w in caught],
              one=type(one).__name__, tf="tensorflow" in sys.modules)))
    """)
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = _run(code, "jax", {"XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                             "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
                             "KERAS_DISTRIBUTION_NUM_PROCESSES": "1",
                             "KERAS_DISTRIBUTION_PROCESS_ID": "0"},
               cwd=str(tmp_path))
    assert out["devices"] == 2 and out["kind"] == "DataParallel"
    assert out["mirrored"] == "DataParallel" and out["one"] == "DataParallel"
    assert out["changed"] and not out["tf"]
    assert out["diff"] < 1e-4, out
    assert out["init"] == {"kind": "DataParallel", "chief": True, "workers": 1,
                           "processes": 1, "echo": {"plan": [1, 2]}}
    assert any("sees one device" in w for w in out["one_device_warning"]), out


def test_strategy_names_the_backend_does_not_have():
    import keras
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(strategy.StrategyError, match="--strategy=mirrored"):
            strategy.get_strategy("data_parallel")
    assert "data_parallel" in strategy.STRATEGIES


@pytest.mark.parametrize("env, words", [
    ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "2"},
     "0 <= PROCESS_ID < NUM_PROCESSES"),
    ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "two", "KERAS_DISTRIBUTION_PROCESS_ID": "0"},
     "need integers"),
])
def test_bad_jax_cluster_is_one_clear_error(env, words, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(strategy.keras.backend, "backend", lambda: "jax")
    with pytest.raises(strategy.StrategyError, match="KERAS_DISTRIBUTION") as e:
        strategy.get_strategy("multi_worker")
    assert words in str(e.value)
