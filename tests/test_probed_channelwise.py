"""Users' own layers that act channel by channel need no handler
(`graph.handlers.probed`): a class token, a position table, a layer scale,
a per-channel bias are proven channel-wise by rebuilding them narrower, and
prune exactly; a layer that mixes, permutes or fixes its channels is refused
in one line that says why, and `unknown="freeze"` still works around it.
"""
import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

import remotetrimmer_tf as rt
from remotetrimmer_tf.errors import PruningError
from remotetrimmer_tf.graph import DependencyGraph, silence_dropped
from remotetrimmer_tf.graph.handlers.probed import CHANNELWISE, channelwise_problem
from remotetrimmer_tf.graph.handlers.registry import get_handler
from remotetrimmer_tf.surgeon import prune_channels

PKG = "rt_probed_test"


@keras.saving.register_keras_serializable(PKG)
class ClassToken(L.Layer):
    def build(self, shape):
        self.token = self.add_weight(shape=(1, 1, shape[-1]), initializer="random_normal")

    def call(self, x):
        token = ops.repeat(ops.cast(self.token, x.dtype), ops.shape(x)[0], axis=0)
        return ops.concatenate([token, x], axis=1)


@keras.saving.register_keras_serializable(PKG)
class PositionTable(L.Layer):
    def build(self, shape):
        self.table = self.add_weight(shape=(1, shape[1], shape[2]), initializer="random_normal")

    def call(self, x):
        return x + self.table


@keras.saving.register_keras_serializable(PKG)
class LayerScale(L.Layer):
    def __init__(self, init=0.1, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, shape):
        self.gamma = self.add_weight(shape=(shape[-1],),
                                     initializer=keras.initializers.RandomUniform(0.05, self.init))

    def call(self, x):
        return x * self.gamma

    def get_config(self):
        return {**super().get_config(), "init": self.init}


@keras.saving.register_keras_serializable(PKG)
class BiasAndFloor(L.Layer):
    """Two per-channel weights, one non-trainable."""

    def build(self, shape):
        self.bias = self.add_weight(shape=(1, 1, shape[-1]), initializer="random_normal")
        self.floor = self.add_weight(shape=(shape[-1],), initializer="zeros", trainable=False)

    def call(self, x):
        return ops.maximum(x + self.bias, self.floor)


@keras.saving.register_keras_serializable(PKG)
class GeM(L.Layer):
    """Generalised-mean pooling: one exponent shared by every channel."""

    def build(self, shape):
        self.p = self.add_weight(shape=(1,), initializer=keras.initializers.Constant(3.0))

    def call(self, x):
        x = ops.power(ops.maximum(x, 1e-6), self.p)
        return ops.power(ops.mean(x, axis=(1, 2)), 1.0 / self.p)


class ActScale(L.Layer):
    """Per-channel gain then an activation, which may be a Python lambda
    (Keras cannot deserialise it; the in-process rebuild keeps it)."""

    def __init__(self, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)

    def build(self, shape):
        self.gain = self.add_weight(shape=(shape[-1],), initializer="random_normal")

    def call(self, x):
        return self.activation(x * self.gain)

    def get_config(self):
        return {**super().get_config(),
                "activation": keras.activations.serialize(self.activation)}


class ChannelFlip(L.Layer):
    """Reverses the channels: channel c out is channel C-1-c in."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="random_normal")

    def call(self, x):
        return ops.flip(x, axis=-1) * self.w


class MeanScale(L.Layer):
    """Every channel scaled by the mean of all the weights (mixes them)."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="random_normal")

    def call(self, x):
        return x * ops.mean(self.w)


class SizedByConfig(L.Layer):
    """Its width is a constructor argument: it cannot be rebuilt narrower."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def build(self, shape):
        self.w = self.add_weight(shape=(self.dim,), initializer="random_normal")

    def call(self, x):
        return x * self.w

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


class MixingMatrix(L.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], shape[-1]), initializer="random_normal")

    def call(self, x):
        return ops.matmul(x, self.w)


class TwoOutputs(L.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="random_normal")

    def call(self, x):
        return x * self.w, x + self.w


class Counting(L.Layer):
    """Per-channel weight, but its call counts (a state update)."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x):
        self.calls.assign_add(1.0)
        return x * self.w


def token_model():
    """Tokens -> class token -> position table -> a LayerScale'd MLP whose
    hidden width prunes; a Dense head on the class token."""
    inp = keras.Input((6, 8))
    x = L.Dense(24, name="embed")(inp)
    x = ClassToken(name="cls")(x)
    x = PositionTable(name="pos")(x)
    h = L.Dense(40, activation="gelu", name="fc1")(x)
    h = LayerScale(name="scale")(h)
    x = L.Dense(12, name="fc2")(h)
    return keras.Model(inp, L.Dense(3, name="head")(x[:, 0]))


def conv_model(custom):
    inp = keras.Input((10, 10, 3))
    x = L.Conv2D(16, 3, padding="same", name="c1")(inp)
    x = custom(x)
    x = L.Conv2D(8, 3, padding="same", name="c2")(x)
    return keras.Model(inp, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(x)))


def _data(model):
    rng = np.random.default_rng(3)
    return rng.standard_normal((2,) + tuple(model.inputs[0].shape[1:])).astype("float32")


def _assert_exact(model, ratio=0.5):
    x = _data(model)
    pruner = rt.Pruner(model, importance="l1", ratio=ratio)
    keep = pruner.plan()
    graph = pruner.graph
    np.testing.assert_allclose(prune_channels(model, {}, graph=graph)(x), model(x),
                               rtol=1e-5, atol=1e-5)
    quiet = silence_dropped(model, keep, graph=graph)
    np.testing.assert_allclose(prune_channels(quiet, keep, graph=DependencyGraph(quiet))(x),
                               quiet(x), rtol=1e-5, atol=1e-5)
    return pruner.prune()


def test_class_token_position_table_and_layer_scale_prune_exactly(tmp_path):
    model = token_model()
    before = [w.copy() for w in model.get_weights()]
    small = _assert_exact(model)
    assert small.get_layer("embed").units < 24 and small.get_layer("fc1").units < 40
    width = small.get_layer("embed").units
    assert tuple(small.get_layer("cls").token.shape) == (1, 1, width)
    assert tuple(small.get_layer("pos").table.shape) == (1, 7, width)
    assert tuple(small.get_layer("scale").gamma.shape) == (small.get_layer("fc1").units,)
    assert small.get_layer("scale").init == 0.1            # config carried over
    x = _data(model)
    path = tmp_path / "small.keras"
    small.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)(x), small(x), atol=1e-6)
    small.compile("sgd", "mse")
    small.fit(x, np.ones((2, 3), "float32"), epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):       # the user's layers untouched
        np.testing.assert_array_equal(a, b)


def test_two_per_channel_weights_in_a_conv_net_prune_exactly():
    model = conv_model(BiasAndFloor(name="bias_floor"))
    small = _assert_exact(model)
    layer = small.get_layer("bias_floor")
    n = small.get_layer("c1").filters
    assert n < 16 and [tuple(w.shape) for w in layer.weights] == [(1, 1, n), (n,)]
    assert not layer.floor.trainable


def test_a_shared_weight_stays_whole_gem_pooling():
    inp = keras.Input((10, 10, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    model = keras.Model(inp, L.Dense(2, name="head")(GeM(name="gem")(x)))
    small = _assert_exact(model)
    assert small.get_layer("c1").filters == 8
    np.testing.assert_array_equal(small.get_layer("gem").get_weights()[0], [3.0])


def test_a_layer_holding_a_lambda_is_proven_as_the_surgeon_rebuilds_it():
    model = conv_model(ActScale(lambda t: t * 0.5, name="act"))
    small = _assert_exact(model)
    assert small.get_layer("c1").filters == 8
    assert tuple(small.get_layer("act").gain.shape) == (8,)


def test_the_proof_is_what_picks_the_handler():
    model = token_model()
    assert get_handler(model.get_layer("scale")) is CHANNELWISE
    assert get_handler(model.get_layer("fc1")) is not CHANNELWISE     # registered
    assert "leaf layer of your own code" in channelwise_problem(model.get_layer("fc1"))


@pytest.mark.parametrize("layer,why", [
    (ChannelFlip(name="odd"), "not computed channel by channel"),
    (MeanScale(name="odd"), "not computed channel by channel"),
    (SizedByConfig(16, name="odd"), "cannot be rebuilt at a narrower width"),
    (MixingMatrix(name="odd"), "cannot be rebuilt at a narrower width"),
    (lambda x: TwoOutputs(name="odd")(x)[0], "several outputs"),
    (Counting(name="odd"), "changes its own weights"),
])
def test_layers_that_are_not_channelwise_are_refused_in_one_line(layer, why):
    model = conv_model(layer)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(PruningError) as err:
        rt.Pruner(model, importance="l1", ratio=0.5).prune()
    msg = str(err.value)
    assert "\n" not in msg and "'odd'" in msg and "not provably channel-wise" in msg, msg
    assert why in msg, msg
    assert "unknown='freeze'" in msg
    for a, b in zip(before, model.get_weights()):       # the proof left them as they were
        np.testing.assert_array_equal(a, b)


def test_a_refused_layer_is_frozen_on_request_and_the_rest_prunes():
    inp = keras.Input((10, 10, 3))
    x = L.Conv2D(16, 3, padding="same", name="c1")(inp)
    x = ChannelFlip(name="odd")(x)
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="c2")(x)
    x = L.Conv2D(8, 3, padding="same", name="c3")(x)
    model = keras.Model(inp, L.GlobalAveragePooling2D()(x))
    with pytest.warns(UserWarning, match="pruned less than asked"):
        pruner = rt.Pruner(model, importance="l1", ratio=0.5, unknown="freeze")
        small = pruner.prune()
    assert small.get_layer("c1").filters == 16 and small.get_layer("c2").filters < 12
    x = _data(model)
    assert small(x).shape == model(x).shape
