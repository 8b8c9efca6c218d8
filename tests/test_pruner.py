"""Pruner: local/global decisions, published counts, CAP end to end, bad input."""
import math
import warnings

import keras
import numpy as np
import pytest

from remotetrimmer_tf.attention import collect_attention
from remotetrimmer_tf.cost import count_macs, count_params
from remotetrimmer_tf.models import SqueezeExcite, resnet18
from remotetrimmer_tf.pruner import Pruner

WIDTH_LAYERS = ("stem_conv", "stage1_block1_conv1", "stage2_block1_conv1",
                "stage3_block1_conv1", "stage4_block1_conv1")


def randomize_gamma(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            w = layer.get_weights()
            w[0] = rng.uniform(-1, 1, w[0].shape)
            layer.set_weights(w)
        elif isinstance(layer, SqueezeExcite):
            layer.set_weights([rng.normal(0, 0.7, w.shape) for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def resnet():
    return randomize_gamma(resnet18(10, (64, 64, 3)))


def widths(model):
    return [model.get_layer(n).filters for n in WIDTH_LAYERS]


@pytest.mark.parametrize("ratio,params,macs,expected_widths", [
    (0.7, 999_552, 15_096_454, [19, 19, 38, 76, 153]),
    (0.5, 2_801_450, 39_422_464, [32, 32, 64, 128, 256]),
])
def test_published_counts_local_slim(resnet, ratio, params, macs, expected_widths):
    assert count_params(resnet) == 11_181_642
    assert count_macs(resnet) == 148_050_944
    small = Pruner(resnet, "slim", ratio).prune()
    assert count_params(small) == params
    assert count_macs(small) == macs
    assert widths(small) == expected_widths
    assert small.get_layer("fc").units == 10                   # classifier whole
    assert small.get_layer("stage2_block1_conv2").filters == expected_widths[2]


def test_plan_keeps_the_top_scores_and_leaves_the_model_alone(resnet):
    before = [w.copy() for w in resnet.get_weights()]
    pruner = Pruner(resnet, "slim", 0.7)
    keep = pruner.plan()
    g = next(g for g in pruner.graph.groups
             if any(m.layer == "stage3_block2_conv1" for m in g.producers))
    gamma = np.abs(resnet.get_layer("stage3_block2_bn1").gamma.numpy())
    expected = np.sort(np.argsort(-gamma, kind="stable")[:math.floor(256 * 0.3)])
    np.testing.assert_array_equal(keep[g.index], expected)
    assert all(np.all(np.diff(v) > 0) for v in keep.values())
    assert len(keep) == 12 and not any(
        gi for gi in keep if not pruner.graph.groups[gi].prunable)
    for a, b in zip(before, resnet.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert {r["group"] for r in pruner.summary()} == set(keep)


def test_pruned_model_keeps_the_kept_channels_function(resnet):
    pruner = Pruner(resnet, "slim", 0.5)
    small = pruner.prune()
    g = next(g for g in pruner.graph.groups
             if any(m.layer == "stage4_block2_conv1" for m in g.producers))
    kept = pruner.plan()[g.index]
    np.testing.assert_array_equal(
        small.get_layer("stage4_block2_bn1").gamma.numpy(),
        resnet.get_layer("stage4_block2_bn1").gamma.numpy()[kept])


def test_round_to_and_min_channels(resnet):
    small = Pruner(resnet, "l1", 0.7, round_to=8).prune()
    assert widths(small) == [24, 24, 40, 80, 160]
    small = Pruner(resnet, "l2", 0.99, min_channels=4).prune()
    assert widths(small) == [4, 4, 4, 4, 5]


@pytest.mark.slow
def test_round_mode_down_and_nearest(resnet):
    # planned widths at 0.7: [19, 19, 38, 76, 153]
    down = Pruner(resnet, "l1", 0.7, round_to=16, round_mode="down").prune()
    assert widths(down) == [16, 16, 32, 64, 144]
    assert count_params(down) < 999_552           # no larger than the unrounded plan
    up = Pruner(resnet, "l1", 0.7, round_to=16).prune()
    assert widths(up) == [32, 32, 48, 80, 160]
    near = Pruner(resnet, "l1", 0.7, round_to=16, round_mode="nearest").prune()
    assert widths(near) == [16, 16, 32, 80, 160]
    # a width that would round down to 0 keeps round_to channels
    tiny = Pruner(resnet, "l1", 0.9, round_to=16, round_mode="down").prune()
    assert widths(tiny) == [16, 16, 16, 16, 48]
    gdown = Pruner(resnet, "slim", 0.6, scope="global", round_to=8,
                   round_mode="down").prune()
    gup = Pruner(resnet, "slim", 0.6, scope="global", round_to=8).prune()
    assert all(w % 8 == 0 for w in widths(gdown))
    assert count_params(gdown) < count_params(gup)
    with pytest.raises(ValueError, match="round_mode"):
        Pruner(resnet, "l1", 0.5, round_mode="ceil")


def test_global_scope(resnet):
    pruner = Pruner(resnet, "slim", 0.6, scope="global", max_ratio=0.95)
    keep = pruner.plan()
    sizes = {g.index: g.size for g in pruner.graph.groups if g.index in pruner.scores}
    removed = sum(sizes[gi] - len(v) for gi, v in keep.items())
    assert removed == math.floor(0.6 * sum(sizes.values()))
    assert len({len(keep[gi]) / sizes[gi] for gi in keep}) > 1   # not uniform
    # every removed channel scores (normalised by its group mean) at most as
    # high as every kept one, apart from groups held at their floor
    floors = {gi: max(1, math.ceil(sizes[gi] * 0.05)) for gi in sizes}
    kept_min, removed_max = np.inf, -np.inf
    for gi, s in pruner.scores.items():
        norm = s / s.mean()
        mask = np.zeros(sizes[gi], bool)
        mask[keep.get(gi, np.arange(sizes[gi]))] = True
        if mask.sum() > floors[gi]:
            kept_min = min(kept_min, norm[mask].min())
        removed_max = max(removed_max, norm[~mask].max(initial=-np.inf))
        assert mask.sum() >= floors[gi]
    assert removed_max <= kept_min
    small = Pruner(resnet, "slim", 0.6, scope="global", round_to=8).prune()
    assert all(w % 8 == 0 for w in widths(small))


def test_ignore_leaves_groups_whole(resnet):
    pruner = Pruner(resnet, "slim", 0.7, ignore=("stage4_block2_conv1", "stem_bn"))
    small = pruner.prune()
    assert small.get_layer("stage4_block2_conv1").filters == 512
    assert small.get_layer("stem_conv").filters == 64
    assert small.get_layer("stage1_block1_conv2").filters == 64   # same group as stem
    assert small.get_layer("stage3_block1_conv1").filters == 76
    assert len(pruner.skipped) == 2


@pytest.mark.slow
def test_cap_end_to_end_on_the_se_resnet():
    model = randomize_gamma(resnet18(10, (32, 32, 3), se=True), seed=2)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    n_layers = len(model.layers)
    pruner = Pruner(model, "cap", 0.7)
    small = pruner.prune(x)
    assert not any(isinstance(l, SqueezeExcite) for l in small.layers)
    assert count_params(small) == 999_552                  # same widths at 32x32
    assert len(model.layers) == n_layers
    att = collect_attention(model, x)
    for k in att:
        np.testing.assert_allclose(att[k], pruner.attention[k], rtol=1e-6)
    given = Pruner(model, "cap", 0.7, attention=att).plan()
    collected = pruner.plan()
    assert given.keys() == collected.keys()
    for gi in given:
        np.testing.assert_array_equal(given[gi], collected[gi])
    # the same model pruned by slim keeps its gates, with the hidden width intact
    gated = Pruner(model, "slim", 0.7).prune()
    se = gated.get_layer("stage4_block1_se1")
    assert se.squeeze_kernel.shape == (153, 32) and se.excite_kernel.shape == (32, 153)
    out = keras.ops.convert_to_numpy(gated(x))
    assert out.shape == (4, 10) and np.all(np.isfinite(out))


def test_pruned_se_model_roundtrips_through_keras_file(tmp_path):
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(16, 3, use_bias=False, name="c")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU()(h)
    h = SqueezeExcite(4, name="se")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = randomize_gamma(keras.Model(inp, keras.layers.Dense(3, name="fc")(h)))
    small = Pruner(model, "slim", 0.5).prune()
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    path = tmp_path / "small.keras"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=".*__array__.*copy.*")
        small.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("se").squeeze_kernel.shape == (8, 4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(small(x)), rtol=1e-5, atol=1e-6)


def test_keras_applications_model():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                           weights=None, classes=10)
    small = Pruner(model, "l1", 0.5, round_to=8).prune()
    assert count_params(small) < count_params(model) / 2
    convs = [l for l in small.layers if isinstance(l, keras.layers.Conv2D)
             and not isinstance(l, keras.layers.DepthwiseConv2D)]
    assert any(l.filters != model.get_layer(l.name).filters for l in convs)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    assert keras.ops.convert_to_numpy(small(x)).shape == (2, 10)


def test_bad_input(resnet):
    with pytest.raises(ValueError, match="ratio"):
        Pruner(resnet, "slim", 1.0)
    with pytest.raises(ValueError, match="ratio"):
        Pruner(resnet, "slim", -0.1)
    with pytest.raises(ValueError, match="scope"):
        Pruner(resnet, "slim", 0.5, scope="layer")
    with pytest.raises(ValueError, match="round_to"):
        Pruner(resnet, "slim", 0.5, round_to=0)
    with pytest.raises(ValueError, match=r"ignore.*\['no_such_layer'\]"):
        Pruner(resnet, "slim", 0.5, ignore=("no_such_layer",))
    with pytest.raises(ValueError, match="Unknown importance"):
        Pruner(resnet, "gamma", 0.5)
    with pytest.raises(ValueError, match="SqueezeExcite.*slim"):
        Pruner(resnet, "cap", 0.5)
    se = resnet18(10, (32, 32, 3), se=True)
    with pytest.raises(ValueError, match="pass data"):
        Pruner(se, "cap", 0.5).plan()
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    no_bn = keras.Model(inp, keras.layers.Dense(2)(h))
    with pytest.raises(ValueError, match="BatchNormalization"):
        Pruner(no_bn, "slim", 0.5).plan()
    assert Pruner(no_bn, "l1", 0.5).plan()
