"""Budgets: analytic MACs / params of a plan == the pruned model's; target_macs /
target_params land under and close to the budget; bad budgets are refused."""
import keras
import numpy as np
import pytest

from remotetrimmer_tf.cost import PlanCost, count_macs, count_params
from remotetrimmer_tf.graph import DependencyGraph
from remotetrimmer_tf.models import resnet18
from remotetrimmer_tf.planning import local_ratios, plan_ratio
from remotetrimmer_tf.pruner import Pruner
from remotetrimmer_tf.surgeon import prune_channels


def _mixed():
    """Depthwise, concat (partly covered groups), separable, Flatten -> Dense."""
    i = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(i)
    a = keras.layers.BatchNormalization(name="a_bn")(a)
    b = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(a)
    c = keras.layers.Conv2D(6, 1, name="c")(a)
    x = keras.layers.Concatenate(name="cat")([b, c])
    x = keras.layers.SeparableConv2D(10, 3, name="sep")(x)
    x = keras.layers.BatchNormalization(name="sep_bn")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(12, name="d1")(x)
    return keras.Model(i, keras.layers.Dense(3, name="logits")(x), name="mixed")


def _nested():
    """A functional sub-model and a grouped (depthwise-as-Conv) conv."""
    i = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, padding="same")(i)
    x = keras.layers.Conv2D(8, 3, padding="same", groups=8)(x)
    inner = keras.Model(i, keras.layers.Conv2D(6, 1)(x), name="inner")
    j = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 1)(j)
    y = inner(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(j, keras.layers.Dense(2)(y), name="outer")


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    return {
        "resnet18": resnet18(10, (64, 64, 3)),
        "mobilenet_v2": keras.applications.MobileNetV2(
            input_shape=(64, 64, 3), weights=None, classes=5),
        "mixed": _mixed(),
        "nested": _nested(),
    }


def _random_plan(graph, rng):
    keep = {}
    for g in graph.groups:
        if g.prunable and rng.random() < 0.8:
            n = int(rng.integers(1, g.size + 1))
            keep[g.index] = np.sort(rng.choice(g.size, n, replace=False))
    return keep


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mixed", "nested"])
def test_analytic_count_equals_the_pruned_model(models, name):
    model = models[name]
    graph = DependencyGraph(model)
    cost = PlanCost(graph)
    assert cost.macs({}) == count_macs(model)
    assert cost.params({}) == count_params(model)
    rng = np.random.default_rng(1)
    for _ in range(2):
        keep = _random_plan(graph, rng)
        assert keep, "the random plan prunes nothing"
        small = prune_channels(model, keep, graph=graph)
        assert cost.macs(keep) == count_macs(small)
        assert cost.params(keep) == count_params(small)
        assert cost.macs(keep) < count_macs(model)


@pytest.mark.parametrize("name,kind,frac,scope", [
    ("resnet18", "macs", 0.3, "local"), ("resnet18", "params", 0.2, "global"),
    ("mobilenet_v2", "macs", 0.5, "local"), ("mobilenet_v2", "params", 0.5, "global"),
])
def test_budget_lands_under_and_within_3_percent(models, name, kind, frac, scope):
    model = models[name]
    full = count_macs(model) if kind == "macs" else count_params(model)
    target = int(full * frac)
    pruner = Pruner(model, importance="l1", scope=scope, **{f"target_{kind}": target})
    small = pruner.prune()
    got = count_macs(small) if kind == "macs" else count_params(small)
    rep = pruner.budget_report
    assert rep["achieved"] == got
    assert rep["unpruned"] == full and rep["target"] == target
    assert 0.97 * target <= got <= target
    assert rep["search_s"] < 30 and rep["evaluations"] < 300


def _counts(pruner, kind):
    cost = PlanCost(pruner.graph)
    return lambda keep: cost.count(kind, keep)


@pytest.mark.parametrize("kw", [
    {"round_to": 16}, {"round_to": 8, "round_mode": "down", "min_channels": 12},
    {"round_to": 8, "round_mode": "nearest"},
])
def test_local_budget_is_the_closest_ratio(models, kw):
    """Under the target, and the next smaller ratio (wider model) is over it."""
    model = models["resnet18"]
    target = int(count_macs(model) * 0.25)
    pruner = Pruner(model, importance="l2", target_macs=target, **kw)
    keep = pruner.plan()
    count = _counts(pruner, "macs")
    assert count(keep) <= target
    ratios = local_ratios([s.size for s in pruner.scores.values()])
    i = ratios.index(pruner.budget_report["ratio"])
    assert count(plan_ratio(pruner.scored_groups, pruner.rules.at(ratios[i - 1]))) > target
    for s in pruner.summary():
        assert s["kept"] >= kw.get("min_channels", 1)
        if "round_to" in kw and s["kept"] < s["size"]:
            assert s["kept"] % kw["round_to"] == 0


def test_global_budget_is_the_closest_prefix_with_rounding_and_ignore(models):
    model = models["resnet18"]
    target = int(count_params(model) * 0.3)
    pruner = Pruner(model, importance="l1", scope="global", target_params=target,
                    round_to=16, ignore=("stage4_block1_conv1",))
    keep = pruner.plan()
    count = _counts(pruner, "params")
    assert count(keep) <= target
    assert count(keep) >= 0.97 * target
    # widening any pruned group by one step of 16 is over the budget
    for gi, idx in keep.items():
        wider = dict(keep)
        wider[gi] = pruner.scored_groups.top(gi, min(pruner.scores[gi].size, len(idx) + 16))
        assert count(wider) > target
    small = prune_channels(model, keep, graph=pruner.graph)
    assert small.get_layer("stage4_block1_conv1").filters == 512
    assert count_params(small) == pruner.budget_report["achieved"]


@pytest.mark.parametrize("importance", ["slim", "fpgm", "random"])
def test_budget_with_every_criterion(models, importance):
    model = models["mixed"]
    target = int(count_macs(model) * 0.6)
    pruner = Pruner(model, importance=importance, target_macs=target)
    small = pruner.prune()
    assert count_macs(small) <= target
    assert count_macs(small) == pruner.budget_report["achieved"]


def test_budget_out_of_range_names_the_reachable_range(models):
    model = models["resnet18"]
    with pytest.raises(ValueError, match=r"reachable range \[[0-9,]+, 148,050,944\]"):
        Pruner(model, importance="l1", target_macs=1000, min_channels=8).plan()
    with pytest.raises(ValueError, match="reachable range"):
        Pruner(model, importance="l1", target_params=10**9).plan()


@pytest.mark.parametrize("kw,msg", [
    ({"ratio": 0.5, "target_macs": 10**6}, "conflict"),
    ({"target_macs": 10**6, "target_params": 10**5}, "one budget"),
    ({"target_macs": -5}, "positive integer"),
    ({"target_params": 2.5}, "positive integer"),
    ({"target_macs": True}, "positive integer"),
    ({"target_latency_ms": 0}, "positive number"),
    ({"target_latency_ms": 1.0, "runtime": "tensorrt"}, "runtime"),
    ({"target_latency_ms": 1.0, "dtype": "float16"}, "dtype"),
    ({"target_latency_ms": 1.0, "threads": 0}, "threads"),
])
def test_bad_budget_arguments(models, kw, msg):
    with pytest.raises(ValueError, match=msg):
        Pruner(models["mixed"], importance="l1", **kw)


def test_ratio_default_is_unchanged(models):
    assert Pruner(models["mixed"], importance="l1").ratio == 0.7


def _hub_resnet():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    b = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 64], stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2], block_type="basic_block", image_shape=(32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(b.output)
    return keras.Model(b.input, keras.layers.Dense(5)(x), name="hub_resnet")


def test_keras_hub_backbone_budget_and_analytic_count():
    model = _hub_resnet()
    graph = DependencyGraph(model)
    cost = PlanCost(graph)
    keep = _random_plan(graph, np.random.default_rng(2))
    small = prune_channels(model, keep, graph=graph)
    assert (cost.macs(keep), cost.params(keep)) == (count_macs(small), count_params(small))
    for kind, count in (("macs", count_macs), ("params", count_params)):
        target = int(count(model) * 0.4)
        pruner = Pruner(model, importance="l1", scope="global", **{f"target_{kind}": target})
        got = count(pruner.prune())
        assert 0.97 * target <= got <= target


# ------------------------------------------------- grouped convolutions
def _resnext():
    """A ResNeXt block: 1x1 -> grouped 3x3 (groups=4) -> 1x1, residual add."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    i = keras.Input((12, 12, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same")(i)))
    y = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 1)(x)))
    y = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same", groups=4)(y)))
    y = L.BatchNormalization()(L.Conv2D(32, 1)(y))
    x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(5)(x), name="resnext")


def _shufflenet_like():
    """Grouped 1x1 convs (groups=3, widths change 24 -> 48 -> 48 -> 96) around
    a depthwise conv, as ShuffleNet units are (no shuffle)."""
    keras.utils.set_random_seed(1)
    L = keras.layers
    i = keras.Input((12, 12, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(24, 3, strides=2, padding="same")(i)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(48, 1, groups=3)(x)))
    x = L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(96, 1, groups=3)(x)))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(4)(x), name="shufflenet_like")


def _grouped_sequential():
    """Sequential, grouped 1-D convs (groups=2 and 8) and a Flatten -> Dense head."""
    keras.utils.set_random_seed(2)
    L = keras.layers
    return keras.Sequential([
        keras.Input((16, 4)), L.Conv1D(16, 3, padding="same", activation="relu"),
        L.Conv1D(32, 3, padding="same", groups=2, activation="relu"),
        L.Conv1D(32, 1, groups=8), L.BatchNormalization(), L.ReLU(),
        L.Flatten(), L.Dense(6, activation="relu"), L.Dense(3)], name="grouped_seq")


GROUPED = {"resnext": _resnext, "shufflenet_like": _shufflenet_like,
           "grouped_sequential": _grouped_sequential}


@pytest.fixture(scope="module")
def grouped():
    return {name: build() for name, build in GROUPED.items()}


@pytest.mark.parametrize("name", sorted(GROUPED))
def test_grouped_convs_are_counted_exactly(grouped, name):
    """The analytic count of a plan equals the pruned model's, grouped kernels included."""
    model = grouped[name]
    graph = DependencyGraph(model)
    cost = PlanCost(graph)
    assert (cost.macs({}), cost.params({})) == (count_macs(model),
                                                count_params(model, trainable_only=True))
    rng = np.random.default_rng(3)
    for _ in range(3):
        keep = _random_plan(graph, rng)
        small = prune_channels(model, keep, graph=graph)
        assert (cost.macs(keep), cost.params(keep)) == (
            count_macs(small), count_params(small, trainable_only=True))


@pytest.mark.parametrize("name", sorted(GROUPED))
@pytest.mark.parametrize("kind,scope,kw", [
    ("macs", "local", {}), ("macs", "global", {"round_to": 2}),
    ("params", "local", {"round_to": 4, "round_mode": "down"}), ("params", "global", {}),
])
def test_grouped_convs_prune_to_a_budget(grouped, name, kind, scope, kw):
    """What prunes with a ratio prunes with target_macs / target_params."""
    model = grouped[name]
    counter = count_macs if kind == "macs" else (
        lambda m: count_params(m, trainable_only=True))
    Pruner(model, importance="l1", ratio=0.5, scope=scope, **kw).prune()   # the ratio works
    target = int(counter(model) * 0.75)
    pruner = Pruner(model, importance="l1", scope=scope, **{f"target_{kind}": target}, **kw)
    small = pruner.prune()
    got = counter(small)
    assert pruner.budget_report["achieved"] == got <= target
    assert got < counter(model)
    x = np.random.default_rng(0).normal(size=(2,) + tuple(model.inputs[0].shape[1:]))
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(small(x.astype("float32")))))
    grouped_layers = [layer for layer in small.layers if getattr(layer, "groups", 1) > 1]
    assert grouped_layers and all(
        layer.groups == model.get_layer(layer.name).groups for layer in grouped_layers
        if "depthwise" not in layer.name)
