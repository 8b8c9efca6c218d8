"""AdaptiveMiningLoss: formula (../shared/METHOD.md §2), gradients, serialization."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

from remotetrimmer_tf.losses import AdaptiveMiningLoss  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference_aml(logits, labels, r1=1.0, r2=1.0, from_logits=True):
    """../shared/METHOD.md §2 in float64 numpy; labels sparse (B,) or one-hot (B, K)."""
    z = np.asarray(logits, np.float64)
    k = z.shape[-1]
    y = np.eye(k)[labels] if np.ndim(labels) == 1 else np.asarray(labels, np.float64)
    if from_logits:
        s = z - z.max(-1, keepdims=True)
        p = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    else:
        p = z
    d = np.abs(p - y).sum(-1) / k
    ce = -(y * np.log(p)).sum(-1)
    return r1 * np.mean(np.exp(d + d ** 2)) + r2 * np.mean(ce)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(13, 7)).astype("float32")
    labels = rng.integers(0, 7, size=13)
    return logits, labels


@pytest.mark.parametrize("r1,r2", [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0), (1.0, 0.0)])
def test_matches_formula_sparse_and_onehot_logits(batch, r1, r2):
    logits, labels = batch
    expected = reference_aml(logits, labels, r1, r2)
    loss = AdaptiveMiningLoss(r1=r1, r2=r2)
    for y in (labels.astype("int32"), labels.reshape(-1, 1), np.eye(7, dtype="float32")[labels],
              np.eye(7, dtype="int32")[labels]):
        got = float(keras.ops.convert_to_numpy(loss(y, logits)))
        assert got == pytest.approx(expected, abs=1e-6, rel=1e-6)


def test_matches_formula_probabilities(batch):
    logits, labels = batch
    z = logits.astype(np.float64)
    probs = (np.exp(z - z.max(-1, keepdims=True)))
    probs = (probs / probs.sum(-1, keepdims=True)).astype("float32")
    probs = np.clip(probs, 1e-6, 1.0)  # keep away from the log clip
    probs = probs / probs.sum(-1, keepdims=True)
    expected = reference_aml(probs, labels, from_logits=False)
    loss = AdaptiveMiningLoss(from_logits=False)
    for y in (labels, np.eye(7, dtype="float32")[labels]):
        got = float(keras.ops.convert_to_numpy(loss(y, probs)))
        assert got == pytest.approx(expected, abs=1e-6, rel=1e-6)


def test_batch_size_one_and_sample_weight(batch):
    logits, labels = batch
    loss = AdaptiveMiningLoss()
    one = float(keras.ops.convert_to_numpy(loss(labels[:1], logits[:1])))
    assert one == pytest.approx(reference_aml(logits[:1], labels[:1]), abs=1e-6)
    w = np.zeros(13, "float32")
    w[3] = 13.0  # mean over batch of w*loss = loss of sample 3
    got = float(keras.ops.convert_to_numpy(loss(labels, logits, sample_weight=w)))
    assert got == pytest.approx(reference_aml(logits[3:4], labels[3:4]), abs=1e-5)


def test_mining_term_bounds():
    # d = 0 for a perfect prediction -> exp(0) = 1; CE = 0 (probabilities).
    loss = AdaptiveMiningLoss(r1=1.0, r2=0.0, from_logits=False)
    y = np.array([0, 1])
    p = np.eye(3, dtype="float32")[y]
    assert float(keras.ops.convert_to_numpy(loss(y, p))) == pytest.approx(1.0, abs=1e-6)
    # fully wrong one-hot prediction: d = 2/K
    wrong = np.eye(3, dtype="float32")[[1, 2]]
    d = 2.0 / 3.0
    assert float(keras.ops.convert_to_numpy(loss(y, wrong))) == pytest.approx(
        np.exp(d + d * d), abs=1e-6)


def test_label_smoothing_only_changes_cross_entropy(batch):
    logits, labels = batch
    eps, k = 0.1, 7
    z = logits.astype(np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    target = np.eye(k)[labels] * (1 - eps) + eps / k
    expected = reference_aml(logits, labels, 1.0, 0.0) + np.mean(-(target * logp).sum(-1))
    got = AdaptiveMiningLoss(label_smoothing=eps)(labels, logits)
    assert float(keras.ops.convert_to_numpy(got)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF gradient tape")
def test_gradient_finite_for_extreme_logits():
    import tensorflow as tf

    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [0.0, 0.0, 0.0],
                       [1e4, 1e4, -1e4]], "float32")
    labels = np.array([1, 2, 0, 2])
    for y in (labels, np.eye(3, dtype="float32")[labels]):
        z = tf.Variable(logits)
        with tf.GradientTape() as tape:
            value = AdaptiveMiningLoss()(y, z)
        grad = tape.gradient(value, z).numpy()
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
        assert np.abs(grad).max() > 0
    # probabilities containing exact 0 and 1
    p = tf.Variable(np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], "float32"))
    with tf.GradientTape() as tape:
        value = AdaptiveMiningLoss(from_logits=False)(np.array([1, 2]), p)
    assert np.all(np.isfinite(tape.gradient(value, p).numpy()))


def test_config_round_trip():
    loss = AdaptiveMiningLoss(r1=0.3, r2=2.0, from_logits=False, label_smoothing=0.05,
                              name="aml")
    config = loss.get_config()
    assert {k: config[k] for k in ("r1", "r2", "from_logits", "label_smoothing", "name")} == {
        "r1": 0.3, "r2": 2.0, "from_logits": False, "label_smoothing": 0.05, "name": "aml"}
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, AdaptiveMiningLoss) and again.get_config() == config
    assert keras.saving.get_registered_name(AdaptiveMiningLoss) == \
        "remotetrimmer_tf>AdaptiveMiningLoss"


@pytest.mark.parametrize("kwargs,error", [
    ({"r1": -1.0}, ValueError), ({"r2": "1"}, TypeError), ({"label_smoothing": 1.0}, ValueError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="AdaptiveMiningLoss"):
        AdaptiveMiningLoss(**kwargs)


def test_bad_label_shape(batch):
    logits, labels = batch
    with pytest.raises(ValueError, match="AdaptiveMiningLoss"):
        AdaptiveMiningLoss()(np.eye(5, dtype="float32")[labels % 5], logits)
    with pytest.raises(ValueError, match="AdaptiveMiningLoss"):
        AdaptiveMiningLoss()(labels.reshape(1, 13, 1), logits)


# ----------------------------------------------------------------- .keras round trip
def _tiny_compiled_model():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3, name="head")(keras.layers.Dense(5, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss=AdaptiveMiningLoss(r1=0.5, r2=1.5), metrics=["accuracy"])
    rng = np.random.default_rng(1)
    model.fit(rng.normal(size=(8, 4)).astype("float32"), rng.integers(0, 3, 8), epochs=1,
              verbose=0)
    return model


def _run(code, backend="tensorflow", cwd=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def saved_model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("aml") / "model.keras")
    _tiny_compiled_model().save(path)
    return path


def test_compiled_model_reloads_in_process(saved_model_path):
    model = keras.saving.load_model(saved_model_path)
    assert isinstance(model.loss, AdaptiveMiningLoss)
    assert (model.loss.r1, model.loss.r2) == (0.5, 1.5)


@pytest.mark.slow
def test_fresh_process_import_package_then_plain_load_model(saved_model_path, tmp_path):
    """`import remotetrimmer_tf` + plain `keras.saving.load_model(path)`."""
    init = open(os.path.join(REPO, "remotetrimmer_tf", "__init__.py")).read()
    if "_keras_registration" not in init:
        pytest.skip("remotetrimmer_tf/__init__.py does not call "
                    "_keras_registration.install() yet (lead: see issue-5 report)")
    code = f"""
        import remotetrimmer_tf
        import keras
        m = keras.saving.load_model({saved_model_path!r})
        print(type(m.loss).__name__)
    """
    proc = _run(code, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AdaptiveMiningLoss" in proc.stdout


@pytest.mark.slow
def test_fresh_process_without_package_import_fails_clearly(saved_model_path, tmp_path):
    """Documented behaviour: without importing remotetrimmer_tf Keras cannot find
    the loss (TypeError); `compile=False` still loads architecture + weights;
    registering afterwards (keras already imported) makes a plain load work."""
    code = f"""
        import keras
        try:
            keras.saving.load_model({saved_model_path!r})
        except TypeError as e:
            print("TypeError", "AdaptiveMiningLoss" in str(e) or "could not be deserialized" in str(e))
        m = keras.saving.load_model({saved_model_path!r}, compile=False)
        print("compile=False ok", m.count_params())
        import remotetrimmer_tf._keras_registration as reg
        reg.install()
        m = keras.saving.load_model({saved_model_path!r})
        print("registered", type(m.loss).__name__, m.loss.r1, m.loss.r2)
    """
    proc = _run(code, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TypeError True" in proc.stdout
    assert "compile=False ok 43" in proc.stdout  # 4*5+5 + 5*3+3
    assert "registered AdaptiveMiningLoss 0.5 1.5" in proc.stdout


@pytest.mark.slow
def test_jax_backend_hook_load_value_and_gradient(saved_model_path, tmp_path):
    """JAX without TensorFlow: the import hook registers the loss right after
    `import keras`, the TF-saved .keras loads, values and gradients are right."""
    code = f"""
        import sys
        class _NoTF:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ImportError("tensorflow blocked for this test")
        sys.meta_path.insert(0, _NoTF())
        import remotetrimmer_tf._keras_registration as reg
        reg.install()
        assert "keras" not in sys.modules
        import jax, numpy as np, keras
        m = keras.saving.load_model({saved_model_path!r})
        print("loaded", type(m.loss).__name__, m.loss.r1, m.loss.r2)
        from remotetrimmer_tf.losses import AdaptiveMiningLoss
        z = np.array([[1e4, -1e4, 0.0], [0.3, -1.2, 2.0]], "float32")
        y = np.array([1, 2])
        loss = AdaptiveMiningLoss()
        g = jax.grad(lambda v: loss(y, v))(z)
        print("finite", bool(np.all(np.isfinite(np.asarray(g)))))
        print("value", float(loss(y[1:], z[1:])))
        print("tf", "tensorflow" in sys.modules)
    """
    proc = _run(code, backend="jax", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded AdaptiveMiningLoss 0.5 1.5" in proc.stdout
    assert "finite True" in proc.stdout and "tf False" in proc.stdout
    value = float(proc.stdout.split("value")[1].split()[0])
    assert value == pytest.approx(reference_aml([[0.3, -1.2, 2.0]], [2]), abs=1e-6)
