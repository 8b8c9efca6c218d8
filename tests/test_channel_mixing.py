"""Never silently wrong: ops that mix channels are frozen or opted in.

Each model here was pruned wrongly before (removing dead channels changed the
output): a softmax over channels written as ``Activation`` or as a layer's
``activation=``, an unknown activation assumed channel-wise, LayerNorm over
the channels pruned as if exact. Dead channels (``silence_dropped``) are the
check: pruning them must leave the output unchanged, or the group must be
frozen with a reason.
"""
import warnings

import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

import remotetrimmer_tf as rt
from remotetrimmer_tf.graph import (DependencyGraph, activation_kind, register_activation,
                                    silence_dropped)
from remotetrimmer_tf.surgeon import prune_channels
from helpers import group_of as _group_of, zero_bn_channels as _zero_bn_channels

X = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")


def _dead_error(model, graph, keep, **graph_kw):
    quiet = silence_dropped(model, keep, graph=graph)
    small = prune_channels(quiet, keep, graph=DependencyGraph(quiet, **graph_kw))
    a, b = np.asarray(quiet(X)), np.asarray(small(X))
    return float(np.max(np.abs(a - b)))


def _bn_gated(act_layer):
    """conv -> BN -> (channel op) -> conv: the channel op decides exactness."""
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = act_layer(x)
    return keras.Model(inp, L.Conv2D(4, 1, name="c2")(x))


@pytest.mark.parametrize("act", [
    lambda: L.Activation("softmax", name="act"),
    lambda: L.Activation(keras.activations.log_softmax, name="act"),
    lambda: L.Softmax(axis=-1, name="act"),
])
def test_softmax_over_channels_freezes_the_group(act):
    model = _bn_gated(act())
    graph = DependencyGraph(model)
    g = _group_of(graph, "c1")
    assert not g.prunable and "act" in g.reason
    # what a wrong graph would have done: BN-zeroed channels are not dead
    _zero_bn_channels(model, [1, 3])
    full = np.asarray(model(X))
    assert np.max(np.abs(full)) > 0


def test_softmax_activation_argument_of_a_gate_is_frozen():
    """SE-style gate written as Dense(C, activation='softmax'): mixing."""
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    s = L.GlobalAveragePooling2D(name="gap")(x)
    s = L.Dense(6, activation="softmax", name="gate")(s)
    x = L.Multiply(name="mul")([x, L.Reshape((1, 1, 6), name="rs")(s)])
    model = keras.Model(inp, L.Conv2D(4, 1, name="c2")(x))
    graph = DependencyGraph(model)
    g = _group_of(graph, "c1")
    assert not g.prunable and "softmax" in g.reason and "gate" in g.reason
    # the same gate with a sigmoid is channel-wise and prunes exactly
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    s = L.Dense(6, activation="sigmoid", name="gate")(L.GlobalAveragePooling2D()(x))
    x = L.Multiply()([x, L.Reshape((1, 1, 6))(s)])
    ok = keras.Model(inp, L.Conv2D(4, 1, name="c2")(x))
    graph = DependencyGraph(ok)
    g = _group_of(graph, "c1")
    assert g.prunable
    assert _dead_error(ok, graph, {g.index: np.array([0, 2, 5])}) < 1e-5


def test_conv_with_softmax_activation_freezes_its_output():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation="softmax", name="c1")(inp)
    model = keras.Model(inp, L.Conv2D(4, 1, name="c2")(x))
    g = _group_of(DependencyGraph(model), "c1")
    assert not g.prunable and "softmax" in g.reason


def test_unknown_activation_is_not_assumed_channelwise():
    def scaled_norm(x):          # mixes channels: x / ||x||_channels
        return x / keras.ops.sqrt(keras.ops.sum(x * x, axis=-1, keepdims=True) + 1.0)

    def my_relu(x):
        return keras.ops.maximum(x, 0.0)

    for fn in (scaled_norm, my_relu):
        model = _bn_gated(L.Activation(fn, name="act"))
        g = _group_of(DependencyGraph(model), "c1")
        assert not g.prunable and "register_activation" in g.reason
    assert activation_kind(my_relu) == "unknown"
    register_activation(my_relu)
    model = _bn_gated(L.Activation(my_relu, name="act"))
    graph = DependencyGraph(model)
    g = _group_of(graph, "c1")
    assert g.prunable
    assert _dead_error(model, graph, {g.index: np.array([0, 4])}) < 1e-5


def test_builtin_activations_are_classified():
    for name in ("relu", "sigmoid", "hard_swish", "silu", "gelu", "tanh", "linear"):
        assert activation_kind(name) == "channelwise", name
        assert activation_kind(keras.activations.get(name)) == "channelwise", name
    for name in ("softmax", "log_softmax"):
        assert activation_kind(name) == "mixing"
    with pytest.raises(ValueError, match="kind"):
        register_activation("relu", kind="maybe")


def _layernorm_model():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    x = L.LayerNormalization(name="ln")(x)
    return keras.Model(inp, L.Conv2D(4, 1, name="c2")(x))


def test_layernorm_is_frozen_unless_approximation_allowed():
    model = _layernorm_model()
    g = _group_of(DependencyGraph(model), "c1")
    assert not g.prunable and "approximate=('layernorm',)" in g.reason
    graph = DependencyGraph(model, approximate=("layernorm",))
    g = _group_of(graph, "c1")
    assert g.prunable and g.approximate and "ln" in g.approximate
    # and it really is approximate: dead channels still change the output
    assert _dead_error(model, graph, {g.index: np.array([0, 1, 2])},
                       approximate=("layernorm",)) > 1e-3


def test_pruner_layernorm_opt_in_warns_and_marks():
    model = _layernorm_model()
    with pytest.raises(ValueError, match="approximate=\\('layernorm',\\)"):
        rt.Pruner(model, importance="l1", ratio=0.5).plan()
    pruner = rt.Pruner(model, importance="l1", ratio=0.5, approximate=("layernorm",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner.plan()
    assert any("approximately" in str(w.message) for w in caught)
    assert pruner.approximate_groups
    assert any(row["approximate"] for row in pruner.summary())
    with pytest.raises(ValueError, match="approximate"):
        rt.Pruner(model, importance="l1", ratio=0.5, approximate=("batchnorm",))


def test_unknown_layer_error_names_a_real_option():
    class Opaque(keras.layers.Layer):     # owns a weight: not traced as a composite
        def build(self, shape):             # and mixes its channels: not channel-wise
            self.k = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return x * self.k + ops.mean(x, axis=-1, keepdims=True)

    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    x = Opaque(name="opaque")(x)
    x = L.Conv2D(6, 1, name="c2")(x)
    model = keras.Model(inp, L.Conv2D(4, 1, name="c3")(x))
    with pytest.raises(ValueError, match="unknown='freeze' to Pruner") as err:
        rt.Pruner(model, importance="l1", ratio=0.5).plan()
    assert "opaque" in str(err.value)
    small = rt.Pruner(model, importance="l1", ratio=0.5, unknown="freeze").prune()
    assert small.get_layer("c2").filters == 3        # the group c2 -> c3 still prunes
    assert small.get_layer("c1").filters == 6        # frozen around the unknown layer


def test_lambda_layer_error_explains_itself():
    # keras.ops Lambdas are traced; one calling numpy cannot be: refused, named
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    x = L.Lambda(lambda t: np.asarray(t) * 2.0, output_shape=(8, 8, 6), name="lam")(x)
    model = keras.Model(inp, L.Conv2D(4, 1)(x))
    with pytest.raises(ValueError, match="Lambda") as err:
        DependencyGraph(model)
    assert "lam" in str(err.value) and "keras.ops" in str(err.value)


def test_channels_first_conv_chain_prunes_on_axis_1():
    # was refused; the channel axis now comes from each layer's data_format
    inp = keras.Input((3, 8, 8))
    x = L.Conv2D(6, 3, padding="same", data_format="channels_first", name="c1")(inp)
    model = keras.Model(inp, L.Conv2D(4, 1, data_format="channels_first", name="c2")(x))
    keep = rt.Pruner(model, importance="l1", ratio=0.5).plan()
    assert [len(v) for v in keep.values()] == [3]


def test_pad_split_and_grouped_conv_prune_exactly():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    a, b = keras.ops.split(x, [3], axis=-1)              # sections of 3 and 5
    a = L.Conv2D(4, 3, name="ca")(a)
    b = L.Conv2D(4, 3, name="cb")(b)
    y = keras.ops.concatenate([a, b], axis=-1)
    y = L.Conv2D(8, 3, padding="same", groups=4, name="grouped")(y)
    model = keras.Model(inp, L.Conv2D(2, 1, name="head")(L.ReLU()(y)))
    graph = DependencyGraph(model)
    assert all(g.prunable for g in graph.groups[1:-1])
    g1 = _group_of(graph, "c1")
    assert [s.tolist() for s in graph.sections(g1.index)] == [[0, 1, 2], [3, 4, 5, 6, 7]]
    keep = {g1.index: np.array([1, 4, 6])}
    gg = _group_of(graph, "grouped")
    assert gg.size == 2                                  # 8 outputs in 4 groups of 2
    keep[gg.index] = np.array([1])
    assert _dead_error(model, graph, keep) < 1e-5
    small = prune_channels(model, keep, graph=graph)
    assert small.get_layer("grouped").filters == 4 and small.get_layer("grouped").groups == 4
    # the Pruner keeps at least one channel of every split section
    for _ in range(3):
        small = rt.Pruner(model, importance="random", ratio=0.85, seed=_).prune()
        small(X)


def test_count_macs_counts_inside_composite_layers_or_raises():
    class Block(keras.layers.Layer):
        def __init__(self, filters, **kw):
            super().__init__(**kw)
            self.filters = filters
            self.conv = L.Conv2D(filters, 3, padding="same", name=self.name + "_conv")
            self.bn = L.BatchNormalization(name=self.name + "_bn")

        def call(self, x):
            return keras.ops.relu(self.bn(self.conv(x))) + x

        def get_config(self):
            return {**super().get_config(), "filters": self.filters}

    inp = keras.Input((8, 8, 4))
    out = L.Conv2D(2, 1, name="head")(Block(4, name="blk")(inp))
    model = keras.Model(inp, out)
    assert rt.count_macs(model) == 8 * 8 * 9 * 4 * 4 + 8 * 8 * 4 * 2

    class Kernel(keras.layers.Layer):       # a leaf with a kernel and no handler
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 3))

        def call(self, x):
            return keras.ops.matmul(x, self.w)

    inp = keras.Input((8, 8, 4))
    m2 = keras.Model(inp, Kernel(name="mystery")(inp))
    with pytest.raises(ValueError, match="mystery"):
        rt.count_macs(m2)

