"""Never a broken model: every layer a Keras CNN user has is pruned exactly or
refused in one line (per-channel config vectors, unserialisable activations,
recurrent heads, Lambda layers, channels_first, quantized and LoRA layers,
errors that are ours, the first-call check, the shortfall warning, and
``silence_dropped`` against hand-made references)."""
import functools
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from keras import layers as L

import remotetrimmer_tf as rt
from remotetrimmer_tf.errors import PruningError
from remotetrimmer_tf.graph import DependencyGraph
from remotetrimmer_tf.graph.dead_channels import silence_dropped
from remotetrimmer_tf.surgeon import prune_channels

X = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def assert_exact(model, x=X, **kw):
    """Prune at 0.5 and compare with the original, dropped channels silenced."""
    kw.setdefault("importance", "l1")
    kw.setdefault("ratio", 0.5)
    pruner = rt.Pruner(model, **kw)
    keep = pruner.plan()
    thin = pruner.prune()
    quiet = silence_dropped(pruner.graph.model, keep, graph=pruner.graph)
    np.testing.assert_allclose(_np(quiet(x)), _np(thin(x)), atol=1e-4, rtol=1e-4)
    return pruner, thin


def _features(inp, width=16):
    x = L.Conv2D(width, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    return L.ReLU(name="r1")(x)


def _tail(x):
    x = L.Conv2D(8, 3, padding="same", name="c2")(x)
    return L.Dense(3, name="head")(L.GlobalAveragePooling2D()(x))


# ------------------------------------------------------- per-channel state
@pytest.mark.parametrize("scale,offset", [
    (np.linspace(0.5, 2, 16), 0.1), (0.5, np.linspace(-1, 1, 16)),
    (np.linspace(0.5, 2, 16).reshape(1, 1, 16), np.linspace(-1, 1, 16).reshape(1, 1, 16))])
def test_per_channel_rescaling_is_sliced(scale, offset):
    inp = keras.Input((8, 8, 3))
    x = L.Rescaling(scale=scale, offset=offset, name="resc")(_features(inp))
    pruner, thin = assert_exact(keras.Model(inp, _tail(x)))
    assert thin.get_layer("c1").filters == 8


def test_per_channel_config_vector_no_handler_knows_is_frozen():
    class Shift(L.Layer):      # a weight-free layer whose config carries a vector
        def __init__(self, shift=None, **kw):
            super().__init__(**kw)
            self.shift = list(shift)

        def call(self, x):
            return x + keras.ops.convert_to_tensor(self.shift)

        def get_config(self):
            return {**super().get_config(), "shift": self.shift}

    from remotetrimmer_tf.graph import register_handler
    from remotetrimmer_tf.graph.handlers.passthrough import PassThroughHandler
    register_handler(Shift, PassThroughHandler())     # a careless registration
    inp = keras.Input((8, 8, 3))
    x = Shift(shift=np.arange(16.0).tolist(), name="shift")(_features(inp))
    pruner, thin = assert_exact(keras.Model(inp, _tail(x)))
    assert thin.get_layer("c1").filters == 16       # frozen around it, not broken


def test_a_model_that_fails_its_first_call_is_never_returned():
    from remotetrimmer_tf.graph import register_handler
    from remotetrimmer_tf.graph.handlers.registry import LayerHandler

    class Offset(L.Layer):     # per-channel state in neither weights nor config
        def __init__(self, n=16, **kw):
            super().__init__(**kw)
            self.n = n
            self.v = np.arange(n, dtype="float32")

        def call(self, x):
            return x + self.v

        def get_config(self):
            return {**super().get_config(), "n": self.n}

    class Careless(LayerHandler):    # claims pass-through
        def propagate(self, node, ctx):
            return [node.in_maps[0]]

    register_handler(Offset, Careless())
    inp = keras.Input((8, 8, 3))
    x = Offset(name="offset")(_features(inp))
    model = keras.Model(inp, _tail(x))
    with pytest.raises(PruningError) as err:
        rt.Pruner(model, importance="l1", ratio=0.5).prune()
    text = str(err.value)
    assert "\n" not in text and "'offset'" in text


# ------------------------------------------- callables Keras cannot reload
@pytest.mark.parametrize("act", [
    lambda t: keras.ops.relu(t),
    functools.partial(keras.activations.leaky_relu, negative_slope=0.2)],
    ids=["lambda", "partial"])
def test_unserialisable_activation_is_reused_in_process(act):
    from remotetrimmer_tf.graph import register_activation
    register_activation(act)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", activation=act, name="c1")(inp)
    model = keras.Model(inp, _tail(x))
    pruner, thin = assert_exact(model)
    assert thin.get_layer("c1").activation is act
    assert thin.get_layer("c1").filters == 8


def test_closure_activation_is_reused_and_frozen_when_unknown():
    def make(alpha):
        def act(t):
            return keras.ops.relu(t) * alpha
        return act
    act = make(0.5)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", activation=act, name="c1")(inp)
    x = L.Conv2D(16, 3, padding="same", name="c1b")(x)
    model = keras.Model(inp, _tail(x))
    pruner, thin = assert_exact(model, unknown="freeze")
    assert thin.get_layer("c1").activation is act
    assert thin.get_layer("c1b").filters == 8


# ------------------------------------------------------------- recurrent
@pytest.mark.parametrize("make", [lambda: L.LSTM(5), lambda: L.GRU(5),
                                  lambda: L.SimpleRNN(5),
                                  lambda: L.Bidirectional(L.LSTM(3)),
                                  lambda: L.RNN(L.GRUCell(4))],
                         ids=["lstm", "gru", "simple", "bidirectional", "rnn"])
@pytest.mark.parametrize("unknown", ["error", "freeze"])
def test_recurrent_head_after_a_conv_prunes_its_input_channels(make, unknown):
    inp = keras.Input((8, 8, 3))
    x = L.Reshape((64, 16))(_features(inp))
    x = make()(x)
    model = keras.Model(inp, L.Dense(3, name="head")(x))
    pruner, thin = assert_exact(model, unknown=unknown)
    assert thin.get_layer("c1").filters == 8


def test_conv_lstm_and_unknown_cell():
    class MyCell(L.Layer):
        state_size = 4

        def build(self, shape):
            self.k = self.add_weight(shape=(shape[-1], 4))

        def call(self, x, states):
            y = keras.ops.matmul(x, self.k) + states[0]
            return y, [y]

    inp = keras.Input((8, 8, 3))
    x = L.Reshape((64, 16))(_features(inp))
    x = L.RNN(MyCell())(x)
    model = keras.Model(inp, L.Dense(3)(x))
    with pytest.raises(PruningError, match="could be scored|RNN over cell"):
        rt.Pruner(model, importance="l1", ratio=0.5).prune()
    inp = keras.Input((2, 8, 8, 3))
    x = L.TimeDistributed(L.Conv2D(8, 3, padding="same"), name="td")(inp)
    x = L.ConvLSTM2D(4, 3, padding="same", name="clstm")(x)
    x = L.Conv2D(6, 1, name="after")(x)
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    x5 = np.random.default_rng(1).standard_normal((2, 2, 8, 8, 3)).astype("float32")
    assert_exact(model, x=x5, unknown="freeze")


# ---------------------------------------------------------------- Lambda
LAMBDAS = {
    "scale": lambda t: t * 0.1,
    "channel-mean-max": None,    # CBAM spatial attention, below
    "ops": lambda t: keras.ops.relu(t) + 1.0,
}


def test_lambda_scaling_is_traced_and_pruned_through():
    inp = keras.Input((8, 8, 3))
    x = L.Lambda(lambda t: t * 0.1, name="lam")(_features(inp))
    pruner, thin = assert_exact(keras.Model(inp, _tail(x)))
    assert thin.get_layer("c1").filters == 8


def test_cbam_lambdas_channel_mean_and_max_are_exact():
    inp = keras.Input((8, 8, 3))
    x = _features(inp)
    avg = L.Lambda(lambda t: keras.ops.mean(t, axis=-1, keepdims=True), name="avg")(x)
    mx = L.Lambda(lambda t: keras.ops.max(t, axis=-1, keepdims=True), name="max")(x)
    a = L.Conv2D(1, 7, padding="same", activation="sigmoid")(L.Concatenate()([avg, mx]))
    x = L.Multiply()([x, a])
    x = L.Conv2D(12, 3, padding="same", name="c3")(x)
    pruner, thin = assert_exact(keras.Model(inp, _tail(x)))
    assert thin.get_layer("c3").filters == 6          # the rest still prunes
    assert thin.get_layer("c1").filters == 16         # read by a channel mean: frozen


def test_resnext_style_channel_slices_prune_exactly():
    inp = keras.Input((8, 8, 3))
    x = _features(inp)
    parts = [L.Lambda(lambda t, i=i: t[..., 4 * i:4 * i + 4], name=f"s{i}")(x)
             for i in range(4)]
    parts = [L.Conv2D(4, 3, padding="same", name=f"g{i}")(p) for i, p in enumerate(parts)]
    x = L.Concatenate()(parts)
    assert_exact(keras.Model(inp, _tail(x)))


def test_untraceable_lambda_is_frozen_and_the_model_still_works():
    inp = keras.Input((8, 8, 3))
    x = L.Lambda(lambda t: np.asarray(t) * 0.1, output_shape=(8, 8, 16),
                 name="numpy_lam")(_features(inp))
    x = L.Conv2D(16, 3, padding="same", name="c1b")(x)
    model = keras.Model(inp, _tail(x))
    with pytest.raises(PruningError, match="numpy_lam"):
        rt.Pruner(model, importance="l1", ratio=0.5).plan()
    pruner, thin = assert_exact(model, unknown="freeze")
    assert thin.get_layer("numpy_lam").function is model.get_layer("numpy_lam").function


# ------------------------------------------------------ quantized / LoRA
def test_quantized_model_is_refused_before_any_work():
    inp = keras.Input((8, 8, 3))
    x = L.GlobalAveragePooling2D()(_features(inp))
    x = L.Dense(12, name="d1")(x)
    model = keras.Model(inp, L.Dense(3)(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("int8")
    with pytest.raises(PruningError, match=r"'d1'.*quantized.*prune the float model first"):
        rt.Pruner(model, importance="l1", ratio=0.5).plan()


@pytest.mark.parametrize("where", ["dense", "conv"])
def test_lora_layers_prune_exactly(where):
    inp = keras.Input((8, 8, 3))
    x = _features(inp)
    if where == "conv":
        conv = L.Conv2D(12, 3, padding="same", name="lora")
        x = conv(x)
        conv.enable_lora(2)
        x = L.GlobalAveragePooling2D()(x)
    else:
        x = L.GlobalAveragePooling2D()(x)
        dense = L.Dense(12, name="lora")
        x = dense(x)
        dense.enable_lora(2)
    model = keras.Model(inp, L.Dense(3)(x))
    for w in model.get_layer("lora").weights:      # LoRA b starts at 0: make it count
        w.assign(np.random.default_rng(3).standard_normal(w.shape).astype("float32"))
    pruner, thin = assert_exact(model)
    assert thin.get_layer("lora").lora_enabled


# -------------------------------------------------------- errors are ours
def test_a_failing_handler_becomes_one_line_naming_the_layer():
    from remotetrimmer_tf.graph import register_handler
    from remotetrimmer_tf.graph.handlers.registry import LayerHandler

    class Weird(L.Layer):
        def call(self, x):
            return x * 2.0

    class Broken(LayerHandler):
        def propagate(self, node, ctx):
            raise KeyError("oops")

    register_handler(Weird, Broken())
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, _tail(Weird(name="weird")(_features(inp))))
    with pytest.raises(PruningError) as err:
        DependencyGraph(model)
    assert "'weird'" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------- shortfall
def test_shortfall_warns_with_share_and_reasons():
    def unknown_act(t):
        return keras.ops.relu(t)

    inp = keras.Input((8, 8, 3))
    x = inp
    for i in range(4):
        x = L.Conv2D(16, 3, padding="same", activation=unknown_act if i else "relu",
                     name=f"c{i}")(x)
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(x)))
    pruner = rt.Pruner(model, importance="l1", ratio=0.5, unknown="freeze")
    with pytest.warns(UserWarning, match=r"pruned less than asked: 12% .* request of 50%"):
        pruner.prune()
    short = pruner.summary().shortfall
    assert short.short and short.reasons[0][2] == 16 and "unknown_act" in short.reasons[0][0]
    # a model that prunes as asked says nothing
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, _tail(_features(inp)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = rt.Pruner(model, importance="l1", ratio=0.5)
        p.prune()
    assert not p.summary().shortfall.short


# ------------------------------------- silence_dropped vs hand-made zeroing
def _dropped_inputs(graph, keep, layer):
    kept = graph.channel_mask(keep)
    return np.nonzero(~graph.mask_of(graph.nodes[layer].in_maps[0], kept))[0]


def _expected(kind, w, dropped, width):
    w = [a.copy() for a in w]
    for c in dropped:
        if kind == "grouped":
            rows = w[0].shape[-2]
            g, j = divmod(int(c), rows)
            block = w[0].shape[-1] // (width // rows)
            w[0][..., j, g * block:(g + 1) * block] = 0
        elif kind == "separable":
            mult = w[0].shape[-1]
            w[0][..., c, :] = 0
            w[1][..., c * mult:(c + 1) * mult, :] = 0
        elif kind == "transpose":
            w[0][..., c] = 0
        elif kind == "flatten":
            w[0][c::width, :] = 0
        else:
            w[0][..., c, :] = 0
    return w


SILENCE_CASES = {
    "grouped": lambda: L.Conv2D(16, 3, padding="same", groups=4, name="target"),
    "depthwise-as-grouped": lambda: L.Conv2D(16, 3, padding="same", groups=16, name="target"),
    "separable": lambda: L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2,
                                           name="target"),
    "transpose": lambda: L.Conv2DTranspose(6, 3, padding="same", name="target"),
    "flatten": None,
    "plain": lambda: L.Conv2D(6, 3, padding="same", name="target"),
}


@pytest.mark.parametrize("kind", sorted(SILENCE_CASES))
def test_silence_dropped_matches_a_hand_made_reference(kind):
    inp = keras.Input((8, 8, 3))
    x = _features(inp)
    if kind == "flatten":
        x = L.Flatten()(L.Conv2D(4, 3, strides=2, name="pre")(x))
        out = L.Dense(3, name="target")(x)
    else:
        out = L.Dense(3)(L.GlobalAveragePooling2D()(SILENCE_CASES[kind]()(x)))
    model = keras.Model(inp, out)
    for w in model.weights:
        w.assign(np.random.default_rng(5).standard_normal(w.shape).astype("float32"))
    graph = DependencyGraph(model)
    keep = {}
    for g in graph.groups:
        if g.prunable and "target" in g.layers:
            keep[g.index] = list(range(0, g.size, 2))
    assert keep, "the target reads a prunable group"
    quiet = silence_dropped(model, keep, graph=graph)
    dropped = _dropped_inputs(graph, keep, "target")
    width = len(graph.nodes["target"].in_maps[0])
    want = _expected("grouped" if "grouped" in kind else kind,
                     model.get_layer("target").get_weights(), dropped, width)
    got = quiet.get_layer("target").get_weights()
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    thin = prune_channels(quiet, keep, graph=DependencyGraph(quiet))
    np.testing.assert_allclose(_np(quiet(X)), _np(thin(X)), atol=1e-4)


# ------------------------------------------------------- channels_first
CHANNELS_FIRST = r'''
import os, sys
import numpy as np, keras
from keras import layers as L
import remotetrimmer_tf as rt
from remotetrimmer_tf.graph.dead_channels import silence_dropped
inp = keras.Input((3, 8, 8))
x = L.Conv2D(8, 3, padding="same", data_format="channels_first", name="c1")(inp)
x = L.BatchNormalization(axis=1, name="bn1")(x)
x = L.ReLU()(x)
y = L.Conv2D(8, 3, padding="same", data_format="channels_first", name="c2")(x)
x = L.Add()([x, L.BatchNormalization(axis=1)(y)])
x = L.MaxPooling2D(data_format="channels_first")(x)
a = L.Conv2D(4, 1, data_format="channels_first", name="a")(x)
b = L.DepthwiseConv2D(3, padding="same", data_format="channels_first")(x)
x = L.Concatenate(axis=1)([a, b])
x = L.Conv2D(6, 3, data_format="channels_first", name="c3")(x)
f = L.Dense(3)(L.Flatten(data_format="channels_first")(x))
model = keras.Model(inp, f)
p = rt.Pruner(model, importance="l1", ratio=0.5)
keep = p.plan(); thin = p.prune()
q = silence_dropped(model, keep, graph=p.graph)
xb = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype("float32")
np.testing.assert_allclose(np.asarray(q(xb)), np.asarray(thin(xb)), atol=1e-4)
assert thin.get_layer("c1").filters == 4 and thin.get_layer("c3").filters == 3
m = rt.count_macs(thin)
p2 = rt.Pruner(model, importance="l1", target_macs=int(rt.count_macs(model) * 0.5))
t2 = p2.prune()
assert rt.count_macs(t2) == p2.budget_report["achieved"] <= p2.budget_report["target"]
print("OK", m)
'''


@pytest.mark.slow
def test_channels_first_prunes_exactly_on_jax():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", CHANNELS_FIRST], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]


def test_time_distributed_uses_the_wrapped_layers_handler():
    inp = keras.Input((3, 8, 8, 4))
    x = L.TimeDistributed(L.Conv2D(16, 3, padding="same"), name="td1")(inp)
    x = L.TimeDistributed(L.BatchNormalization(), name="tdbn")(x)
    x = L.TimeDistributed(L.Conv2D(8, 3, padding="same"), name="td2")(x)
    x = L.TimeDistributed(L.GlobalAveragePooling2D(), name="tdg")(x)
    model = keras.Model(inp, L.Dense(3)(L.LSTM(4)(x)))
    x5 = np.random.default_rng(2).standard_normal((2, 3, 8, 8, 4)).astype("float32")
    pruner, thin = assert_exact(model, x=x5)
    assert thin.get_layer("td1").layer.filters == 8 and thin.get_layer("td2").layer.filters == 4
    assert rt.count_macs(thin) < rt.count_macs(model)


def test_tf_activation_functions_are_known_by_name():
    tf = pytest.importorskip("tensorflow")
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", activation=tf.nn.relu, name="c1")(inp)
    x = L.Conv2D(16, 3, padding="same", activation=tf.nn.swish, name="c1b")(x)
    pruner, thin = assert_exact(keras.Model(inp, _tail(x)))
    assert thin.get_layer("c1").filters == 8 and thin.get_layer("c1b").filters == 8
