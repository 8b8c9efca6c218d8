"""recalibrate_bn: exact cumulative BN statistics, on a copy of the model."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

from remotetrimmer_tf.training import recalibrate_bn  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def net(dropout=0.0, freeze_bn=False):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(5, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn1", momentum=0.9, trainable=not freeze_bn)(x)
    x = keras.layers.ReLU()(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Conv2D(4, 1, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def expected_stats(model, x, batch_size, steps=None):
    """Per-batch biased moments of each BN input, averaged over the batches,
    with upstream BNs normalising by batch statistics (training mode)."""
    conv, bn1, conv2 = (model.get_layer(n) for n in ("conv", "bn1", "conv2"))
    means1, vars1, means2, vars2 = [], [], [], []
    for i, start in enumerate(range(0, len(x), batch_size)):
        if steps is not None and i >= steps:
            break
        a = keras.ops.convert_to_numpy(conv(x[start:start + batch_size])).astype(np.float64)
        m, v = a.mean((0, 1, 2)), a.var((0, 1, 2))
        means1.append(m)
        vars1.append(v)
        g, b = (keras.ops.convert_to_numpy(w) for w in (bn1.gamma, bn1.beta))
        h = np.maximum((a - m) / np.sqrt(v + bn1.epsilon) * g + b, 0.0)
        c = keras.ops.convert_to_numpy(conv2(h.astype("float32"))).astype(np.float64)
        means2.append(c.mean((0, 1, 2)))
        vars2.append(c.var((0, 1, 2)))
    return [np.mean(s, 0) for s in (means1, vars1, means2, vars2)]


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(2.0, 3.0, size=(40, 6, 6, 3)).astype("float32")


def bn_stats(model):
    out = []
    for name in ("bn1", "bn2"):
        bn = model.get_layer(name)
        out += [keras.ops.convert_to_numpy(bn.moving_mean), keras.ops.convert_to_numpy(bn.moving_variance)]
    return out


def test_exact_cumulative_average_and_user_model_untouched(x):
    model = net()
    original = [w.copy() for w in model.get_weights()]
    new = recalibrate_bn(model, x, batch_size=16)  # batches of 16, 16, 8
    assert new is not model
    for a, b in zip(original, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the user's model is not modified
    for got, want in zip(bn_stats(new), expected_stats(model, x, 16)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # trainable weights and BN momentum untouched in the copy
    for name in ("conv", "conv2", "fc"):
        for a, b in zip(model.get_layer(name).get_weights(), new.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert new.get_layer("bn1").momentum == 0.9
    # the stats are far from the initial (0, 1): the check can fail
    assert np.abs(bn_stats(new)[0]).max() > 0.5


def test_steps_tuple_and_iterable_inputs(x):
    model = net()
    want = expected_stats(model, x, 8, steps=2)
    by_steps = recalibrate_bn(model, (x, np.zeros(len(x))), steps=2, batch_size=8)
    batches = [(x[i:i + 8], None) for i in (0, 8)]
    by_iter = recalibrate_bn(model, iter(batches))
    for a, b, c in zip(bn_stats(by_steps), bn_stats(by_iter), want):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(b, c, rtol=1e-4, atol=1e-4)


def test_dropout_disabled_and_frozen_bn_recalibrated(x):
    model = net(dropout=0.5, freeze_bn=True)
    first = recalibrate_bn(model, x, batch_size=20)
    second = recalibrate_bn(model, x, batch_size=20)
    for a, b in zip(bn_stats(first), bn_stats(second)):
        np.testing.assert_array_equal(a, b)  # no dropout noise
    for got, want in zip(bn_stats(first), expected_stats(model, x, 20)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert first.get_layer("bn1").trainable is False
    assert any(isinstance(l, keras.layers.Dropout) and l.rate == 0.5 for l in first.layers)


def test_nested_model_and_no_bn():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.BatchNormalization(name="bn")], name="inner")
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    data = np.random.default_rng(0).normal(5.0, 1.0, size=(12, 4)).astype("float32")
    new = recalibrate_bn(outer, data, batch_size=12)
    dense = new.get_layer("inner").layers[0]
    expected = keras.ops.convert_to_numpy(dense(data)).mean(0)
    got = keras.ops.convert_to_numpy(new.get_layer("inner").get_layer("bn").moving_mean)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    copy = recalibrate_bn(plain, data)
    assert copy is not plain
    np.testing.assert_array_equal(copy.get_weights()[0], plain.get_weights()[0])


def test_bad_input(x):
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_bn(net(), iter([]))
    with pytest.raises(ValueError, match="steps"):
        recalibrate_bn(net(), x, steps=0)
    with pytest.raises(TypeError, match="keras.Model"):
        recalibrate_bn("model", x)
    with pytest.raises(TypeError, match="data"):
        recalibrate_bn(net(), 3.0)


def test_jax_backend(tmp_path):
    code = """
        import sys
        class _NoTF:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ImportError("tensorflow blocked for this test")
        sys.meta_path.insert(0, _NoTF())
        import numpy as np, keras
        from remotetrimmer_tf.training import recalibrate_bn
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(2)(inputs)))
        x = np.random.default_rng(0).normal(3.0, 2.0, size=(30, 3)).astype("float32")
        new = recalibrate_bn(model, x, batch_size=10)
        a = np.asarray(model.layers[1](x))
        want_m = np.mean([a[i:i+10].mean(0) for i in (0, 10, 20)], 0)
        want_v = np.mean([a[i:i+10].var(0) for i in (0, 10, 20)], 0)
        bn = new.get_layer("bn")
        ok = np.allclose(np.asarray(bn.moving_mean), want_m, atol=1e-4) and \\
             np.allclose(np.asarray(bn.moving_variance), want_v, atol=1e-4)
        print("OK", ok, np.allclose(np.asarray(model.get_layer("bn").moving_mean), 0))
    """
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK True True" in proc.stdout
