"""Your own model: arch registry, head replacement, SE-gate insertion."""
import keras
import numpy as np
import pytest

from remotetrimmer_tf.attention import collect_attention, fold_attention
from remotetrimmer_tf.models import SqueezeExcite, arch_registry
from remotetrimmer_tf.models.head import find_classifier, replace_head
from remotetrimmer_tf.models.se_insert import gateable_batchnorms, insert_se_gates

L = keras.layers


def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            ws = layer.get_weights()
            c = ws[0].shape[0]
            vals = {"gamma": rng.normal(1, 0.3, c), "beta": rng.normal(0, 0.3, c),
                    "moving_mean": rng.normal(0, 0.3, c),
                    "moving_variance": rng.uniform(0.5, 2, c)}
            new = [vals[w.name].astype("float32") if w.name in vals else v
                   for w, v in zip(layer.weights, ws)]
            layer.set_weights(new)


def _residual_net(classes=5, channels=3):
    x = keras.Input((16, 16, channels))
    h = L.Conv2D(8, 3, padding="same", name="c1")(x)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(6.0, name="r1")(h)
    s = L.Conv2D(8, 3, padding="same", name="c2")(h)
    s = L.BatchNormalization(name="bn2", center=False)(s)
    h = L.Add(name="add")([h, s])
    h = L.Activation("swish", name="act")(h)
    h = L.Conv2D(12, 1, name="c3")(h)
    h = L.BatchNormalization(name="bn3", scale=False)(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    h = L.Dropout(0.1, name="drop")(h)
    y = L.Dense(classes, name="fc")(h)
    y = L.Softmax(name="prob")(y)
    return keras.Model(x, y, name="resid")


# ------------------------------------------------------------ arch registry
def test_registry_lists_every_keras_application():
    actual = {n for n in dir(keras.applications)
              if n[0].isupper() and callable(getattr(keras.applications, n))}
    assert set(arch_registry.KERAS_APPLICATIONS) == actual


def test_unknown_arch_suggests_close_name():
    with pytest.raises(ValueError, match="did you mean MobileNetV2"):
        arch_registry.check_name("MobilNetV2")
    assert arch_registry.check_name("mobilenetv2") == "MobileNetV2"
    with pytest.raises(ValueError, match="unknown architecture"):
        arch_registry.check_name("transformer9000")


@pytest.mark.parametrize("name,shape", [("MobileNetV2", (32, 32, 3)),
                                        pytest.param("EfficientNetB0", (32, 32, 4),
                                                     marks=pytest.mark.slow),
                                        ("resnet18", (32, 32, 3))])
def test_build_fits_data(name, shape):
    model = arch_registry.build(name, num_classes=6, input_shape=shape)
    assert tuple(model.inputs[0].shape[1:]) == shape
    assert model.outputs[0].shape[-1] == 6
    out = model.predict(np.zeros((2,) + shape, "float32"), verbose=0)
    assert out.shape == (2, 6)


def test_build_too_small_input_is_named():
    with pytest.raises(ValueError, match="InceptionV3 needs inputs of at least 75"):
        arch_registry.build("InceptionV3", 3, (32, 32, 3))


@pytest.mark.slow
def test_local_weights_file_is_loaded(tmp_path):
    a = arch_registry.build("MobileNetV2", 3, (32, 32, 3))
    path = tmp_path / "w.weights.h5"
    a.save_weights(path)
    b = arch_registry.build("MobileNetV2", 3, (32, 32, 3), weights=str(path))
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    assert np.allclose(a.predict(x, verbose=0), b.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        arch_registry.build("MobileNetV2", 5, (32, 32, 3), weights=str(path))


# -------------------------------------------------------- head replacement
def test_replace_head_keeps_backbone_and_changes_classes():
    model = _residual_net(classes=5)
    assert find_classifier(model) == "fc"
    new = replace_head(model, 3, seed=1)
    assert new.outputs[0].shape[-1] == 3 and model.outputs[0].shape[-1] == 5
    for name in ("c1", "bn1", "c2", "c3"):
        for a, b in zip(model.get_layer(name).get_weights(),
                        new.get_layer(name).get_weights()):
            assert np.array_equal(a, b)
    assert isinstance(new.layers[-1], L.Softmax)   # activation kept
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    assert np.allclose(new.predict(x, verbose=0).sum(-1), 1.0, atol=1e-5)


def test_replace_head_on_keras_application():
    model = arch_registry.build("MobileNetV2", 10, (32, 32, 3))
    new = replace_head(model, 4)
    assert new.outputs[0].shape[-1] == 4
    assert len(new.layers) == len(model.layers)


def test_replace_head_without_dense_is_refused():
    x = keras.Input((8, 8, 3))
    y = L.GlobalAveragePooling2D()(L.Conv2D(4, 1)(x))
    with pytest.raises(ValueError, match="not from a Dense"):
        replace_head(keras.Model(x, y), 3)


# -------------------------------------------------------- SE-gate insertion
def test_insert_gates_keeps_outputs():
    model = _residual_net()
    _randomize_bn(model)
    gated = insert_se_gates(model, reduction=4)
    names = [l.name for l in gated.layers if isinstance(l, SqueezeExcite)]
    assert names == ["bn1_se", "bn2_se", "bn3_se"]
    assert not any(isinstance(l, SqueezeExcite) for l in model.layers)
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype("float32")
    ref = model.predict(x, verbose=0)
    got = gated.predict(x, verbose=0)
    assert np.allclose(ref, got, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_insert_gates_on_mobilenet_keeps_outputs_and_folds_back():
    model = arch_registry.build("MobileNetV2", 4, (32, 32, 3))
    _randomize_bn(model)
    gated = insert_se_gates(model)
    assert sum(isinstance(l, SqueezeExcite) for l in gated.layers) == \
        len(gateable_batchnorms(model)) > 30
    x = np.random.default_rng(2).normal(size=(3, 32, 32, 3)).astype("float32")
    ref = model.predict(x, verbose=0)
    assert np.allclose(ref, gated.predict(x, verbose=0), atol=1e-4, rtol=1e-4)
    folded = fold_attention(gated, collect_attention(gated, x))
    assert np.allclose(ref, folded.predict(x, verbose=0), atol=1e-4, rtol=1e-4)


def test_trained_gates_fold_exactly_at_constant_attention():
    """After the gates move, folding their mean equals gating with the mean."""
    model = _residual_net()
    gated = insert_se_gates(model, reduction=4)
    rng = np.random.default_rng(3)
    for layer in gated.layers:
        if isinstance(layer, SqueezeExcite):
            w1, b1, w2, b2 = layer.get_weights()
            layer.set_weights([w1, b1, rng.normal(0, 1, w2.shape).astype("float32"),
                               rng.normal(0, 1, b2.shape).astype("float32")])
    x = np.repeat(rng.normal(size=(1, 16, 16, 3)).astype("float32"), 3, axis=0)
    folded = fold_attention(gated, collect_attention(gated, x))
    assert np.allclose(gated.predict(x, verbose=0), folded.predict(x, verbose=0),
                       atol=1e-5)


def test_insert_gates_refuses_model_without_bn():
    x = keras.Input((8, 8, 3))
    y = L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(4, 1)(x)))
    with pytest.raises(ValueError, match="no BatchNormalization"):
        insert_se_gates(keras.Model(x, y))


def test_gated_model_saves_and_loads(tmp_path):
    gated = insert_se_gates(_residual_net(), reduction=4)
    path = tmp_path / "g.keras"
    gated.save(path)
    back = keras.saving.load_model(path, compile=False)
    x = np.ones((1, 16, 16, 3), "float32")
    assert np.allclose(back.predict(x, verbose=0), gated.predict(x, verbose=0))


def test_keras_application_bn_momentum_is_keras_default():
    model = arch_registry.build("MobileNetV2", 3, (32, 32, 3))
    bns = [l for l in model.layers if isinstance(l, L.BatchNormalization)]
    assert bns and all(l.momentum == arch_registry.BN_MOMENTUM for l in bns)
    assert model.get_layer(bns[0].name).get_config()["momentum"] == 0.99


# ------------------------------------------- nested backbone (transfer style)
def _nested_net(trainable=True, twice=False):
    base = keras.applications.MobileNetV2(include_top=False, weights=None,
                                          input_shape=(32, 32, 3), alpha=0.35)
    _randomize_bn(base)
    base.trainable = trainable
    x = keras.Input((32, 32, 3), name="img")
    h = base(x)
    if twice:
        h = L.Add()([h, base(x)])
    h = L.GlobalAveragePooling2D(name="pool")(h)
    h = L.BatchNormalization(name="head_bn")(h)
    return keras.Model(x, L.Dense(3, name="fc")(h), name="transfer")


@pytest.mark.slow
def test_insert_gates_into_nested_backbone_keeps_outputs():
    from remotetrimmer_tf.models.flatten import flatten_nested
    model = _nested_net()
    flat = flatten_nested(model)
    assert not any(isinstance(l, keras.Model) for l in flat.layers)
    assert "bn_Conv1" in [l.name for l in flat.layers]
    x = np.random.default_rng(4).normal(size=(3, 32, 32, 3)).astype("float32")
    ref = model.predict(x, verbose=0)
    assert np.allclose(ref, flat.predict(x, verbose=0), atol=1e-5, rtol=1e-5)
    gated = insert_se_gates(model)
    gates = [l.name for l in gated.layers if isinstance(l, SqueezeExcite)]
    assert "bn_Conv1_se" in gates and len(gates) == len(gateable_batchnorms(flat)) > 30
    assert "head_bn_se" not in gates     # (batch, channels): nothing to squeeze
    assert np.allclose(ref, gated.predict(x, verbose=0), atol=1e-4, rtol=1e-4)
    folded = fold_attention(gated, collect_attention(gated, x))
    assert np.allclose(ref, folded.predict(x, verbose=0), atol=1e-4, rtol=1e-4)
    # the user's model is untouched
    assert any(isinstance(l, keras.Model) for l in model.layers)


def test_flatten_keeps_a_frozen_backbone_frozen():
    from remotetrimmer_tf.models.flatten import flatten_nested
    flat = flatten_nested(_nested_net(trainable=False))
    assert not flat.get_layer("Conv1").trainable
    assert flat.get_layer("fc").trainable


def test_nested_backbone_called_twice_is_refused_in_one_line():
    with pytest.raises(ValueError, match="2 times") as err:
        insert_se_gates(_nested_net(twice=True))
    assert "\n" not in str(err.value)


def test_flatten_of_a_flat_model_is_the_model():
    from remotetrimmer_tf.models.flatten import flatten_nested
    model = _residual_net()
    assert flatten_nested(model) is model
