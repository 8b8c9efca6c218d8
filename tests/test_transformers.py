"""Vision transformers written in Keras: whole attention heads and MLP widths.

Every model here is a small ViT-like network on 3-D token tensors. The
checks are the ones the CNNs pass: the no-op rebuild is exact; a plan's
dropped channels (heads, MLP units) silenced with ``silence_dropped`` and
then removed leave the outputs unchanged; ``PlanCost`` counts what
``count_macs`` / ``count_params`` count on the pruned model; the pruned model
saves and reloads. Heads are kept or dropped whole (``ChannelGroup.units``),
at least one per layer.
"""

import math
import os

import keras
import numpy as np
import pytest
from keras import layers as L

import remotetrimmer_tf as rt
from remotetrimmer_tf.budget import PlanCost
from remotetrimmer_tf.graph import (DependencyGraph, LayerHandler, WeightAxes,
                                    register_handler, silence_dropped)
from remotetrimmer_tf.surgeon import prune_channels
from helpers import fast_first, load_tool

TOKENS, WIDTH = 6, 16
X = np.random.default_rng(0).standard_normal((2, TOKENS, 8)).astype("float32")


@keras.saving.register_keras_serializable("test_transformers")
class ClassToken(L.Layer):
    """A learned token prepended along the token axis (as users write it)."""

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]),
                                     initializer="random_normal")

    def call(self, x):
        tok = keras.ops.tile(self.token, [keras.ops.shape(x)[0], 1, 1])
        return keras.ops.concatenate([tok, x], axis=1)

    def compute_output_shape(self, s):
        return (s[0], None if s[1] is None else s[1] + 1, s[2])


@keras.saving.register_keras_serializable("test_transformers")
class PositionEmbedding(L.Layer):
    """``x + pos`` with a learned ``(tokens, channels)`` table."""

    def build(self, input_shape):
        self.pos = self.add_weight(name="pos", shape=tuple(input_shape[1:]),
                                   initializer="random_normal")

    def call(self, x):
        return x + self.pos


class TokenHandler(LayerHandler):
    """The user's one handler: channel-wise, weights sliced on their last axis."""

    def propagate(self, node, ctx):
        ctx.channelwise(node, node.in_maps[0])
        return [node.in_maps[0]]

    def weight_axes(self, layer):
        return {0: WeightAxes(out_axis=-1, in_axis=-1)}


register_handler(ClassToken, TokenHandler())
register_handler(PositionEmbedding, TokenHandler())


def attention(x, kind, name, key_dim=4, value_dim=None, heads=4):
    if kind == "gqa":
        return L.GroupQueryAttention(key_dim, heads, 2, name=name)(x, x)
    return L.MultiHeadAttention(heads, key_dim, value_dim=value_dim, name=name)(x, x)


def mlp(x, kind, name, hidden=24):
    if kind == "gated":            # SwiGLU-like: silu(a) * b
        a = L.Dense(hidden, name=name + "_a")(x)
        b = L.Dense(hidden, name=name + "_b")(x)
        x = keras.ops.silu(a) * b
    else:
        x = L.Dense(hidden, activation="gelu", name=name + "_fc1")(x)
    return L.Dense(WIDTH, name=name + "_fc2")(x)


def vit(norm="pre", attn="mha", mlp_kind="plain", cls=False, blocks=2, value_dim=None,
        pool="gap"):
    inp = keras.Input((TOKENS, 8))
    x = L.Dense(WIDTH, name="embed")(inp)
    if cls:
        x = PositionEmbedding(name="pos")(ClassToken(name="cls")(x))
    for i in range(blocks):
        n = f"b{i}"
        if norm == "pre":
            x = x + attention(L.LayerNormalization(name=n + "_ln1")(x), attn, n + "_attn",
                              value_dim=value_dim)
            x = x + mlp(L.LayerNormalization(name=n + "_ln2")(x), mlp_kind, n + "_mlp")
        else:
            x = L.LayerNormalization(name=n + "_ln1")(
                x + attention(x, attn, n + "_attn", value_dim=value_dim))
            x = L.LayerNormalization(name=n + "_ln2")(x + mlp(x, mlp_kind, n + "_mlp"))
    x = L.LayerNormalization(name="final_ln")(x)
    x = x[:, 0] if pool == "cls" else L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="head")(x), name=f"vit_{norm}_{attn}")


def _close(a, b, tol=1e-4):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and float(np.max(np.abs(a - b))) <= tol * max(1.0, np.abs(a).max())


def _exact(model, keep, graph):
    """No-op rebuild exact; dropped channels silenced then removed: unchanged."""
    assert _close(model(X), prune_channels(model, {}, graph=graph)(X))
    quiet = silence_dropped(model, keep, graph=graph)
    small = prune_channels(quiet, keep, graph=DependencyGraph(quiet))
    assert _close(quiet(X), small(X))
    return small


def _heads(graph):
    return [g for g in graph.groups if g.units is not None]


CASES = [dict(norm="pre"), dict(norm="post"), dict(attn="gqa"), dict(mlp_kind="gated"),
         dict(cls=True, pool="cls"), dict(value_dim=6), dict(attn="gqa", norm="post")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_vit_blocks_prune_heads_and_mlp_exactly(case):
    keras.utils.set_random_seed(1)
    model = vit(**case)
    pruner = rt.Pruner(model, importance="l1", ratio=0.5)
    keep = pruner.plan()
    graph = pruner.graph
    heads = _heads(graph)
    assert len(heads) == 2 and all(g.prunable for g in heads)
    kind = "query heads" if case.get("attn") == "gqa" else "heads"
    for g in heads:                      # whole units, half of them
        assert g.index in keep, kind
        kept = np.isin(g.units, keep[g.index])
        assert (kept.all(axis=1) | ~kept.any(axis=1)).all()
        assert kept.all(axis=1).sum() == len(g.units) // 2
    mlp_groups = [g for g in graph.groups if any(m.layer.endswith(("_fc2",))
                                                 for m in g.consumers) and g.prunable]
    assert mlp_groups and all(g.index in keep for g in mlp_groups)
    small = _exact(model, keep, graph)
    cost = PlanCost(graph)
    assert cost.macs(keep) == rt.count_macs(small)
    assert cost.params(keep) == rt.count_params(small, trainable_only=True)
    attn = small.get_layer("b0_attn")
    if case.get("attn") == "gqa":
        assert (attn.num_query_heads, attn.num_key_value_heads) == (2, 1)
    else:
        assert attn.num_heads == 2


def test_pruned_vit_saves_and_reloads(tmp_path):
    keras.utils.set_random_seed(2)
    model = vit(cls=True, value_dim=6)
    small = rt.Pruner(model, importance="l2", ratio=0.5).prune()
    path = os.path.join(tmp_path, "small.keras")
    small.save(path)
    again = keras.saving.load_model(path)
    assert _close(small(X), again(X), tol=1e-6)


def test_at_least_one_head_kept_and_global_scope():
    keras.utils.set_random_seed(3)
    model = vit()
    for scope in ("local", "global"):
        pruner = rt.Pruner(model, importance="l1", ratio=0.9, scope=scope)
        small = pruner.prune()
        for i in range(2):
            assert small.get_layer(f"b{i}_attn").num_heads >= 1
        for g in _heads(pruner.graph):
            kept = pruner.plan().get(g.index, g.units.reshape(-1))
            assert len(kept) % g.units.shape[1] == 0 and len(kept) >= g.units.shape[1]


def test_a_plan_splitting_a_head_is_refused_in_one_line():
    model = vit(blocks=1)
    graph = DependencyGraph(model)
    g = _heads(graph)[0]
    with pytest.raises(ValueError, match="attention head"):
        prune_channels(model, {g.index: np.arange(g.size - 1)}, graph=graph)


def test_head_importance_reduces_the_heads_qkvo_slices():
    keras.utils.set_random_seed(4)
    model = vit(blocks=1, value_dim=6)
    pruner = rt.Pruner(model, importance="l1", ratio=0.5)
    pruner.plan()
    g = _heads(pruner.graph)[0]
    layer = model.get_layer("b0_attn")
    w = {v.path.split("/")[-2] + "/" + v.path.split("/")[-1]: np.abs(v.numpy())
         for v in layer.weights}
    expect = [w["query/kernel"][:, h].sum() + w["query/bias"][h].sum()
              + w["key/kernel"][:, h].sum() + w["key/bias"][h].sum()
              + w["value/kernel"][:, h].sum() + w["value/bias"][h].sum()
              + w["attention_output/kernel"][h].sum() for h in range(4)]
    got = pruner.scores[g.index][g.units[:, 0]]
    assert np.allclose(got, expect)


def test_taylor_scores_heads():
    keras.utils.set_random_seed(5)
    model = vit(attn="gqa")
    y = np.array([0, 1], "int32")
    pruner = rt.Pruner(model, importance="taylor", ratio=0.5)
    keep = pruner.plan(data=(X, y))
    for g in _heads(pruner.graph):
        s = pruner.scores[g.index]
        assert np.all(s >= 0) and np.all(s[g.units] == s[g.units[:, :1]])
    _exact(model, keep, pruner.graph)


def _mha_macs(t, s, d, h, kd, vd, out):
    return t * d * h * kd + s * d * h * kd + s * d * h * vd + t * h * vd * out \
        + t * s * h * (kd + vd)


def test_count_macs_includes_the_attention_matmuls():
    q, kv = keras.Input((5, 8)), keras.Input((7, 6))
    y = L.MultiHeadAttention(3, 4, value_dim=2, output_shape=10, name="mha")(q, kv)
    model = keras.Model([q, kv], y)
    expect = 5 * 8 * 3 * 4 + 7 * 6 * 3 * 4 + 7 * 6 * 3 * 2 + 5 * 3 * 2 * 10 + 5 * 7 * 3 * (4 + 2)
    assert rt.count_macs(model) == expect
    # self-attention on a 2-D grid: attention_axes over both spatial axes
    inp = keras.Input((3, 4, 8))
    y = L.MultiHeadAttention(2, 4, attention_axes=(1, 2), name="mha2d")(inp, inp)
    assert rt.count_macs(keras.Model(inp, y)) == _mha_macs(12, 12, 8, 2, 4, 4, 8)


@pytest.mark.parametrize("kwargs", [dict(output_shape=(2, 6)), dict(use_gate=True),
                                    dict(attention_axes=(1, 2))])
def test_mha_options_prune_exactly(kwargs):
    keras.utils.set_random_seed(6)
    inp = keras.Input((3, 4, 8) if "attention_axes" in kwargs else (TOKENS, 8))
    x = L.Dense(12, name="proj")(inp)
    y = L.MultiHeadAttention(4, 3, name="mha", **kwargs)(x, x)
    y = L.Dense(5, name="after")(L.Dense(9, name="mid")(y))
    model = keras.Model(inp, y)
    xs = np.random.default_rng(1).standard_normal((2,) + tuple(inp.shape[1:]))
    pruner = rt.Pruner(model, importance="l1", ratio=0.5)
    keep = pruner.plan()
    graph = pruner.graph
    assert any(g.units is not None and g.index in keep for g in graph.groups)
    quiet = silence_dropped(model, keep, graph=graph)
    small = prune_channels(quiet, keep, graph=DependencyGraph(quiet))
    assert _close(quiet(xs), small(xs))
    assert PlanCost(graph).macs(keep) == rt.count_macs(small)


def test_cross_attention_keeps_query_value_and_key_widths_apart():
    keras.utils.set_random_seed(7)
    q, kv = keras.Input((5, 8)), keras.Input((7, 6))
    a = L.Dense(10, name="qproj")(q)
    v = L.Dense(12, name="vproj")(kv)
    k = L.Dense(14, name="kproj")(kv)
    y = L.MultiHeadAttention(2, 4, name="mha")(a, v, key=k)
    model = keras.Model([q, kv], L.Dense(3, name="out")(y))
    graph = DependencyGraph(model)
    slots = {m.slot: g.index for g in graph.groups for m in g.consumers if m.layer == "mha"}
    assert len({slots["query"], slots["value"], slots["key"]}) == 3
    keep = rt.Pruner(model, importance="l1", ratio=0.5).plan()
    xs = [np.ones((1, 5, 8), "float32"), np.linspace(0, 1, 42, dtype="float32").reshape(1, 7, 6)]
    quiet = silence_dropped(model, keep, graph=graph)
    assert _close(quiet(xs), prune_channels(quiet, keep)(xs))


def test_returned_attention_scores_freeze_the_heads():
    inp = keras.Input((TOKENS, 8))
    y, scores = L.MultiHeadAttention(2, 4, name="mha")(inp, inp, return_attention_scores=True)
    model = keras.Model(inp, [L.Dense(3)(y), scores])
    g = [g for g in DependencyGraph(model).groups if g.units is not None][0]
    assert not g.prunable and "attention scores" in g.reason


def test_einsum_dense_follows_the_equation():
    keras.utils.set_random_seed(8)
    inp = keras.Input((TOKENS, 8))
    a = L.EinsumDense("abc,cd->abd", output_shape=(TOKENS, 12), bias_axes="d", name="dense")(inp)
    b = L.EinsumDense("abc,cde->abde", output_shape=(TOKENS, 2, 5), name="heads")(a)
    b = L.Reshape((TOKENS, 10))(b)
    c = L.EinsumDense("abc,bd->adc", output_shape=(3, 10), name="tokmix")(b)
    model = keras.Model(inp, L.Dense(2, name="out")(c))
    graph = DependencyGraph(model)
    assert graph.groups[graph.groups_of("dense")[-1]].prunable
    keep = rt.Pruner(model, importance="l1", ratio=0.5).plan()
    assert keep
    _exact_any(model, keep, graph, np.random.default_rng(2).standard_normal((2, TOKENS, 8)))
    assert PlanCost(graph).macs({}) == rt.count_macs(model) == \
        TOKENS * 8 * 12 + TOKENS * 12 * 2 * 5 + 3 * TOKENS * 10 + 3 * 10 * 2


def _exact_any(model, keep, graph, xs):
    quiet = silence_dropped(model, keep, graph=graph)
    assert _close(quiet(xs), prune_channels(quiet, keep)(xs))


def test_einsum_dense_that_moves_the_channel_axis_is_frozen():
    inp = keras.Input((TOKENS, 8))
    y = L.EinsumDense("abc,cd->acd", output_shape=(8, 4), name="moves")(L.Dense(8)(inp))
    graph = DependencyGraph(keras.Model(inp, L.Dense(2)(y)))
    reasons = {g.reason for g in graph.groups if not g.prunable}
    assert any("moves the channel axis" in (r or "") for r in reasons)


def test_mlp_on_token_tensors_is_exact():
    keras.utils.set_random_seed(9)
    inp = keras.Input((TOKENS, 8))
    x = L.Dense(32, activation="gelu", name="fc1")(inp)
    x = L.Dropout(0.1)(x)
    y = L.Dense(8, name="fc2")(x)
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling1D()(y + inp)))
    pruner = rt.Pruner(model, importance="l2", ratio=0.5)
    keep = pruner.plan()
    assert [len(v) for v in keep.values()] == [16]
    _exact(model, keep, pruner.graph)


def test_layernorm_residual_stream_is_an_opt_in_approximation():
    model = vit(blocks=1)
    frozen = rt.Pruner(model, importance="l1", ratio=0.5)
    frozen.plan()
    assert not frozen.approximate_groups
    with pytest.warns(UserWarning, match="approximately"):
        approx = rt.Pruner(model, importance="l1", ratio=0.5, approximate=("layernorm",))
        small = approx.prune()
    assert approx.approximate_groups
    assert small.get_layer("embed").units == WIDTH // 2
    assert math.isfinite(float(np.asarray(small(X)).sum()))


# ------------------------------------------------------------------ random graphs
N_GRAPHS = int(os.environ.get("RT_PROPERTY_GRAPHS_TRANSFORMERS", "40"))


class _Gen:
    """Random transformer stacks from every supported block (seeded)."""

    BLOCKS = ("pre", "post", "bare", "gqa", "mlp", "gated", "cls", "einsum", "cross")

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.blocks = [str(b) for b in self.rng.choice(self.BLOCKS, int(self.rng.integers(2, 5)))]
        self.n = 0

    def name(self, kind):
        self.n += 1
        return f"{kind}{self.n}"

    def pick(self, *xs):
        return xs[int(self.rng.integers(len(xs)))]

    def mha(self, q, kv=None):
        heads, kd = self.pick(2, 3, 4), self.pick(2, 3)
        return L.MultiHeadAttention(heads, kd, value_dim=self.pick(None, 2, 5),
                                    use_gate=bool(self.rng.random() < 0.3),
                                    name=self.name("mha"))(q, q if kv is None else kv)

    def ln(self, x):
        return L.LayerNormalization(name=self.name("ln"))(x)

    def block(self, kind, x):
        if kind == "pre":
            return x + self.mha(self.ln(x))
        if kind == "post":
            return self.ln(x + self.mha(x))
        if kind == "bare":               # no norm: the residual stream is prunable
            return L.Add(name=self.name("add"))([x, self.mha(x)])
        if kind == "gqa":
            y = L.GroupQueryAttention(self.pick(2, 3), 4, self.pick(1, 2),
                                      name=self.name("gqa"))(self.ln(x), self.ln(x))
            return x + y
        if kind in ("mlp", "gated"):
            return x + mlp(x, "gated" if kind == "gated" else "plain", self.name("mlp"),
                           hidden=self.pick(8, 12))
        if kind == "cls":
            return PositionEmbedding(name=self.name("pos"))(ClassToken(name=self.name("cls"))(x))
        if kind == "einsum":
            y = L.EinsumDense("abc,cd->abd", output_shape=(x.shape[1], 12),
                              activation="relu", name=self.name("ein"))(x)
            return x + L.Dense(WIDTH, name=self.name("back"))(y)
        other = L.Dense(self.pick(6, 10), name=self.name("ctx"))(x)    # cross
        return x + self.mha(x, other)

    def model(self):
        inp = keras.Input((TOKENS, 8))
        x = L.Dense(WIDTH, name="embed")(inp)
        for kind in self.blocks:
            x = self.block(kind, x)
        x = L.GlobalAveragePooling1D(name="gap")(x)
        return keras.Model(inp, L.Dense(3, name="head")(x), name=f"rand{self.n}")


@pytest.mark.parametrize("chunk", fast_first(range(4)))
def test_random_transformer_graphs_prune_exactly(chunk):
    from remotetrimmer_tf.graph.dead_channels import silence_in_place
    for seed in range(chunk, N_GRAPHS, 4):
        keras.utils.set_random_seed(seed)
        gen = _Gen(seed)
        model = gen.model()
        ref = model(X)
        pruner = rt.Pruner(model, importance="random", ratio=0.9, seed=seed)
        try:
            keep = pruner.plan()
        except ValueError as err:     # every group frozen (norms, single heads)
            assert "could be scored" in str(err), (seed, err)
            continue
        graph = pruner.graph
        quiet = prune_channels(model, {}, graph=graph)
        assert _close(ref, quiet(X)), f"no-op, seed {seed} {gen.blocks}"
        silence_in_place(quiet, keep, graph)
        small = prune_channels(quiet, keep)
        assert _close(quiet(X), small(X)), f"dead channels, seed {seed} {gen.blocks}"
        assert PlanCost(graph).macs(keep) == rt.count_macs(small), (seed, gen.blocks)
        for g in _heads(graph):
            if g.index in keep:
                kept = np.isin(g.units, keep[g.index])
                assert (kept.all(axis=1) | ~kept.any(axis=1)).all() and kept.any()


def test_transformer_generator_covers_every_block():
    used = {b for seed in range(N_GRAPHS) for b in _Gen(seed).blocks}
    assert used == set(_Gen.BLOCKS)


# ------------------------------------------------------------------ subclassed
class ViTBlock(L.Layer):
    def __init__(self, dim, heads, **kw):
        super().__init__(**kw)
        self.ln1, self.ln2 = L.LayerNormalization(), L.LayerNormalization()
        self.attn = L.MultiHeadAttention(heads, dim // heads)
        self.fc1, self.fc2 = L.Dense(dim * 2, activation="gelu"), L.Dense(dim)

    def call(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h)
        return x + self.fc2(self.fc1(self.ln2(x)))


class SubclassedViT(keras.Model):
    """``class MyViT(keras.Model)``: the call composes layers and keras.ops."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.patch = L.Conv2D(16, 4, strides=4)
        self.blocks = [ViTBlock(16, 4) for _ in range(2)]
        self.norm, self.head = L.LayerNormalization(), L.Dense(3)

    def call(self, x):
        x = self.patch(x)
        x = keras.ops.reshape(x, (-1, x.shape[1] * x.shape[2], x.shape[3]))
        for block in self.blocks:
            x = block(x)
        return self.head(keras.ops.mean(self.norm(x), axis=1))


def test_subclassed_vit_is_traced_and_prunes_exactly():
    keras.utils.set_random_seed(10)
    model = SubclassedViT()
    xs = np.random.default_rng(3).standard_normal((2, 16, 16, 3)).astype("float32")
    model(xs)
    pruner = rt.Pruner(model, importance="l1", ratio=0.5)
    keep = pruner.plan()
    assert len([g for g in pruner.graph.groups if g.units is not None and g.index in keep]) == 2
    small = pruner.prune()
    assert [layer.num_heads for layer in small.layers
            if isinstance(layer, L.MultiHeadAttention)] == [2, 2]
    quiet = silence_dropped(model, keep, graph=pruner.graph)
    assert _close(quiet(xs), prune_channels(quiet, keep)(xs))
    assert _close(model(xs), prune_channels(model, {}, graph=pruner.graph)(xs))


def test_subclassed_model_with_its_own_weights_is_refused_in_one_line():
    class OwnWeights(keras.Model):
        def build(self, shape):
            self.scale = self.add_weight(shape=(shape[-1],))
            self.fc = L.Dense(2)

        def call(self, x):
            return self.fc(x * self.scale)

    model = OwnWeights()
    model(np.ones((1, 3), "float32"))
    with pytest.raises(TypeError) as err:
        rt.Pruner(model, importance="l1", ratio=0.5)
    assert "OwnWeights" in str(err.value) and "owns weights" in str(err.value)


# ------------------------------------------------------------------ keras.io ViT
def _keras_vits():
    return load_tool("keras_vits")


def test_keras_io_vit_example_prunes_exactly_and_reloads(tmp_path):
    """Patches (weightless, traced), PatchEncoder (its position embedding is
    called on ops.arange: kept a layer, ConstantCall), a Flatten head."""
    kv = _keras_vits()
    keras.utils.set_random_seed(11)
    model = kv.keras_io_vit()
    xs = np.random.default_rng(4).standard_normal((2, kv.SIZE, kv.SIZE, 3)).astype("float32")
    pruner = rt.Pruner(model, importance="l1", ratio=0.5)
    keep = pruner.plan()
    graph = pruner.graph
    assert _close(model(xs), prune_channels(model, {}, graph=graph)(xs))
    quiet = silence_dropped(model, keep, graph=graph)
    assert _close(quiet(xs), prune_channels(quiet, keep)(xs))
    small = pruner.prune()
    assert [layer.num_heads for layer in small.layers
            if isinstance(layer, L.MultiHeadAttention)] == [2, 2]
    table = [w for w in small.weights if "embeddings" in w.path]
    assert table and all(w.trainable for w in table)      # still a trained weight
    path = os.path.join(tmp_path, "vit.keras")
    small.save(path)
    assert _close(small(xs), keras.saving.load_model(path)(xs), tol=1e-6)


def test_the_docs_example_runs():
    """docs/vision_transformers.md: its python block runs and prints what it says."""
    import contextlib
    import io
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" /
            "vision_transformers.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "vision_transformers.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "[2, 2]" and lines[-1] == "True"
