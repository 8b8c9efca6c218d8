"""Iterative pruning (issue 29 part D): k rounds to the final ratio with
fine-tuning between, ending at the one-shot model's size."""
import keras
import numpy as np
import pytest

import remotetrimmer_tf as rt
from remotetrimmer_tf.iterative import fit_between_rounds, prune_in_rounds, round_ratios


def _model():
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((12, 12, 3))
    x = L.Conv2D(32, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(48, 3, strides=2, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU()(x)
    out = L.Dense(3, name="head")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


@pytest.mark.parametrize("ratio,k", [(0.7, 3), (0.5, 5), (0.3, 1)])
def test_round_ratios_compose_to_the_final_ratio(ratio, k):
    kept = np.prod([1 - r for r in round_ratios(ratio, k)])
    assert kept == pytest.approx(1 - ratio)


def test_bad_rounds_are_refused():
    with pytest.raises(ValueError, match="rounds"):
        round_ratios(0.5, 0)


@pytest.mark.parametrize("k", [2, 3])
def test_rounds_end_at_the_one_shot_size_and_train_between(k):
    model = _model()
    one_shot = rt.Pruner(model, importance="l1", ratio=0.7).prune()
    calls = []
    x = np.random.default_rng(0).standard_normal((16, 12, 12, 3)).astype("float32")
    y = np.arange(16) % 3
    fit = fit_between_rounds((x, y), {"epochs": 1, "batch_size": 8, "lr": 0.01})
    small, rounds = prune_in_rounds(
        model, k, ratio=0.7, importance="l1",
        finetune=lambda m, i: (calls.append(i), fit(m, i)),
        evaluate=lambda m: float(np.mean(np.argmax(np.asarray(m(x)), -1) == y)))
    assert calls == list(range(1, k + 1))
    assert [r["round"] for r in rounds] == list(range(1, k + 1))
    params = [r["params"] for r in rounds]
    assert params == sorted(params, reverse=True)             # shrinks every round
    assert rt.count_params(small, trainable_only=True) <= rt.count_params(one_shot, trainable_only=True)
    assert rt.count_params(small, trainable_only=True) >= 0.9 * rt.count_params(one_shot, trainable_only=True)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rounds)
    assert small(x).shape == (16, 3)
