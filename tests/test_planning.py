"""The planning layer on its own: ScoredGroups (immutable, scores normalised
once, floors, sections, units) and every planner moving unit groups in whole
units; then the same through the Pruner on a model whose graph declares units."""
import dataclasses

import keras
import numpy as np
import pytest

from remotetrimmer_tf.planning import (LatencySearch, ScoredGroups, TargetError, WidthRules,
                                       candidates, check_target, keep_of, normalised,
                                       plan_ratio, solve_budget)

# 12 channels in 3 interleaved units of 4 (unit k: channels k, k+3, k+6, k+9)
UNITS = np.arange(12).reshape(4, 3).T


def _scored(units=True, sections=None, **kw):
    rng = np.random.default_rng(0)
    scores = {0: rng.random(12), 1: rng.random(20), 2: rng.random(8) * 5}
    return ScoredGroups.build(scores, units={0: UNITS} if units else None,
                              sections=sections, **kw)


def _whole_units(kept):
    kept = set(np.asarray(kept).tolist())
    return kept and all(set(u.tolist()) <= kept or not set(u.tolist()) & kept for u in UNITS)


def test_scored_groups_is_immutable_and_normalised_once():
    sg = _scored()
    with pytest.raises(dataclasses.FrozenInstanceError):
        sg.min_channels = 3
    with pytest.raises(TypeError):
        sg.scores[5] = np.ones(3)
    with pytest.raises(ValueError):
        sg.scores[0][0] = 1.0
    assert sg.norm[2].mean() == pytest.approx(1.0)
    assert normalised(np.array([2.0, np.inf, 4.0])).tolist() == [2 / 3, np.inf, 4 / 3]
    assert normalised(np.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_units_must_partition_the_group():
    with pytest.raises(ValueError, match="units"):
        ScoredGroups.build({0: np.ones(6)}, units={0: np.array([[0, 1], [1, 2], [3, 4]])})


@pytest.mark.parametrize("rules", [WidthRules(0.5), WidthRules(0.9), WidthRules(0.3, round_to=8),
                                   WidthRules(0.5, "global"), WidthRules(0.8, "global"),
                                   WidthRules(0.4, "global", round_to=6, round_mode="down")])
def test_ratio_plans_move_in_whole_units(rules):
    sg = _scored(min_channels=1)
    keep = plan_ratio(sg, rules)
    assert _whole_units(keep[0]) and len(keep[0]) >= 4
    assert all(len(v) >= 1 for v in keep.values())
    if rules.round_to > 1:
        for gi in (1, 2):
            assert len(keep[gi]) % rules.round_to == 0 or len(keep[gi]) == sg.size(gi)


def test_top_ranks_units_by_their_summed_scores():
    sg = ScoredGroups.build({0: np.array([9, 0, 0, 1, 1, 1.0])},
                            units={0: np.array([[0, 1, 2], [3, 4, 5]])})
    assert sg.top(0, 3).tolist() == [0, 1, 2]          # 9 > 3
    assert sg.top(0, 1).tolist() == [0, 1, 2]          # never part of a unit


def test_min_channels_and_max_ratio_floors_count_whole_units():
    sg = _scored(min_channels=5, max_ratio=0.9)
    assert sg.floors[0] == 8 and sg.floors[1] == 5 and sg.floors[2] == 5
    keep = plan_ratio(sg, WidthRules(0.95 - 1e-9, "global"))
    assert len(keep[0]) == 8 and _whole_units(keep[0])


def test_sections_are_covered_in_whole_units():
    """A section of single channels of one unit: a plan keeps that whole unit."""
    sg = _scored(sections={0: [np.array([2, 5]), np.array([0, 1, 3, 4, 6, 7, 8, 9, 10, 11])]})
    for rules in (WidthRules(0.7), WidthRules(0.7, "global")):
        keep = plan_ratio(sg, rules)
        assert _whole_units(keep[0]) and set(keep[0].tolist()) & {2, 5}


@pytest.mark.parametrize("scope", ["local", "global"])
def test_budget_search_moves_in_whole_units(scope):
    sg = _scored()
    weights = {0: 7, 1: 3, 2: 11}

    def count(keep):
        return sum(weights[gi] * len(keep.get(gi, range(sg.size(gi)))) for gi in weights)
    full = count({})
    keep, info = solve_budget(sg, WidthRules(scope=scope), count, int(0.55 * full), "macs")
    assert info["achieved"] == count(keep) <= int(0.55 * full)
    assert _whole_units(keep[0])


@pytest.mark.parametrize("objective", ["uniform", "importance", "macs"])
def test_latency_search_moves_in_whole_units(objective):
    sg = _scored()
    cands = {gi: candidates(sg, gi, 16) for gi in sg.groups}
    assert cands[0] == [4, 8, 12]                       # a unit step: 16 > a 12-wide group
    cost = {0: 1.0, 1: 0.5, 2: 2.0}

    def predict(keep, key=None):
        return sum(cost[gi] * len(keep.get(gi, range(sg.size(gi)))) for gi in cost)
    search = LatencySearch(sg, cands, predict, objective, macs=predict)
    goal = 0.8 * predict({})
    widths, ms = search.search(goal)
    keep = keep_of(sg, widths)
    assert ms == predict(keep) <= goal and widths[0] < 12
    assert _whole_units(keep.get(0, np.arange(12)))


def test_candidates_count_a_grouped_convs_positions():
    """A channel taking 4 positions (groups=4) needs 4 channels per block of 16."""
    sg = ScoredGroups.build({0: np.ones(32)}, spread={0: 4})
    assert candidates(sg, 0, 16) == [4, 8, 12, 16, 20, 24, 28, 32]
    assert candidates(ScoredGroups.build({0: np.ones(32)}), 0, 16) == [16, 32]


def test_one_target_check_words_each_argument():
    assert check_target({}) is None
    with pytest.raises(TargetError) as e:
        check_target({"target_macs": 5, "target_params": 3})
    assert e.value.worded(lambda f: "--" + f) == "--target_macs and --target_params conflict; " \
                                                 "give one budget"
    with pytest.raises(TargetError, match="ratio and target_params conflict"):
        check_target({"target_params": 3}, ratio_given=True)
    with pytest.raises(TargetError, match="threads=0 must be an integer"):
        check_target({"target_latency_ms": 1.0}, threads=0, own_timer=True)


# ------------------------------------------------------ through the Pruner
def linear_layer(spec, n_in, n_out):
    """A fake runtime whose cost grows with every channel (no blocks)."""
    return 1e-7 * np.prod(spec["in_shape"]) * n_in * n_out


def linear_model(model):
    from remotetrimmer_tf.cost import layer_calls, layer_macs
    from remotetrimmer_tf.graph.functional_view import functional_view, graph_of
    return sum(linear_layer({"in_shape": list(i[1:-1])}, i[-1], o[-1])
               for layer, _, i, o in layer_calls(graph_of(functional_view(model)))
               if layer_macs(layer, i, o))


def _heads_model():
    keras.utils.set_random_seed(0)
    L = keras.layers
    i = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(12, 3, padding="same", name="heads")(i)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", name="mix")(x)))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(3)(x))


@pytest.fixture
def declared_units(monkeypatch):
    """A graph whose 'heads' group declares units (as an attention handler will)."""
    import remotetrimmer_tf.graph as graph_pkg
    base = graph_pkg.DependencyGraph

    class WithUnits(base):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            for g in self.groups:
                if any(m.layer == "heads" for m in g.producers):
                    g.units = UNITS
    monkeypatch.setattr(graph_pkg, "DependencyGraph", WithUnits)


@pytest.mark.parametrize("kw", [
    {"ratio": 0.6}, {"ratio": 0.7, "scope": "global"}, {"target_macs": 0.5},
    {"target_params": 0.5}, {"target_macs": 0.4, "scope": "global"},
    {"target_latency_ms": 0.6}])
def test_pruner_plans_declared_units_whole(declared_units, kw, tmp_path):
    from remotetrimmer_tf.cost import count_macs, count_params
    from remotetrimmer_tf.latency import LatencyModel
    from remotetrimmer_tf.pruner import Pruner

    model = _heads_model()
    kw = dict(kw)
    if "target_macs" in kw:
        kw["target_macs"] = int(kw["target_macs"] * count_macs(model))
    if "target_params" in kw:
        kw["target_params"] = int(kw["target_params"] * count_params(model, trainable_only=True))
    if "target_latency_ms" in kw:
        kw["target_latency_ms"] *= linear_model(model)
        kw["latency_model"] = LatencyModel(layer_timer=linear_layer, model_timer=linear_model,
                                           key={"m": "units"}, cache_dir=str(tmp_path))
    pruner = Pruner(model, importance="l1", **kw)
    keep = pruner.plan()
    gi = next(g.index for g in pruner.graph.groups if g.units is not None)
    assert pruner.scored_groups.unit_size(gi) == 4
    assert gi in keep and _whole_units(keep[gi])
    small = pruner.prune()
    assert small.get_layer("heads").filters % 4 == 0
