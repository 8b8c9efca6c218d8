"""DependencyGraph: groups, members, frozen channels and clear errors."""

import keras
import numpy as np
import pytest
from keras import layers as L

from remotetrimmer_tf.graph import (ChannelGroup, DependencyGraph, LayerHandler,
                                    Member, register_handler)
from remotetrimmer_tf.surgeon import prune_channels


def _group_of(graph, producer):
    for g in graph.groups:
        if any(m.layer == producer for m in g.producers):
            return g
    raise AssertionError(f"no group produced by {producer}")


def _member(group, role, layer):
    return next(m for m in getattr(group, role) if m.layer == layer)


def test_residual_add_couples_producers_and_io_frozen():
    inp = keras.Input((8, 8, 3))
    x = L.BatchNormalization(name="bn0")(L.Conv2D(4, 3, padding="same", name="c0")(inp))
    y = L.Conv2D(4, 3, padding="same", name="c1")(x)
    z = L.Add(name="add")([x, y])
    out = L.Dense(2, name="fc")(L.GlobalAveragePooling2D(name="gap")(z))
    graph = DependencyGraph(keras.Model(inp, out))
    g = _group_of(graph, "c0")
    assert isinstance(g, ChannelGroup) and g.size == 4 and g.prunable
    assert {m.layer for m in g.producers} == {"c0", "c1"}
    assert [m.layer for m in g.channelwise] == ["bn0"]
    assert {m.layer for m in g.consumers} == {"c1", "fc"}
    assert {"c0", "bn0", "c1", "add", "gap", "fc"} <= set(g.layers)
    assert all(isinstance(m, Member) for m in g.members)
    np.testing.assert_array_equal(_member(g, "producers", "c1").indices, np.arange(4))
    assert not graph.groups[0].prunable and "input" in graph.groups[0].reason
    logits = _group_of(graph, "fc")
    assert not logits.prunable and "output" in logits.reason
    assert [g.index for g in graph.groups] == list(range(len(graph.groups)))


def test_concatenate_keeps_offsets_and_separate_groups():
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(3, 1, name="a")(inp)
    b = L.Conv2D(5, 1, name="b")(inp)
    x = L.BatchNormalization(name="bn")(L.Concatenate(name="cat")([a, b]))
    out = L.Conv2D(2, 1, name="head")(x)
    graph = DependencyGraph(keras.Model(inp, out))
    ga, gb = _group_of(graph, "a"), _group_of(graph, "b")
    assert ga.index != gb.index and ga.size == 3 and gb.size == 5
    np.testing.assert_array_equal(_member(ga, "channelwise", "bn").indices, [0, 1, 2])
    np.testing.assert_array_equal(_member(gb, "channelwise", "bn").indices, [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(_member(gb, "consumers", "head").indices, [3, 4, 5, 6, 7])


def test_add_of_concat_merges_segments():
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(2, 1, name="a")(inp)
    b = L.Conv2D(3, 1, name="b")(inp)
    c = L.Conv2D(5, 1, name="c")(inp)
    x = L.Add()([L.Concatenate()([a, b]), c])
    out = L.Conv2D(1, 1, name="head")(x)
    graph = DependencyGraph(keras.Model(inp, out))
    g = _group_of(graph, "c")
    assert g is _group_of(graph, "a") is _group_of(graph, "b") and g.size == 5
    np.testing.assert_array_equal(_member(g, "producers", "b").indices, [-1, -1, 0, 1, 2])
    with pytest.raises(ValueError, match="every output channel of layer 'a'"):
        prune_channels(graph.model, {g.index: [2, 3]}, graph=graph)
    new = prune_channels(graph.model, {g.index: [1, 3]}, graph=graph)
    assert new.get_layer("a").filters == 1 and new.get_layer("c").filters == 2


def test_se_gate_broadcast_couples_and_flatten_dense_rows():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c")(inp)
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(2, 1, name="se1")(s)
    s = L.Conv2D(6, 1, activation="sigmoid", name="se2")(s)
    x = L.Multiply()([x, s])
    out = L.Dense(3, name="fc")(L.Flatten()(x))
    graph = DependencyGraph(keras.Model(inp, out))
    g = _group_of(graph, "c")
    assert {m.layer for m in g.producers} == {"c", "se2"}
    rows = _member(g, "consumers", "fc").indices
    assert rows.shape == (6, 16)
    np.testing.assert_array_equal(rows[1], np.arange(16) * 6 + 1)


def test_scalar_gate_is_frozen_and_keras_ops_pass_through():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c")(inp)
    x = keras.ops.relu(x + 3.0) * (1.0 / 6.0)          # hard-swish style ops
    gate = L.Conv2D(1, 1, activation="sigmoid", name="gate")(x)
    x = L.Multiply()([x, gate])
    out = L.Conv2D(2, 1, name="head")(x)
    graph = DependencyGraph(keras.Model(inp, out))
    assert _group_of(graph, "c").prunable
    gg = _group_of(graph, "gate")
    assert not gg.prunable and "broadcast" in gg.reason


@pytest.mark.parametrize("make, match", [
    (lambda x: L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x), "depth_multiplier"),
    (lambda x: L.Reshape((4, 4, 3, 2), name="rs")(x), "mixing the channel axis"),
    (lambda x: L.Permute((3, 1, 2), name="perm")(x), "moves the channel axis"),
])
def test_channel_scrambling_layers_freeze_the_group(make, match):
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c")(inp)
    y = make(x)
    out = L.Flatten()(y)
    graph = DependencyGraph(keras.Model(inp, out))
    g = _group_of(graph, "c")
    assert not g.prunable and match in g.reason
    with pytest.raises(ValueError, match="not prunable"):
        prune_channels(graph.model, {g.index: [0, 1]}, graph=graph)


def test_unknown_layer_is_a_clear_error_or_frozen():
    # a Lambda whose function is not keras.ops cannot be traced: refused or frozen
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c")(inp)
    x = L.Lambda(lambda t: np.asarray(t)[..., ::-1], output_shape=(4, 4, 6),
                 name="flip_channels")(x)
    model = keras.Model(inp, L.Conv2D(2, 1, name="head")(x))
    with pytest.raises(ValueError, match="flip_channels.*register_handler"):
        DependencyGraph(model)
    graph = DependencyGraph(model, unknown="freeze")
    assert not _group_of(graph, "c").prunable


def test_traced_lambda_that_reorders_channels_freezes_them():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c")(inp)
    x = L.Lambda(lambda t: t[..., ::-1], name="flip_channels")(x)
    model = keras.Model(inp, L.Conv2D(2, 1, name="head")(x))
    graph = DependencyGraph(model)
    assert not _group_of(graph, "c").prunable


def test_subclassed_and_unbuilt_sequential_rejected():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    m = Sub()
    with pytest.raises(TypeError, match="not been built.*functional"):
        DependencyGraph(m)               # nothing to trace yet
    m(np.zeros((1, 3), "float32"))
    assert DependencyGraph(m).groups     # issue 28: a built subclass is traced
    with pytest.raises(TypeError, match="Input"):
        DependencyGraph(keras.Sequential([L.Dense(2)]))


def test_shared_layer_couples_its_inputs_and_prunes_consistently():
    a = keras.Input((4, 4, 3))
    b = keras.Input((4, 4, 3))
    shared = L.Conv2D(4, 1, name="shared")
    x = shared(L.Conv2D(3, 1, name="ca")(a))
    y = shared(L.Conv2D(3, 1, name="cb")(b))
    out = L.Add()([L.Conv2D(2, 1, name="hx")(x), L.Conv2D(2, 1, name="hy")(y)])
    model = keras.Model([a, b], out)
    graph = DependencyGraph(model)
    assert _group_of(graph, "ca") is _group_of(graph, "cb")   # one kernel reads both
    gs = _group_of(graph, "shared")
    assert gs.prunable and {m.layer for m in gs.consumers} == {"hx", "hy"}
    new = prune_channels(model, {gs.index: [0, 3], _group_of(graph, "ca").index: [1]},
                         graph=graph)
    assert new.get_layer("shared").get_weights()[0].shape == (1, 1, 1, 2)
    xa = np.ones((1, 4, 4, 3), "float32")
    assert tuple(new([xa, xa]).shape) == (1, 4, 4, 2)


def test_ignore_freezes_named_layer():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c")(inp)
    out = L.Conv2D(2, 1, name="head")(x)
    graph = DependencyGraph(keras.Model(inp, out), ignore=["c"])
    g = _group_of(graph, "c")
    assert not g.prunable and "ignore" in g.reason


class ChannelScale(L.Layer):
    """A custom per-channel scale layer (test of the handler registry)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


class ChannelScaleHandler(LayerHandler):
    def propagate(self, node, ctx):
        ctx.channelwise(node, node.in_maps[0])
        return [node.in_maps[0]]

    def prune(self, layer, config, weights, in_masks, out_masks):
        return config, [weights[0][in_masks[0]]]


def test_registered_custom_handler():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c")(inp)
    x = ChannelScale(name="scale")(x)
    model = keras.Model(inp, L.Conv2D(2, 1, name="head")(x))
    model.get_layer("scale").set_weights([np.arange(6, dtype="float32")])
    register_handler(ChannelScale, ChannelScaleHandler())
    graph = DependencyGraph(model)
    g = _group_of(graph, "c")
    assert [m.layer for m in g.channelwise] == ["scale"]
    new = prune_channels(model, {g.index: [1, 3]}, graph=graph)
    np.testing.assert_array_equal(new.get_layer("scale").get_weights()[0], [1.0, 3.0])


def test_depthwise_as_grouped_conv_is_channelwise():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 1, name="c")(inp)
    x = L.Conv2D(8, 3, padding="same", groups=8, name="dw")(x)
    x = L.Conv2D(4, 3, padding="same", groups=2, name="grouped")(x)
    model = keras.Model(inp, L.Conv2D(2, 1, name="head")(x))
    graph = DependencyGraph(model)
    g = _group_of(graph, "c")
    assert [m.layer for m in g.channelwise] == ["dw"]
    # the grouped conv reads 2 groups of 4: channel j of each group goes together
    assert g.prunable and g.size == 4
    inp2 = keras.Input((6, 6, 3))
    y = L.Conv2D(8, 3, padding="same", groups=8, name="dw")(L.Conv2D(8, 1, name="c")(inp2))
    m2 = keras.Model(inp2, L.Conv2D(2, 1, name="head")(y))
    g2 = _group_of(DependencyGraph(m2), "c")
    new = prune_channels(m2, {g2.index: [0, 5, 7]})
    x = np.random.RandomState(0).randn(1, 6, 6, 3).astype("float32")
    assert new.get_layer("dw").groups == 3 and tuple(new(x).shape) == (1, 6, 6, 2)
    np.testing.assert_array_equal(new.get_layer("dw").get_weights()[0],
                                  m2.get_layer("dw").get_weights()[0][..., [0, 5, 7]])


def test_keras_ops_mean_transpose_reshape_concat_are_followed():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 1, name="c")(inp)
    x = x - keras.ops.mean(x, axis=(1, 2), keepdims=True)
    x = keras.ops.transpose(x, (0, 2, 1, 3))
    y = keras.ops.reshape(x, (-1, 16 * 6))
    z = L.Reshape((16 * 6,), name="rs")(x)
    model = keras.Model(inp, L.Dense(2, name="d")(keras.ops.concatenate([y, z], axis=-1)))
    w = model.get_layer("c").get_weights()
    w[0][..., [1, 3, 5]] = 0.0
    w[1][[1, 3, 5]] = 0.0
    model.get_layer("c").set_weights(w)
    graph = DependencyGraph(model)
    g = _group_of(graph, "c")
    assert g.prunable and _member(g, "consumers", "d").indices.shape == (6, 32)
    new = prune_channels(model, {g.index: [0, 2, 4]}, graph=graph)
    assert new.get_layer("d").get_weights()[0].shape == (96, 2)
    x = np.random.RandomState(0).randn(2, 4, 4, 3).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(new(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-5)
