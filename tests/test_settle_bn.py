"""Settled BatchNorm statistics after training (issue: short training on small data).

A tiny BN model trained for a few steps keeps Keras' running averages near
their initial (0, 1) and scores at chance in evaluation mode; with
``settle_bn`` (the default) the same training ends with statistics
re-estimated from its final weights and the model works.
"""
import keras
import numpy as np
import pytest

from remotetrimmer_tf import training
from remotetrimmer_tf.pipeline.report import settle_lines, stage_warnings
from remotetrimmer_tf.training.bn_recalibration import batch_norms, settle_bn

RECIPE = dict(epochs=3, batch_size=16, lr=0.05, momentum=0.9)


def _data(n=96, classes=4, seed=0):
    """Four separable classes whose pixels sit far from (0, 1): statistics
    still near their initial values normalise them wrongly."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32") * 0.3
    x += (y[:, None, None, None] / (classes - 1)).astype("float32") * np.array(
        [1.0, -1.0, 0.5], "float32")
    return x * 20 + 5, y


def _model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(4)(h))


def test_short_training_at_chance_unsettled_recovers_when_settled():
    x, y = _data()
    off = _model()
    training.fit(off, (x, y), recipe=RECIPE, verbose=0, settle_bn="off")
    chance = training.evaluate(off, (x, y))["accuracy"]
    assert chance <= 0.3, chance                       # at chance: 4 classes

    on = _model()
    hist = training.fit(on, (x, y), recipe=RECIPE, verbose=0)   # default: settled
    settled = training.evaluate(on, (x, y))["accuracy"]
    assert settled >= 0.7, settled
    assert hist.bn_settle == "epoch" and hist.bn_batches == 6   # 96 images / 16

    # the same weights as `off`, statistics re-estimated afterwards: recovers too
    settle_bn(off, x, batch_size=16)
    assert training.evaluate(off, (x, y))["accuracy"] >= 0.7


def test_settled_statistics_are_the_exact_mean_over_the_batches():
    x, _ = _data(n=32)
    model = _model()
    used = settle_bn(model, x, batch_size=16)
    assert used == 2
    conv = keras.Model(model.input, model.layers[1].output)
    means = [np.asarray(conv(x[i:i + 16])).mean(axis=(0, 1, 2)) for i in (0, 16)]
    bn = batch_norms(model)[0]
    np.testing.assert_allclose(np.asarray(bn.moving_mean), np.mean(means, 0),
                               rtol=1e-5, atol=1e-5)


def test_frozen_batch_norm_keeps_its_statistics_in_fit():
    x, y = _data()
    model = _model()
    bn = batch_norms(model)[0]
    bn.trainable = False
    before = np.asarray(bn.moving_mean).copy()
    training.fit(model, (x, y), recipe=dict(RECIPE, epochs=1), verbose=0)
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), before)


def test_settled_under_bf16_the_saved_float32_model_is_settled():
    x, y = _data()
    model = _model()
    hist = training.fit(model, (x, y), recipe=dict(RECIPE, precision="mixed_bfloat16"),
                        verbose=0)
    assert hist.bn_batches == 6
    assert model.dtype_policy.name == "float32"
    assert training.evaluate(model, (x, y))["accuracy"] >= 0.7


def test_end_mode_settles_once_and_validation_selects_the_best_epoch(tmp_path):
    x, y = _data()
    model = _model()
    hist = training.fit(model, (x, y), val=(x[:48], y[:48]), recipe=RECIPE, verbose=0,
                        workdir=str(tmp_path / "run"))
    assert hist.kept_by == "val_accuracy"
    best = int(np.argmax(hist["val_accuracy"])) + 1
    assert hist.kept_epoch == best
    # the model holds the kept epoch's weights: its accuracy is the logged one
    got = training.evaluate(model, (x[:48], y[:48]))["accuracy"]
    assert got == pytest.approx(max(hist["val_accuracy"]), abs=1e-6)
    saved = keras.saving.load_model(str(tmp_path / "run" / "best.keras"))
    assert training.evaluate(saved, (x[:48], y[:48]))["accuracy"] == pytest.approx(got)

    end = _model()
    h_end = training.fit(end, (x, y), recipe=RECIPE, verbose=0, settle_bn="end")
    assert h_end.bn_settle == "end" and h_end.bn_batches == 6
    assert h_end.kept_epoch is None
    assert training.evaluate(end, (x, y))["accuracy"] >= 0.7


@pytest.mark.parametrize("kwargs, match", [
    (dict(settle_bn="sometimes"), "settle_bn must be one of"),
    (dict(settle_steps=0), "settle_steps must be >= 1"),
    (dict(restore_best=True), "restore_best=True needs `val`"),
])
def test_bad_settle_arguments_one_line(kwargs, match):
    x, y = _data(n=16)
    with pytest.raises(ValueError, match=match):
        training.fit(_model(), (x, y), recipe=dict(RECIPE, epochs=1), verbose=0, **kwargs)


def test_report_warns_when_a_stage_ends_worse_and_says_how_bn_was_settled():
    rep = {"accuracy": {"trained": 0.25, "pruned": 0.3, "pruned_before_recalibration": 0.3,
                        "recalibrated": 0.431, "finetuned": 0.25},
           "data": {"num_classes": 4}, "accuracy_split": "test", "evaluated_samples": 72,
           "stages": {"train": {"bn_statistics": {
               "stored_accuracy": 0.25, "settled_accuracy": 0.61, "action": "re-estimated",
               "measured_on": "train split, at most 50 batches"}},
               "finetune": {"history": {"bn_settle": "epoch", "bn_batches": 9,
                                        "kept_epoch": 2, "kept_by": "val_accuracy"}}}}
    lines = stage_warnings(rep)
    assert any("unsettled BatchNorm statistics: 25.0%" in w and "61.0%" in w for w in lines)
    assert any(w.startswith("finetune ended worse") and "43.1% -> finetuned 25.0%" in w
               for w in lines)
    assert any("at chance (25.0% for 4 classes)" in w for w in lines)
    assert settle_lines(rep) == [
        "finetune: BatchNorm statistics re-estimated after every epoch (before validation "
        "and checkpoints) over 9 training batches (precise BN); kept epoch 2 (best "
        "val_accuracy)"]
    rep["accuracy"].update(trained=0.9, finetuned=0.5)
    rep["stages"]["train"] = {}
    assert stage_warnings(rep) == []
    rep["rounds"] = [{"round": 1, "accuracy_pruned": 0.3, "accuracy_recalibrated": 0.6,
                      "accuracy": 0.4}, {"round": 2, "accuracy": 0.5}]
    assert stage_warnings(rep) == [
        "the fine-tune of pruning round 1 ended worse than its input: 60.0% -> 40.0% "
        "(test split, 72 images)"]


class _Run:
    """What check_init_bn reads of a pipeline Run: the config's batch size and
    validation fraction, and the splits as numpy (x, y)."""

    def __init__(self, x, y):
        import ml_collections
        self.cfg = ml_collections.ConfigDict(
            {"data": {"batch_size": 16, "val_fraction": 0.0}})
        self.xy = (x, y)

    def data(self, split, shuffle=False, batch_size=None):
        assert split == "train"   # never the test split
        return self.xy


def test_init_model_with_unsettled_statistics_is_used_re_estimated():
    from remotetrimmer_tf.pipeline.bn_check import bn_line, check_init_bn
    x, y = _data()
    user = _model()
    training.fit(user, (x, y), recipe=RECIPE, verbose=0, settle_bn="off")
    before = [np.asarray(w).copy() for w in user.weights]
    used, info = check_init_bn(_Run(x, y), user)
    assert used is not user and info["action"] == "re-estimated"
    assert info["stored_accuracy"] <= 0.3 < 0.7 <= info["settled_accuracy"]
    assert training.evaluate(used, (x, y))["accuracy"] >= 0.7
    for a, b in zip(before, user.weights):        # the user's model is untouched
        np.testing.assert_array_equal(a, np.asarray(b))
    assert "carries unsettled BatchNorm statistics" in bn_line(info)

    settled = _model()
    training.fit(settled, (x, y), recipe=RECIPE, verbose=0)
    used, info = check_init_bn(_Run(x, y), settled)
    assert used is settled and info["action"] == "kept" and bn_line(info) is None


def test_callback_in_a_plain_keras_fit_settles_and_validates():
    """Python users of plain `model.fit` get the same through the callback."""
    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    settle = training.SettleBatchNorm(model, x, val=(x, y), restore=True, batch_size=16)
    hist = model.fit(x, y, batch_size=16, epochs=3, callbacks=[settle], verbose=0)
    assert settle.batches == 6 and len(hist.history["val_accuracy"]) == 3
    assert settle.restore_best(model) == int(np.argmax(hist.history["val_accuracy"])) + 1
    assert training.evaluate(model, (x, y))["accuracy"] == pytest.approx(
        max(hist.history["val_accuracy"]), abs=1e-6)
