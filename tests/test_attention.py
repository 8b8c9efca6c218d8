"""collect_attention (streaming mean gate outputs) and fold_attention (SE → BN)."""
import keras
import numpy as np
import pytest

from remotetrimmer_tf.attention import (collect_attention, find_gated_batchnorms,
                                        fold_attention, iterate_batches)
from remotetrimmer_tf.models import SqueezeExcite, resnet18


def randomize(model, seed=0):
    """Non-trivial BN statistics and SE weights (fresh models are too regular)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])
        elif isinstance(layer, SqueezeExcite):
            layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
    return model


def tiny_se_model(seed=0):
    """conv-BN-ReLU-SE, a residual block with SE after bn2, and a head."""
    inp = keras.Input((12, 12, 3), name="input")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c0")(inp)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.ReLU(name="r0")(x)
    x = SqueezeExcite(4, name="se0")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(x)
    y = keras.layers.BatchNormalization(name="bn1")(y)
    y = SqueezeExcite(4, name="se1")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(3, name="fc")(x)
    return randomize(keras.Model(inp, out), seed)


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


X = np.random.default_rng(42).normal(size=(10, 12, 12, 3)).astype("float32")


def test_collect_attention_is_the_mean_gate_output():
    model = tiny_se_model()
    att = collect_attention(model, X, batch_size=3)   # 4 uneven batches
    assert set(att) == {"se0", "se1"}
    probe = keras.Model(model.input, [model.get_layer("se0").input,
                                      model.get_layer("se1").input])
    feats = probe(X, training=False)
    for name, feat in zip(("se0", "se1"), feats):
        s = keras.ops.convert_to_numpy(model.get_layer(name).gate(feat))
        assert att[name].shape == (8,)
        np.testing.assert_allclose(att[name], s.mean(axis=0), rtol=1e-5, atol=1e-6)
        assert np.all((att[name] > 0) & (att[name] < 1))
        assert np.ptp(att[name]) > 1e-3      # the check is not vacuous


def test_collect_attention_accepts_every_data_form():
    model = tiny_se_model()
    ref = collect_attention(model, X)
    y = np.zeros(len(X), "int32")
    forms = {
        "xy arrays": (X, y),
        "list of x batches": [X[:4], X[4:]],
        "generator of (x, y)": ((X[i:i + 5], y[i:i + 5]) for i in range(0, 10, 5)),
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        forms["tf.data"] = tf.data.Dataset.from_tensor_slices((X, y)).batch(3)
    for label, data in forms.items():
        att = collect_attention(model, data)
        for k in ref:
            np.testing.assert_allclose(att[k], ref[k], rtol=1e-5, err_msg=label)
    # steps limits the batches seen
    first = collect_attention(model, [X[:2], X[2:]], steps=1)
    np.testing.assert_allclose(first["se0"], collect_attention(model, X[:2])["se0"],
                               rtol=1e-6)


def test_iterate_batches_errors():
    with pytest.raises(ValueError, match="labelled"):
        list(iterate_batches([X], labels=True))
    with pytest.raises(TypeError, match="iterate"):
        list(iterate_batches(3))
    with pytest.raises(ValueError, match="steps"):
        list(iterate_batches(X, steps=0))


def test_fold_is_exact_when_all_samples_share_one_gate_value():
    model = randomize(resnet18(10, (32, 32, 3), se=True), seed=1)
    before = weights_of(model)
    x = np.repeat(X[:1, :, :, :].repeat(3, axis=1).repeat(3, axis=2)[:, :32, :32], 6, axis=0)
    att = collect_attention(model, x, batch_size=4)
    folded = fold_attention(model, att)
    assert not any(isinstance(l, SqueezeExcite) for l in folded.layers)
    assert len(folded.layers) == len(model.layers) - 17
    ref = keras.ops.convert_to_numpy(model(x, training=False))
    out = keras.ops.convert_to_numpy(folded(x, training=False))
    assert np.abs(ref).max() > 1e-2
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    # different images: the per-sample gate differs from its mean
    other = np.random.default_rng(3).normal(size=(6, 32, 32, 3)).astype("float32")
    assert np.abs(keras.ops.convert_to_numpy(folded(other))
                  - keras.ops.convert_to_numpy(model(other))).max() > 1e-4
    # the input model is untouched
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert sum(isinstance(l, SqueezeExcite) for l in model.layers) == 17


def test_fold_scales_gamma_and_beta_only():
    model = tiny_se_model()
    att = {"se0": np.linspace(0.1, 0.9, 8), "se1": np.linspace(0.9, 0.2, 8)}
    folded = fold_attention(model, att)
    assert find_gated_batchnorms(model) == {"se0": "bn0", "se1": "bn1"}
    for bn, se in (("bn0", "se0"), ("bn1", "se1")):
        g, b, mm, mv = model.get_layer(bn).get_weights()
        g2, b2, mm2, mv2 = folded.get_layer(bn).get_weights()
        np.testing.assert_allclose(g2, g * att[se], rtol=1e-6)
        np.testing.assert_allclose(b2, b * att[se], rtol=1e-6)
        np.testing.assert_array_equal(mm2, mm)
        np.testing.assert_array_equal(mv2, mv)
    np.testing.assert_array_equal(folded.get_layer("c1").get_weights()[0],
                                  model.get_layer("c1").get_weights()[0])
    # the gate's consumer now reads the gate's input
    assert folded.get_layer("add").input[0]._keras_history.operation.name == "r0"


def test_fold_sequential():
    model = keras.Sequential([
        keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3, name="c"),
        keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(name="r"),
        SqueezeExcite(2, name="se"), keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(2, name="fc")])
    randomize(model)
    x = np.repeat(X[:1, :6, :6], 4, axis=0)
    folded = fold_attention(model, collect_attention(model, x))
    assert isinstance(folded, keras.Sequential)
    assert [l.name for l in folded.layers] == ["c", "bn", "r", "gap", "fc"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(folded(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-5)


def test_fold_errors_are_clear():
    model = tiny_se_model()
    good = collect_attention(model, X)
    with pytest.raises(ValueError, match=r"se1.*shape \(4,\).*expected \(8,\)"):
        fold_attention(model, {**good, "se1": np.ones(4)})
    with pytest.raises(ValueError, match="missing \\['se1'\\]"):
        fold_attention(model, {"se0": good["se0"]})
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
        fold_attention(model, {**good, "nope": np.ones(8)})
    with pytest.raises(ValueError, match=">= 0"):
        fold_attention(model, {**good, "se0": -good["se0"]})
    with pytest.raises(TypeError, match="dict"):
        fold_attention(model, [good["se0"]])
    plain = resnet18(10, (32, 32, 3))
    with pytest.raises(ValueError, match="no SqueezeExcite"):
        fold_attention(plain, {})
    with pytest.raises(ValueError, match="no SqueezeExcite"):
        collect_attention(plain, X)
    inner_in = keras.Input((12, 12, 3))
    inner = keras.Model(inner_in, SqueezeExcite(1, name="se_inner")(inner_in), name="inner")
    outer_in = keras.Input((12, 12, 3))
    with pytest.raises(ValueError, match="nested model 'inner'"):
        collect_attention(keras.Model(outer_in, inner(outer_in)), X)
    # a gate after a non-homogeneous activation cannot be folded exactly
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("sigmoid", name="sig")(x)
    x = SqueezeExcite(2, name="se")(x)
    bad = keras.Model(inp, x)
    with pytest.raises(ValueError, match="sig.*does not commute"):
        fold_attention(bad, {"se": np.ones(4)})
    # a BN whose output also feeds another branch cannot be folded either
    inp = keras.Input((6, 6, 3))
    y = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(4, 1)(inp))
    z = keras.layers.Add()([SqueezeExcite(2, name="se")(y), y])
    with pytest.raises(ValueError, match="'bn'.*also feeds"):
        fold_attention(keras.Model(inp, z), {"se": np.ones(4)})


def test_folded_model_saves_and_loads(tmp_path):
    import warnings
    model = tiny_se_model()
    folded = fold_attention(model, collect_attention(model, X))
    path = tmp_path / "folded.keras"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=".*__array__.*copy.*")
        folded.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(X)),
                               keras.ops.convert_to_numpy(folded(X)), rtol=1e-5, atol=1e-6)
