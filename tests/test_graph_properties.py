"""Property tests: random functional CNNs from every supported layer and op.

A seeded generator strings together blocks — conv/BN/activation, residual
adds, multiply gates, our SqueezeExcite, concatenation, channel splits,
spatial pads, depthwise and grouped convolutions, nested functional models,
Flatten→Dense heads and softmax traps (channel-mixing, must be frozen) — and
for every graph checks that

- the no-op rebuild (``keep={}``) reproduces the outputs exactly;
- a plan from ``Pruner(importance="random", ratio=0.9)`` is accepted by the
  surgeon, and removing the plan's channels after silencing them
  (``silence_dropped``) leaves the outputs unchanged: pruning is exact where
  the math says so.

``RT_PROPERTY_GRAPHS`` sets how many graphs run (default 150).
"""
import os

import keras
import numpy as np
import pytest
from keras import layers as L

import remotetrimmer_tf as rt
from remotetrimmer_tf.graph.dead_channels import silence_in_place
from remotetrimmer_tf.models import SqueezeExcite
from remotetrimmer_tf.surgeon import prune_channels

N_GRAPHS = int(os.environ.get("RT_PROPERTY_GRAPHS", "150"))
SHAPE = (6, 6, 3)
X = np.random.default_rng(1).standard_normal((2,) + SHAPE).astype("float32")


class _Gen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.blocks = self.block_sequence(seed)

    @classmethod
    def block_sequence(cls, seed):
        rng = np.random.default_rng([seed, 1])
        return [str(b) for b in rng.choice(cls.BLOCKS, int(rng.integers(2, 6)))]

    def name(self, kind):
        self.n += 1
        return f"{kind}{self.n}"

    def width(self):
        return int(self.rng.choice([4, 6, 8]))

    def conv(self, x, c=None, k=1, **kw):
        return L.Conv2D(c or self.width(), k, padding="same", name=self.name("conv"),
                        **kw)(x)

    def bn_act(self, x):
        x = L.BatchNormalization(name=self.name("bn"))(x)
        act = self.rng.choice(["relu", "hard_swish", "sigmoid", "op_relu", "none"])
        if act == "op_relu":
            return keras.ops.relu(x)
        if act == "none":
            return x
        return L.Activation(str(act), name=self.name("act"))(x)

    # ---------------------------------------------------------- blocks
    def b_conv(self, x):
        return self.bn_act(self.conv(x, k=int(self.rng.choice([1, 3]))))

    def b_residual(self, x):
        y = self.bn_act(self.conv(x, c=x.shape[-1], k=3))
        return L.Add(name=self.name("add"))([x, y]) if self.rng.random() < 0.5 else x + y

    def b_gate(self, x):
        c = x.shape[-1]
        s = L.GlobalAveragePooling2D(keepdims=True, name=self.name("gap"))(x)
        s = L.Conv2D(c, 1, activation="sigmoid", name=self.name("gate"))(s)
        return L.Multiply(name=self.name("mul"))([x, s])

    def b_se(self, x):
        return SqueezeExcite(reduction=2, name=self.name("se"))(x)

    def b_concat(self, x):
        a, b = self.b_conv(x), self.b_conv(x)
        if self.rng.random() < 0.5:
            return L.Concatenate(name=self.name("cat"))([a, b])
        return keras.ops.concatenate([a, b], axis=-1)

    def b_split(self, x):
        x = self.conv(x, c=8)
        a, b = keras.ops.split(x, [int(self.rng.integers(2, 6))], axis=-1)
        return keras.ops.concatenate([self.b_conv(a), b], axis=-1)

    def b_pad(self, x):
        x = keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        return L.Conv2D(self.width(), 3, name=self.name("valid"))(x)

    def b_depthwise(self, x):
        x = L.DepthwiseConv2D(3, padding="same", name=self.name("dw"))(x)
        return self.bn_act(x)

    def b_grouped(self, x):
        x = self.conv(x, c=8)
        return self.bn_act(L.Conv2D(8, 3, padding="same", groups=2,
                                    name=self.name("gconv"))(x))

    def b_nested(self, x):
        inp = keras.Input(x.shape[1:])
        y = L.Conv2D(self.width(), 3, padding="same", name=self.name("inner"))(inp)
        y = L.BatchNormalization(name=self.name("innerbn"))(y)
        sub = keras.Model(inp, L.ReLU(name=self.name("innerrelu"))(y),
                          name=self.name("sub"))
        return sub(x)

    def b_softmax_trap(self, x):
        x = L.BatchNormalization(name=self.name("bn"))(self.conv(x))
        if self.rng.random() < 0.5:
            return L.Activation("softmax", name=self.name("softmax"))(x)
        return keras.ops.softmax(x, axis=-1)

    BLOCKS = ("b_conv", "b_residual", "b_gate", "b_se", "b_concat", "b_split",
              "b_pad", "b_depthwise", "b_grouped", "b_nested", "b_softmax_trap")

    def model(self):
        inp = keras.Input(SHAPE)
        x = self.b_conv(inp)
        for block in self.blocks:
            x = getattr(self, block)(x)
        if self.rng.random() < 0.3:
            x = L.Flatten(name=self.name("flat"))(x)
        else:
            x = L.GlobalAveragePooling2D(name=self.name("gap"))(x)
        out = L.Dense(3, name=self.name("head"))(x)
        model = keras.Model(inp, out, name=f"random{self.n}")
        for layer in model.layers:        # non-trivial BN statistics
            if isinstance(layer, L.BatchNormalization):
                g, b, m, v = layer.get_weights()
                layer.set_weights([self.rng.uniform(0.5, 1.5, g.shape),
                                   self.rng.normal(0, 0.2, b.shape),
                                   self.rng.normal(0, 0.2, m.shape),
                                   self.rng.uniform(0.5, 1.5, v.shape)])
        return model


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.max(np.abs(a - b)) <= 1e-4 * max(1.0, np.max(np.abs(a)))


@pytest.mark.slow     # the long property run (test_graph covers every block fast)
@pytest.mark.parametrize("chunk", range(5))
def test_random_graphs_prune_exactly(chunk):
    seeds = range(chunk, N_GRAPHS, 5)
    for seed in seeds:
        model = _Gen(seed).model()
        ref = model(X)
        pruner = rt.Pruner(model, importance="random", ratio=0.9, seed=seed)
        try:
            keep = pruner.plan()
        except ValueError as err:     # every group frozen (e.g. softmax traps)
            assert "could be scored" in str(err), (seed, err)
            continue
        graph = pruner.graph
        quiet = prune_channels(model, {}, graph=graph)
        assert _close(ref, quiet(X)), f"no-op, seed {seed}"
        silence_in_place(quiet, keep, graph)
        small = prune_channels(quiet, keep)
        assert _close(quiet(X), small(X)), f"dead channels, seed {seed}"
        for g in graph.groups:
            if any(n.startswith(("softmax",)) for n in g.layers):
                assert not g.prunable, f"softmax trap prunable, seed {seed}"


def test_generator_covers_every_block():
    used = {b for seed in range(N_GRAPHS) for b in _Gen.block_sequence(seed)}
    assert used == set(_Gen.BLOCKS)
