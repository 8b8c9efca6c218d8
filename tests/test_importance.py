"""Importance criteria: group → per-channel scores."""
import os

import keras
import numpy as np
import pytest

from remotetrimmer_tf.attention import collect_attention, fold_attention
from remotetrimmer_tf.export.litert import float64_clone
from remotetrimmer_tf.graph import DependencyGraph
from remotetrimmer_tf.importance import (NoScoreError, available, cap, fpgm,
                                         get_importance, l1, l2, random,
                                         reduce_scores, register_importance, slim,
                                         taylor)
from remotetrimmer_tf.models import SqueezeExcite
from remotetrimmer_tf.pruner import Pruner

EUROSAT = "/work/shared/data/eurosat/2750"

RNG = np.random.default_rng(7)
X = RNG.normal(size=(12, 10, 10, 3)).astype("float32")
Y = (np.arange(12) % 3).astype("int32")


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(-1.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])
        elif isinstance(layer, SqueezeExcite):
            layer.set_weights([rng.normal(0, 0.7, w.shape) for w in layer.get_weights()])
    return model


def residual_model(se=False, seed=0):
    """c0-bn0-relu[-se0] → (+ c1-bn1[-se1]) → head; c2-bn2-relu in between."""
    inp = keras.Input((10, 10, 3), name="input")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c0")(inp)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.ReLU(name="r0")(x)
    if se:
        x = SqueezeExcite(4, name="se0")(x)
    y = keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="c2")(x)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    y = keras.layers.ReLU(name="r2")(y)
    if se:
        y = SqueezeExcite(2, name="se2")(y)
    y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(y)
    y = keras.layers.BatchNormalization(name="bn1")(y)
    if se:
        y = SqueezeExcite(4, name="se1")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(5, name="fc1")(x)
    x = keras.layers.ReLU(name="fc1_relu")(x)
    out = keras.layers.Dense(3, name="fc")(x)
    return randomize(keras.Model(inp, out), seed)


def group_with(graph, layer):
    return next(g for g in graph.groups if any(m.layer == layer for m in g.producers))


def gamma(model, name):
    return model.get_layer(name).gamma.numpy().astype(np.float64)


def kernel(model, name):
    return model.get_layer(name).kernel.numpy().astype(np.float64)


@pytest.fixture(scope="module")
def plain():
    keras.utils.set_random_seed(0)  # the kernels too: same model in every worker
    model = residual_model()
    return model, DependencyGraph(model)


def test_slim_is_mean_abs_gamma_over_the_groups_bns(plain):
    model, graph = plain
    g = group_with(graph, "c0")
    assert {m.layer for m in g.producers} == {"c0", "c1"}
    expected = (np.abs(gamma(model, "bn0")) + np.abs(gamma(model, "bn1"))) / 2
    np.testing.assert_allclose(slim(g, model), expected, rtol=1e-6)
    np.testing.assert_allclose(slim(g, model, reduction="max"),
                               np.maximum(np.abs(gamma(model, "bn0")),
                                          np.abs(gamma(model, "bn1"))), rtol=1e-6)
    g2 = group_with(graph, "c2")
    np.testing.assert_allclose(slim(g2, model), np.abs(gamma(model, "bn2")), rtol=1e-6)
    with pytest.raises(NoScoreError, match="no BatchNormalization"):
        slim(group_with(graph, "fc1"), model)


def test_reductions():
    a, b = np.array([1.0, 4.0]), np.array([3.0, 2.0])
    assert reduce_scores([a, b], "mean").tolist() == [2.0, 3.0]
    assert reduce_scores([a, b], "max").tolist() == [3.0, 4.0]
    assert reduce_scores([a, b], "sum").tolist() == [4.0, 6.0]
    assert reduce_scores([a, b], "prod").tolist() == [3.0, 8.0]
    assert reduce_scores([a, b], "first").tolist() == [1.0, 4.0]
    assert reduce_scores([a, b], lambda s: s.min(axis=0)).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="Unknown reduction"):
        reduce_scores([a], "median")


def test_cap_is_gamma_times_mean_attention_and_equals_slim_after_folding():
    model = residual_model(se=True, seed=3)
    att = collect_attention(model, X)
    graph = DependencyGraph(model)
    g = group_with(graph, "c0")
    expected = (np.abs(gamma(model, "bn0")) * att["se0"]
                + np.abs(gamma(model, "bn1")) * att["se1"]) / 2
    scores = cap(g, model, attention=att)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert not np.allclose(np.argsort(scores), np.argsort(slim(g, model)))
    folded = fold_attention(model, att)
    fgraph = DependencyGraph(folded)
    for group in graph.groups:
        if not group.prunable or not group.channelwise:
            continue
        producers = {m.layer for m in group.producers}
        twin = next(f for f in fgraph.groups if {m.layer for m in f.producers} == producers)
        try:
            expected = slim(twin, folded)
        except NoScoreError:
            continue
        np.testing.assert_allclose(cap(group, model, attention=att), expected, rtol=1e-5)


def test_cap_errors(plain):
    model, graph = plain
    with pytest.raises(ValueError, match="no SqueezeExcite"):
        cap(group_with(graph, "c0"), model, attention={})
    se_model = residual_model(se=True)
    se_graph = DependencyGraph(se_model)
    with pytest.raises(ValueError, match="attention"):
        cap(group_with(se_graph, "c0"), se_model)
    with pytest.raises(ValueError, match="shape"):
        cap(group_with(se_graph, "c0"), se_model,
            attention={"se0": np.ones(8), "se1": np.ones(8), "se2": np.ones(3)})


def test_l1_l2_are_filter_norms(plain):
    model, graph = plain
    g = group_with(graph, "c0")
    w0 = kernel(model, "c0").reshape(-1, 8)
    w1 = kernel(model, "c1").reshape(-1, 8)
    np.testing.assert_allclose(l1(g, model), (np.abs(w0).sum(0) + np.abs(w1).sum(0)) / 2,
                               rtol=1e-6)
    np.testing.assert_allclose(
        l2(g, model, reduction="first"), np.sqrt((w0 ** 2).sum(0)), rtol=1e-6)
    dense = group_with(graph, "fc1")
    np.testing.assert_allclose(l1(dense, model), np.abs(kernel(model, "fc1")).sum(0),
                               rtol=1e-6)


def test_fpgm_is_sum_of_distances_to_other_filters(plain):
    model, graph = plain
    g = group_with(graph, "c2")
    w = kernel(model, "c2").reshape(-1, 6).T
    expected = [sum(np.linalg.norm(w[i] - w[j]) for j in range(6)) for i in range(6)]
    np.testing.assert_allclose(fpgm(g, model), expected, rtol=1e-5)


def test_random_is_reproducible(plain):
    model, graph = plain
    g = group_with(graph, "c0")
    np.testing.assert_array_equal(random(g, model, seed=1), random(g, model, seed=1))
    assert not np.array_equal(random(g, model, seed=1), random(g, model, seed=2))
    assert random(g, model).shape == (8,)


def _loss(model, x, y):
    """The float64 probe's loss (a ``float64_clone``)."""
    logits = model(x.astype("float64"), training=False)
    fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    return float(keras.ops.convert_to_numpy(fn(y, logits)))


def test_taylor_matches_finite_differences(plain):
    model, graph = plain
    # float64, so finite differences are exact enough for a step small
    # enough to stay between ReLU kinks
    probe = float64_clone(model)
    # BN group: d/dt L(γ_c(1+t), β_c(1+t)) at 0 = γ_c ∂L/∂γ_c + β_c ∂L/∂β_c
    g = group_with(graph, "c2")
    scores = taylor(g, model, data=(X, Y), steps=2, cache={})
    bn = probe.get_layer("bn2")
    base = bn.get_weights()
    eps = 1e-4  # float64 probe: small steps do not cross a ReLU kink
    fd = []
    for c in range(6):
        vals = []
        for t in (eps, -eps):
            w = [v.copy() for v in base]
            w[0][c] *= 1 + t
            w[1][c] *= 1 + t
            bn.set_weights(w)
            vals.append(_loss(probe, X, Y))
        fd.append(abs(vals[0] - vals[1]) / (2 * eps))
    bn.set_weights(base)
    np.testing.assert_allclose(scores, fd, rtol=0.05, atol=1e-5)
    # group without BN: the producer's filter and bias
    g = group_with(graph, "fc1")
    scores = taylor(g, model, data=(X, Y), steps=2)
    dense = probe.get_layer("fc1")
    base = dense.get_weights()
    fd = []
    for c in range(5):
        vals = []
        for t in (eps, -eps):
            w = [v.copy() for v in base]
            w[0][:, c] *= 1 + t
            w[1][c] *= 1 + t
            dense.set_weights(w)
            vals.append(_loss(probe, X, Y))
        fd.append(abs(vals[0] - vals[1]) / (2 * eps))
    np.testing.assert_allclose(scores, fd, rtol=0.05, atol=1e-5)
    with pytest.raises(ValueError, match="labelled"):
        taylor(group_with(graph, "c2"), model, data=X)


def test_registry():
    assert available() == ["cap", "fpgm", "l1", "l2", "random", "slim", "taylor"]
    assert get_importance("SLIM") is slim
    fn = lambda group, model, **ctx: np.ones(group.size)  # noqa: E731
    assert get_importance(fn) is fn
    with pytest.raises(ValueError, match="Unknown importance 'gamma'"):
        get_importance("gamma")
    from remotetrimmer_tf.importance import _REGISTRY
    register_importance("test_ones", fn)
    try:
        assert get_importance("test_ones") is fn
        with pytest.raises(ValueError, match="already registered"):
            register_importance("test_ones", fn)
    finally:
        _REGISTRY.pop("test_ones")


def _eurosat(per_class=30, size=32):
    from PIL import Image
    xs, ys = [], []
    for k, cls in enumerate(sorted(os.listdir(EUROSAT))):
        folder = os.path.join(EUROSAT, cls)
        for f in sorted(os.listdir(folder))[:per_class]:
            with Image.open(os.path.join(folder, f)) as im:
                im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                xs.append(np.asarray(im, np.float32) / 255.0)
            ys.append(k)
    x = np.stack(xs)
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    return x.astype("float32"), np.asarray(ys, np.int32)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(EUROSAT), reason="EuroSAT folder not present")
def test_cap_and_slim_pick_different_channels_on_a_trained_se_model():
    """A tiny SE net trained briefly on 300 real EuroSAT images."""
    x, y = _eurosat()
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = inp
    for i, (filters, stride) in enumerate([(16, 1), (32, 2), (32, 2)]):
        h = keras.layers.Conv2D(filters, 3, strides=stride, padding="same",
                                use_bias=False, name=f"c{i}")(h)
        h = keras.layers.BatchNormalization(name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"r{i}")(h)
        h = SqueezeExcite(4, name=f"se{i}")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="fc")(h))
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    assert history.history["accuracy"][-1] > 0.3            # it learned something

    cap_pruner = Pruner(model, "cap", 0.5)
    cap_keep = cap_pruner.plan((x, y))
    slim_pruner = Pruner(model, "slim", 0.5)
    slim_keep = slim_pruner.plan()
    differ = 0
    for g in slim_pruner.graph.groups:
        if g.index not in slim_keep:
            continue
        producers = {m.layer for m in g.producers}
        twin = next(h for h in cap_pruner.graph.groups
                    if {m.layer for m in h.producers} == producers)
        differ += len(set(slim_keep[g.index]) ^ set(cap_keep[twin.index])) // 2
    assert differ >= 3
    # the attention is far from flat after training
    assert max(float(np.ptp(a)) for a in cap_pruner.attention.values()) > 0.2


def test_partial_producers_score_only_the_channels_they_make():
    """A Concatenate added to a wider tensor: each branch conv makes only part
    of the group; its member indices are -1 elsewhere and must not borrow
    another channel's filter (InceptionResNetV2 has this pattern)."""
    from remotetrimmer_tf.graph import DependencyGraph
    from remotetrimmer_tf.importance import get_importance

    inp = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 1, use_bias=False, name="a")(inp)
    b = keras.layers.Conv2D(4, 1, use_bias=False, name="b")(inp)
    c = keras.layers.Conv2D(8, 1, use_bias=False, name="c")(inp)
    cat = keras.layers.Concatenate(name="cat")([a, b])
    x = keras.layers.Add(name="add")([cat, c])
    out = keras.layers.Dense(2, name="fc")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for name in "abc":
        layer = model.get_layer(name)
        layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    wa = model.get_layer("a").get_weights()[0].reshape(-1, 4)
    wb = model.get_layer("b").get_weights()[0].reshape(-1, 4)
    wc = model.get_layer("c").get_weights()[0].reshape(-1, 8)
    wa[:, 3] = 1e3                      # would leak into channels 4..7 if -1 wrapped
    model.get_layer("a").set_weights([wa.reshape(1, 1, 3, 4)])

    group = next(g for g in DependencyGraph(model).groups
                 if any(m.layer == "c" for m in g.producers))
    cols = {m.layer: np.asarray(m.indices) for m in group.producers}
    assert (cols["a"] < 0).sum() == 4 and (cols["b"] < 0).sum() == 4
    l1_a, l1_b, l1_c = (np.abs(w).sum(axis=0) for w in (wa, wb, wc))
    expected = np.empty(8)
    for j in range(8):
        own = l1_a[cols["a"][j]] if cols["a"][j] >= 0 else l1_b[cols["b"][j]]
        expected[j] = (own + l1_c[cols["c"][j]]) / 2
    scores = get_importance("l1")(group, model)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert np.isfinite(get_importance("fpgm")(group, model)).all()
