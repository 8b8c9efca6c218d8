"""Tiny CNNs in the styles of ResNet, MobileNetV2, EfficientNet (SE) and DenseNet.

Shared by tests/test_graph.py and tests/test_surgeon.py.
"""

import keras
import numpy as np
from keras import layers as L


def _bn(x, name):
    return L.BatchNormalization(name=name)(x)


def resnet_style(input_shape=(16, 16, 3), classes=3):
    inp = keras.Input(input_shape, name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inp)
    x = L.ReLU(name="stem_relu")(_bn(x, "stem_bn"))
    for i, (w, s) in enumerate([(8, 1), (12, 2)]):
        y = L.Conv2D(w, 3, strides=s, padding="same", name=f"b{i}_c1")(x)
        y = L.ReLU()(_bn(y, f"b{i}_bn1"))
        y = L.Conv2D(w, 3, padding="same", name=f"b{i}_c2")(y)
        y = _bn(y, f"b{i}_bn2")
        if s != 1 or x.shape[-1] != w:
            x = _bn(L.Conv2D(w, 1, strides=s, name=f"b{i}_down")(x), f"b{i}_down_bn")
        x = L.ReLU()(L.Add(name=f"b{i}_add")([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(classes, name="logits")(x), name="resnet_style")


def mobilenetv2_style(input_shape=(16, 16, 3), classes=3):
    inp = keras.Input(input_shape)
    x = L.ReLU(6.0)(_bn(L.Conv2D(8, 3, padding="same", name="stem")(inp), "stem_bn"))
    for i, (exp, out, s) in enumerate([(16, 8, 1), (24, 12, 2), (36, 12, 1)]):
        y = L.ReLU(6.0)(_bn(L.Conv2D(exp, 1, name=f"m{i}_expand")(x), f"m{i}_expand_bn"))
        y = L.DepthwiseConv2D(3, strides=s, padding="same", name=f"m{i}_dw")(y)
        y = L.ReLU(6.0)(_bn(y, f"m{i}_dw_bn"))
        y = _bn(L.Conv2D(out, 1, name=f"m{i}_project")(y), f"m{i}_project_bn")
        x = L.Add(name=f"m{i}_add")([x, y]) if (s == 1 and x.shape[-1] == out) else y
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.2)(x)
    return keras.Model(inp, L.Dense(classes, name="logits")(x), name="mbv2_style")


def efficientnet_style(input_shape=(16, 16, 3), classes=3):
    """MBConv with squeeze-excite gates (Reshape + broadcast Multiply) and swish ops."""
    inp = keras.Input(input_shape)
    x = L.Rescaling(1.0 / 255)(inp)
    x = L.Activation("swish")(_bn(L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x), "stem_bn"))
    for i, (exp, out) in enumerate([(16, 8), (24, 8)]):
        y = L.Activation("swish")(_bn(L.Conv2D(exp, 1, use_bias=False, name=f"e{i}_expand")(x), f"e{i}_expand_bn"))
        y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"e{i}_dw")(y)
        y = L.Activation("swish")(_bn(y, f"e{i}_dw_bn"))
        s = L.GlobalAveragePooling2D()(y)
        s = L.Reshape((1, 1, exp), name=f"e{i}_se_reshape")(s)
        s = L.Conv2D(4, 1, activation="swish", name=f"e{i}_se_reduce")(s)
        s = L.Conv2D(exp, 1, name=f"e{i}_se_expand")(s)
        s = keras.ops.hard_sigmoid(s * 1.0 + 0.0)   # keras ops on symbolic tensors
        y = L.Multiply(name=f"e{i}_se_excite")([y, s])
        y = _bn(L.Conv2D(out, 1, use_bias=False, name=f"e{i}_project")(y), f"e{i}_project_bn")
        x = L.Add(name=f"e{i}_add")([x, L.Dropout(0.1)(y)])
    x = L.Activation("swish")(_bn(L.Conv2D(16, 1, name="top")(x), "top_bn"))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(classes, name="logits")(x), name="effnet_style")


def densenet_style(input_shape=(16, 16, 3), classes=3):
    inp = keras.Input(input_shape)
    x = L.ZeroPadding2D(1)(inp)
    x = L.ReLU()(_bn(L.Conv2D(8, 3, name="stem")(x), "stem_bn"))
    x = L.MaxPooling2D(2)(x)
    for blk in range(2):
        for i in range(2):
            y = L.ReLU()(_bn(x, f"d{blk}_{i}_bn1"))
            y = L.Conv2D(8, 1, use_bias=False, name=f"d{blk}_{i}_c1")(y)
            y = L.ReLU()(_bn(y, f"d{blk}_{i}_bn2"))
            y = L.Conv2D(4, 3, padding="same", use_bias=False, name=f"d{blk}_{i}_c2")(y)
            x = L.Concatenate(name=f"d{blk}_{i}_concat")([x, y])
        if blk == 0:
            x = L.ReLU()(_bn(x, "t_bn"))
            x = L.Conv2D(10, 1, use_bias=False, name="t_conv")(x)
            x = L.AveragePooling2D(2)(x)
    x = L.ReLU()(_bn(x, "final_bn"))
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(classes, name="logits")(x), name="densenet_style")


ALL = {"resnet": resnet_style, "mobilenetv2": mobilenetv2_style,
       "efficientnet": efficientnet_style, "densenet": densenet_style}


def randomize_bn(model, seed=0):
    """Give every BN non-trivial statistics so the checks are not vacuous."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype(g.dtype),
                               rng.uniform(-0.5, 0.5, b.shape).astype(b.dtype),
                               rng.uniform(-0.2, 0.2, m.shape).astype(m.dtype),
                               rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)])


# --------------------------------------------------------------------- tests
import os  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402

from remotetrimmer_tf.graph import DependencyGraph  # noqa: E402
from remotetrimmer_tf.cost import count_macs, count_params  # noqa: E402
from remotetrimmer_tf.surgeon import prune_channels  # noqa: E402

X = np.random.RandomState(0).uniform(-1, 1, (2, 16, 16, 3)).astype("float32")


def _predict(model, x=X):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _drop_half(group):
    keep = np.arange(group.size)[::2]
    return keep, np.setdiff1d(np.arange(group.size), keep)


def _zero_bn(model, graph, gi, drop):
    """Set BN gamma and beta to zero for group gi's channels ``drop``."""
    g = graph.groups[gi]
    for mem in g.channelwise:
        layer = model.get_layer(mem.layer)
        if isinstance(layer, L.BatchNormalization):
            w = layer.get_weights()
            idx = mem.indices[drop]
            w[0][idx] = 0.0
            w[1][idx] = 0.0
            layer.set_weights(w)


@pytest.mark.parametrize("name", sorted(ALL))
def test_keep_all_reproduces_outputs(name):
    model = ALL[name]()
    randomize_bn(model)
    before = [w.copy() for w in model.get_weights()]
    new = prune_channels(model, {})
    assert new is not model
    np.testing.assert_allclose(_predict(new), _predict(model), atol=1e-6)
    assert [l.name for l in new.layers] == [l.name for l in model.layers]
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(ALL))
def test_pruning_zeroed_bn_channels_is_exact(name):
    model = ALL[name]()
    randomize_bn(model, seed=1)
    graph = DependencyGraph(model)
    keep = {}
    for g in graph.groups:
        if not g.prunable or g.size < 2:
            continue
        if not any(isinstance(model.get_layer(m.layer), L.BatchNormalization)
                   for m in g.channelwise):
            continue   # e.g. SE bottlenecks: no BN to zero
        k, drop = _drop_half(g)
        _zero_bn(model, graph, g.index, drop)
        keep[g.index] = k
    assert len(keep) >= 3
    ref = _predict(model)
    shapes_before = [w.shape for w in model.get_weights()]
    new = prune_channels(model, keep, graph=graph)
    np.testing.assert_allclose(_predict(new), ref, atol=1e-5)
    assert count_params(new) < count_params(model)
    assert count_macs(new) < count_macs(model)
    assert [w.shape for w in model.get_weights()] == shapes_before  # original untouched


def test_slices_the_right_channels():
    model = resnet_style()
    graph = DependencyGraph(model)
    g = next(g for g in graph.groups if any(m.layer == "b0_c1" for m in g.producers))
    keep = [1, 4, 6]
    new = prune_channels(model, {g.index: keep}, graph=graph)
    k_old = model.get_layer("b0_c1").get_weights()[0]
    k_new = new.get_layer("b0_c1").get_weights()[0]
    np.testing.assert_array_equal(k_new, k_old[..., keep])
    c2_old = model.get_layer("b0_c2").get_weights()[0]
    np.testing.assert_array_equal(new.get_layer("b0_c2").get_weights()[0], c2_old[:, :, keep, :])
    bn_old = model.get_layer("b0_bn1").get_weights()
    for a, b in zip(new.get_layer("b0_bn1").get_weights(), bn_old):
        np.testing.assert_array_equal(a, b[keep])


def test_preserves_names_dtypes_trainability_and_reloads(tmp_path):
    model = efficientnet_style()
    model.get_layer("stem").trainable = False
    graph = DependencyGraph(model)
    keep = {g.index: list(range(g.size // 2 or 1)) for g in graph.groups if g.prunable}
    new = prune_channels(model, keep, graph=graph)
    assert new.name == model.name
    assert [l.name for l in new.layers] == [l.name for l in model.layers]
    assert new.get_layer("stem").trainable is False
    assert new.get_layer("e0_dw").trainable is True
    assert all(a.dtype == b.dtype for a, b in zip(new.weights, model.weights))
    assert new.get_layer("e0_expand").filters == model.get_layer("e0_expand").filters // 2
    for lname in ("stem", "e0_dw", "e0_expand_bn"):   # configs (initializers...) kept
        a, b = model.get_layer(lname).get_config(), new.get_layer(lname).get_config()
        assert {k: v for k, v in a.items() if k.endswith("initializer")} == \
            {k: v for k, v in b.items() if k.endswith("initializer")}
    path = os.path.join(tmp_path, "small.keras")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*numpy.*")
        new.save(path)
    back = keras.saving.load_model(path)
    np.testing.assert_allclose(_predict(back), _predict(new), atol=1e-6)


def test_mixed_precision_dtype_policy_kept():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, name="c1", dtype="mixed_float16")(inp)
    x = L.BatchNormalization(name="bn", dtype="mixed_float16")(x)
    x = L.Conv2D(4, 1, name="c2", dtype="float32")(x)
    model = keras.Model(inp, x)
    graph = DependencyGraph(model)
    gi = next(g.index for g in graph.groups if g.prunable)
    new = prune_channels(model, {gi: [0, 1, 2]}, graph=graph)
    assert new.get_layer("c1").dtype_policy.name == "mixed_float16"
    assert new.get_layer("c1").compute_dtype == "float16"
    assert new.get_layer("c2").dtype_policy.name == "float32"


@pytest.mark.parametrize("keep, match", [
    ({1: []}, "empty"),
    ({1: [0, 99]}, "out of range"),
    ({1: [3, 1]}, "sorted"),
    ({99: [0]}, "groups"),
    ({0: [0]}, "not prunable"),
])
def test_bad_keep_is_a_clear_error(keep, match):
    model = resnet_style()
    graph = DependencyGraph(model)
    assert graph.groups[1].prunable and not graph.groups[0].prunable
    with pytest.raises(ValueError, match=match):
        prune_channels(model, keep, graph=graph)


def test_graph_of_other_model_rejected():
    a, b = resnet_style(), resnet_style()
    with pytest.raises(ValueError, match="different model"):
        prune_channels(a, {}, graph=DependencyGraph(b))


def test_nested_submodel_and_multi_io():
    sub_in = keras.Input((8, 8, 6))
    s = L.BatchNormalization(name="sbn")(sub_in)
    s = L.Conv2D(5, 1, name="sconv")(L.ReLU()(s))
    sub = keras.Model(sub_in, s, name="sub")
    a = keras.Input((8, 8, 3), name="a")
    b = keras.Input((8, 8, 2), name="b")
    x = L.Conv2D(6, 3, padding="same", name="ca")(a)
    y = L.Conv2D(6, 3, padding="same", name="cb")(b)
    z = sub(L.Add()([x, y]))
    out1 = L.Dense(2, name="head1")(L.GlobalAveragePooling2D()(z))
    out2 = L.Conv2D(1, 1, name="head2")(z)
    model = keras.Model([a, b], [out1, out2])
    randomize_bn(sub)
    graph = DependencyGraph(model)
    g6 = next(g for g in graph.groups if g.size == 6)
    assert {m.layer for m in g6.producers} == {"ca", "cb"}
    assert "sub/sbn" in [m.layer for m in g6.channelwise]
    g5 = next(g for g in graph.groups if any(m.layer == "sub/sconv" for m in g.producers))
    assert g5.prunable
    xa = np.random.RandomState(1).randn(2, 8, 8, 3).astype("float32")
    xb = np.random.RandomState(2).randn(2, 8, 8, 2).astype("float32")
    new = prune_channels(model, {g6.index: [0, 2, 3], g5.index: [1, 4]}, graph=graph)
    assert new.get_layer("sub").get_layer("sbn").get_weights()[0].shape == (3,)
    assert new.get_layer("sub").get_layer("sconv").filters == 2
    o1, o2 = new([xa, xb])
    assert tuple(o1.shape) == (2, 2) and tuple(o2.shape) == (2, 8, 8, 1)
    full = prune_channels(model, {}, graph=graph)
    for p, q in zip(full([xa, xb]), model([xa, xb])):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(p), keras.ops.convert_to_numpy(q), atol=1e-6)


def test_sequential_with_input():
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(6, 3, name="c1"),
                              L.BatchNormalization(name="bn"), L.ReLU(),
                              L.Flatten(), L.Dense(4, name="d")])
    graph = DependencyGraph(model)
    gi = next(g.index for g in graph.groups if g.prunable and g.size == 6)
    new = prune_channels(model, {gi: [0, 5]}, graph=graph)
    assert isinstance(new, keras.Sequential)
    assert new.get_layer("d").get_weights()[0].shape == (6 * 6 * 2, 4)
    x = np.random.RandomState(0).randn(1, 8, 8, 3).astype("float32")
    assert tuple(new(x).shape) == (1, 4)


def test_nested_sequential_block():
    block = keras.Sequential([keras.Input((8, 8, 6)), L.BatchNormalization(name="nbn"),
                              L.ReLU(), L.Conv2D(6, 3, padding="same", name="nconv")],
                             name="block")
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 1, name="c")(inp)
    x = L.Add()([x, block(x)])
    model = keras.Model(inp, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(x)))
    randomize_bn(block)
    graph = DependencyGraph(model)
    g = next(g for g in graph.groups if any(m.layer == "c" for m in g.producers))
    assert {m.layer for m in g.producers} == {"c", "block/nconv"}
    x = np.random.RandomState(0).randn(2, 8, 8, 3).astype("float32")
    np.testing.assert_allclose(_predict(prune_channels(model, {}, graph=graph), x),
                               _predict(model, x), atol=1e-6)
    new = prune_channels(model, {g.index: [0, 2, 5]}, graph=graph)
    assert new.get_layer("block").get_layer("nconv").get_weights()[0].shape == (3, 3, 3, 3)
    assert tuple(new(x).shape) == (2, 2)
