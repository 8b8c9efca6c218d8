"""training: recipes, schedules, augmentation, fit (resume, weight decay), evaluate."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

from remotetrimmer_tf import training  # noqa: E402
from remotetrimmer_tf.training import recipes  # noqa: E402
from remotetrimmer_tf.training.augment import RandomFlipRot90  # noqa: E402
from remotetrimmer_tf.training.schedules import (MultiStepDecay, OneCycle,  # noqa: E402
                                                 WarmupCosine, make_schedule)

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TF = keras.backend.backend() == "tensorflow"


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="fc")(x)
    return keras.Model(inputs, outputs)


def copy_of(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
    return x, y


# ------------------------------------------------------------------------ recipes
def test_published_recipe_fields():
    r = recipes.published()
    assert (r.optimizer, r.lr, r.momentum, r.nesterov, r.weight_decay) == ("sgd", 0.01, 0.0, False, 0.0)
    assert (r.schedule, tuple(r.milestones), r.gamma) == ("step", (0.5, 0.75), 0.1)
    assert (r.augment, r.batch_size, r.epochs, r.loss, r.label_smoothing) == ("none", 64, 160, "ce", 0.0)
    f = recipes.published("finetune")
    assert (f.epochs, f.loss, f.aml_r1, f.aml_r2) == (40, "aml", 1.0, 1.0)
    assert set(recipes.RECIPE_FIELDS) == set(r.keys())


def test_modern_recipe_fields():
    r = recipes.modern()
    assert (r.momentum, r.nesterov, r.weight_decay, r.schedule, r.augment) == (
        0.9, True, 5e-4, "onecycle", "flips_rot90")
    assert r.epochs == 60 and recipes.modern("finetune").loss == "aml"
    assert recipes.get("modern", "finetune").epochs == 30


def test_resolve_fills_defaults_and_rejects_bad_fields():
    r = recipes.resolve({"epochs": 3, "lr": 0.5})
    assert r.epochs == 3 and r.lr == 0.5 and r.schedule == "constant"
    with pytest.raises(ValueError, match="unknown field 'lrate'"):
        recipes.resolve({"lrate": 0.1})
    with pytest.raises(ValueError, match="recipe.schedule"):
        recipes.resolve({"schedule": "poly"})
    with pytest.raises(ValueError, match="recipe.epochs"):
        recipes.resolve({"epochs": 0})
    with pytest.raises(ValueError, match="stage"):
        recipes.published("pretrain")


# ---------------------------------------------------------------------- schedules
def lr_at(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def torch_onecycle(step, max_lr, total, pct, div=25.0, final_div=1e4):
    """torch.optim.lr_scheduler.OneCycleLR (anneal_strategy='cos'), re-derived."""
    initial = max_lr / div
    final = initial / final_div
    up_end = pct * total - 1
    cos = lambda a, b, p: b + (a - b) / 2 * (math.cos(math.pi * p) + 1)  # noqa: E731
    if step <= up_end:
        return cos(initial, max_lr, step / up_end)
    return cos(max_lr, final, (step - up_end) / (total - 1 - up_end))


def test_multistep_decay_epoch_aligned():
    s = MultiStepDecay(0.01, total_steps=160 * 10, milestones=(0.5, 0.75), gamma=0.1,
                       steps_per_epoch=10)
    np.testing.assert_allclose(lr_at(s, [0, 799, 800, 1199, 1200, 1599]),
                               [0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4], rtol=1e-6)
    # 7 epochs: milestones at round(3.5)=4 and round(5.25)=5 epochs
    s = make_schedule(recipes.resolve({"epochs": 7, "schedule": "step", "lr": 1.0}), 3)
    np.testing.assert_allclose(lr_at(s, [11, 12, 14, 15]), [1.0, 0.1, 0.1, 0.01], rtol=1e-6)


def test_onecycle_matches_pytorch_formula():
    s = OneCycle(0.1, total_steps=200, pct_start=0.25)
    steps = [0, 1, 20, 49, 50, 100, 150, 199]
    expected = [torch_onecycle(t, 0.1, 200, 0.25) for t in steps]
    np.testing.assert_allclose(lr_at(s, steps), expected, rtol=1e-5, atol=1e-9)
    assert lr_at(s, [49])[0] == pytest.approx(0.1)


def test_warmup_cosine_shape():
    s = WarmupCosine(0.2, total_steps=100, warmup_steps=10, min_learning_rate=0.01)
    lrs = lr_at(s, range(100))
    assert lrs[0] == pytest.approx(0.02) and lrs[9] == pytest.approx(0.2)
    assert lrs[10] == pytest.approx(0.2) and lrs[-1] == pytest.approx(0.01, abs=1e-4)
    assert np.all(np.diff(lrs[10:]) <= 1e-9)


@pytest.mark.parametrize("schedule", [
    MultiStepDecay(0.1, 100, (0.3, 0.6), 0.5, steps_per_epoch=10),
    OneCycle(0.2, 100, pct_start=0.3), WarmupCosine(0.1, 100, 5, 0.001)])
def test_schedule_serialization_round_trip(schedule):
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    np.testing.assert_allclose(lr_at(again, range(0, 100, 7)), lr_at(schedule, range(0, 100, 7)))


# ------------------------------------------------------------------------ augment
def dihedral(img):
    views = []
    for k in range(4):
        r = np.rot90(img, k, axes=(0, 1))
        views += [r, r[:, ::-1]]
    return views


def test_augment_identity_at_inference_and_dihedral_in_training():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 5, 5, 2)).astype("float32")
    layer = RandomFlipRot90(seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    seen = set()
    for xi, oi in zip(x, out):
        matches = [j for j, v in enumerate(dihedral(xi)) if np.array_equal(v, oi)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 8  # every rotation/flip is drawn
    again = keras.ops.convert_to_numpy(RandomFlipRot90(seed=3)(x, training=True))
    np.testing.assert_array_equal(again, out)  # seeded


@pytest.mark.parametrize("shape,kwargs", [((16, 6, 6, 3), {}),
                                          ((16, 5, 7, 2), {"rot90": False}),
                                          ((16, 4, 4, 1), {"vertical": False}),
                                          ((16, 4, 4, 3), {"horizontal": False,
                                                           "vertical": False})])
def test_augment_gather_equals_flip_flip_transpose(shape, kwargs):
    """The one-gather fast path draws the same views as flip, flip, transpose."""
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    fast, slow = RandomFlipRot90(seed=5, **kwargs), RandomFlipRot90(seed=5, **kwargs)
    slow.build(x.shape)
    slow._table = None                     # force the select-based path
    for _ in range(2):                     # two draws from the same seed stream
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(fast(x, training=True)),
                                      keras.ops.convert_to_numpy(slow(x, training=True)))


def test_augment_config_and_errors():
    layer = RandomFlipRot90(vertical=False, seed=7, name="aug")
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(again, RandomFlipRot90) and again.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="square"):
        RandomFlipRot90()(np.zeros((1, 4, 6, 3), "float32"), training=True)
    out = RandomFlipRot90(rot90=False, seed=0)(np.zeros((2, 4, 6, 3), "float32"), training=True)
    assert tuple(out.shape) == (2, 4, 6, 3)
    assert training.make_augment("none") is None
    with pytest.raises(ValueError, match="recipe.augment"):
        training.make_augment("mixup")


# ---------------------------------------------------------------------------- fit
def test_fit_trains_in_place_and_checkpoints_without_augment(data, tmp_path):
    x, y = data
    model = tiny_model()
    before = training.evaluate(model, (x, y), batch_size=8)
    r = recipes.modern()
    r.epochs, r.batch_size, r.lr = 6, 8, 0.05
    lines = []
    hist = training.fit(model, (x, y), (x, y), recipe=r, workdir=tmp_path, verbose=0,
                        callbacks=[training.ProgressLogger(print_fn=lines.append)])
    assert len(hist["loss"]) == 6 and "val_accuracy" in hist
    assert len(lines) == 6 and lines[0].startswith("epoch 1") and "lr=" in lines[0]
    after = training.evaluate(model, (x, y), batch_size=8)
    assert after["loss"] < before["loss"]
    # with `val` the model ends with the best val_accuracy epoch's weights
    assert hist.kept_by == "val_accuracy"
    assert hist.kept_epoch == int(np.argmax(hist["val_accuracy"])) + 1
    assert after["accuracy"] == pytest.approx(max(hist["val_accuracy"]), abs=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "last.keras", "log.csv", "state.json"]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["epoch"] == 6 and state["monitor"] == "val_accuracy"
    assert state["best"] == pytest.approx(max(hist["val_accuracy"]))
    last = keras.saving.load_model(tmp_path / "last.keras")
    assert not any(isinstance(l, RandomFlipRot90) for l in last.layers)
    assert [l.name for l in last.layers] == [l.name for l in model.layers]
    kept = last if hist.kept_epoch == 6 else keras.saving.load_model(tmp_path / "best.keras")
    for a, b in zip(kept.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(last.optimizer.iterations) == 6 * 4
    best = keras.saving.load_model(tmp_path / "best.keras")
    assert training.evaluate(best, (x, y))["accuracy"] == pytest.approx(state["best"], abs=1e-6)
    assert len((tmp_path / "log.csv").read_text().strip().splitlines()) == 7
    # a finished run is not retrained
    assert training.fit(model, (x, y), (x, y), recipe=r, workdir=tmp_path, verbose=0) == {}


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(data, tmp_path):
    x, y = data
    r = recipes.resolve(dict(epochs=4, batch_size=8, lr=0.05, momentum=0.9, schedule="step",
                             loss="aml", augment="none", seed=3))
    base = tiny_model()
    full = copy_of(base)
    training.fit(full, (x, y), recipe=r, workdir=tmp_path / "full", verbose=0)
    part = copy_of(base)
    training.fit(part, (x, y), recipe=r, workdir=tmp_path / "part", verbose=0,
                 callbacks=[_StopAfter(2)])
    assert json.loads((tmp_path / "part" / "state.json").read_text())["epoch"] == 2
    resumed = copy_of(base)  # fresh weights: everything must come from the workdir
    hist = training.fit(resumed, (x, y), recipe=r, workdir=tmp_path / "part", verbose=0)
    assert len(hist["loss"]) == 2
    for a, b in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(base.get_weights()[0], full.get_weights()[0])


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_weight_decay_only_on_kernels(data, mode):
    """One plain-SGD step: decay adds exactly -lr*wd*W to kernels, nothing else."""
    x, y = data
    lr, wd = 0.1, 0.05
    base = tiny_model()
    plain, decayed = copy_of(base), copy_of(base)
    r = dict(epochs=1, batch_size=32, lr=lr, augment="none", seed=0)
    # BN statistics as the one step left them (settling would re-estimate them
    # from the two models' different kernels)
    training.fit(plain, (x, y), recipe=r, verbose=0, settle_bn="off")
    training.fit(decayed, (x, y), recipe=dict(r, weight_decay=wd, weight_decay_mode=mode),
                 verbose=0, settle_bn="off")
    kernels = {id(v) for v in training.decayed_variables(base)}
    assert len(kernels) == 2
    for v0, vp, vd in zip(base.weights, plain.weights, decayed.weights):
        w0, wp, wdv = (keras.ops.convert_to_numpy(v) for v in (v0, vp, vd))
        expected = -lr * wd * w0 if id(v0) in kernels else np.zeros_like(w0)
        np.testing.assert_allclose(wdv - wp, expected, atol=2e-6, err_msg=v0.path)


@pytest.mark.skipif(not TF, reason="tf.data input needs the TensorFlow backend")
def test_fit_and_evaluate_with_tf_data(data):
    import tensorflow as tf

    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = tiny_model()
    hist = training.fit(model, ds, ds, recipe=dict(epochs=2, lr=0.05, schedule="onecycle",
                                                 warmup_fraction=0.3), verbose=0)
    assert len(hist["loss"]) == 2
    assert int(model.optimizer.iterations) == 8
    a = training.evaluate(model, ds)
    b = training.evaluate(model, (x, y), batch_size=5)
    assert a["accuracy"] == pytest.approx(b["accuracy"]) and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        training.fit(model, ds.repeat(), recipe=dict(epochs=1), verbose=0)


@pytest.mark.skipif(not TF, reason="tf.data input needs the TensorFlow backend")
def test_tf_data_epochs_are_whole_reshuffled_passes(data):
    """fit feeds a finite dataset as one repeated stream (one iterator for the
    run): every epoch must still be exactly one pass, partial last batch
    included, in a new shuffled order."""
    import tensorflow as tf

    x, y = data
    x, y = x[:20], y[:20]
    seen = []

    def record(i):
        seen.append(int(i))
        return i

    ids = tf.data.Dataset.range(20).shuffle(20, seed=3, reshuffle_each_iteration=True)
    ds = ids.map(lambda i: (tf.ensure_shape(tf.py_function(record, [i], tf.int64), []), i)).map(
        lambda i, _: (tf.gather(x, i), tf.gather(y, i))).batch(8)   # 8 + 8 + 4
    model = tiny_model()
    hist = training.fit(model, ds, recipe=dict(epochs=3, augment="flips_rot90"), verbose=0)
    assert len(hist["loss"]) == 3 and int(model.optimizer.iterations) == 9
    passes = [seen[k * 20:(k + 1) * 20] for k in range(3)]
    assert all(sorted(p) == list(range(20)) for p in passes), passes
    assert passes[0] != passes[1] or passes[1] != passes[2]


def test_evaluate_matches_numpy_for_logits_and_probabilities(data):
    x, y = data
    model = tiny_model()
    logits = keras.ops.convert_to_numpy(model(x)).astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = {"accuracy": float(np.mean(logits.argmax(-1) == y)),
                "loss": float(-logp[np.arange(32), y].mean())}
    got = training.evaluate(model, (x, y), batch_size=7)
    assert got["accuracy"] == pytest.approx(expected["accuracy"])
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    probs = keras.Model(model.input, keras.layers.Softmax()(model.output))
    assert not training.infer_from_logits(probs) and training.infer_from_logits(model)
    got = training.evaluate(probs, (x, y))
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_fit_rejects_bad_input(data):
    x, y = data
    with pytest.raises(ValueError, match="unknown field"):
        training.fit(tiny_model(), (x, y), recipe={"epoch": 1})
    with pytest.raises(ValueError, match="same length"):
        training.fit(tiny_model(), (x, y[:5]), recipe={"epochs": 1})
    with pytest.raises(TypeError, match="keras.Model"):
        training.fit("model", (x, y))
    with pytest.raises(ValueError, match=r"\.keras"):
        training.save_model_atomic(tiny_model(), "/tmp/never.h5")


@pytest.mark.slow
def test_fit_numpy_under_jax_without_tensorflow(tmp_path):
    """The JAX path: numpy data, augmentation, AML, workdir + resume, no TF."""
    code = f"""
        import sys, json, os
        class _NoTF:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ImportError("tensorflow blocked for this test")
        sys.meta_path.insert(0, _NoTF())
        import numpy as np, keras
        from remotetrimmer_tf import training
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
        y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
        inp = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(4, 3, padding="same")(inp)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
        model = keras.Model(inp, keras.layers.Dense(2)(h))
        r = training.recipes.modern("finetune"); r.epochs = 3; r.batch_size = 8
        before = training.evaluate(model, (x, y))
        hist = training.fit(model, (x, y), (x, y), recipe=r, workdir={str(tmp_path)!r},
                            verbose=0, callbacks=[])
        after = training.evaluate(model, (x, y))
        last = keras.saving.load_model(os.path.join({str(tmp_path)!r}, "last.keras"))
        best = keras.saving.load_model(os.path.join({str(tmp_path)!r}, "best.keras"))
        # with val, fit ends on the best val_accuracy epoch (best.keras)
        same = all(np.array_equal(a, b) for a, b in zip(best.get_weights(), model.get_weights()))
        print("RESULT", json.dumps(dict(epochs=len(hist["loss"]), before=before["loss"],
              after=after["loss"], same=same, loss=type(last.loss).__name__,
              it=int(last.optimizer.iterations), tf="tensorflow" in sys.modules,
              kept=hist.kept_epoch)))
    """
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out == dict(out, epochs=3, same=True, loss="AdaptiveMiningLoss", it=12, tf=False)
    assert out["kept"] is None or 1 <= out["kept"] <= 3
    assert out["after"] < out["before"]


# ------------------------------------------------------------------- distillation
def _np_kd(student_logits, teacher_logits, t):
    def log_softmax(z):
        z = z / t
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    ls, lt = log_softmax(student_logits), log_softmax(teacher_logits)
    return t * t * float(np.mean(np.sum(np.exp(lt) * (lt - ls), axis=-1)))


def test_distillation_loss_matches_formula_for_logits_and_probabilities():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(6, 5)) * 3, rng.normal(size=(6, 5)) * 3
    for temp in (1.0, 4.0):
        want = _np_kd(s, t, temp)
        got = float(training.distillation_loss(s.astype("float32"), t.astype("float32"), temp))
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
        probs = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)  # noqa: E731
        got_p = float(training.distillation_loss(
            probs(s).astype("float32"), probs(t).astype("float32"), temp,
            student_from_logits=False, teacher_from_logits=False))
        assert got_p == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert float(training.distillation_loss(s.astype("float32"), s.astype("float32"))) == \
        pytest.approx(0.0, abs=1e-6)


def test_fit_with_teacher_adds_the_distillation_term_exactly(data):
    """lr 0, one full batch: the reported loss is CE + w * T^2 * KL, nothing else."""
    x, y = data
    student, teacher = tiny_model(0), tiny_model(7)
    teacher_before = [w.copy() for w in teacher.get_weights()]
    r = recipes.defaults()
    r.epochs, r.batch_size, r.lr, r.loss = 1, len(x), 0.0, "ce"
    r.distill_weight, r.distill_temperature = 0.5, 3.0
    probe = copy_of(student)
    z_s = keras.ops.convert_to_numpy(probe(x, training=True))
    z_t = keras.ops.convert_to_numpy(teacher(x, training=False))
    ce = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, z_s))
    hist = training.fit(student, (x, y), recipe=r, verbose=0, teacher=teacher)
    assert hist["loss"][0] == pytest.approx(ce + 0.5 * _np_kd(z_s, z_t, 3.0), rel=1e-4)
    assert hist["loss"][0] > ce + 1e-3
    for a, b in zip(teacher.get_weights(), teacher_before):   # teacher untouched
        np.testing.assert_array_equal(a, b)
    assert teacher.trainable and all(l.trainable for l in teacher.layers)


@pytest.mark.slow
def test_distillation_pulls_the_student_towards_the_teacher(data):
    x, y = data
    teacher = tiny_model(7)
    z_t = keras.ops.convert_to_numpy(teacher(x, training=False))
    gaps = {}
    for weight in (0.0, 20.0):
        student = tiny_model(0)
        r = recipes.defaults()
        r.epochs, r.batch_size, r.lr, r.loss = 30, 8, 0.05, "ce"
        r.distill_weight = weight
        training.fit(student, (x, y), recipe=r, verbose=0,
                     teacher=teacher if weight else None)
        z_s = keras.ops.convert_to_numpy(student(x, training=False))
        gaps[weight] = _np_kd(z_s, z_t, 4.0)
    assert gaps[20.0] < 0.5 * gaps[0.0], gaps


def test_fit_rejects_inconsistent_distillation_settings(data):
    x, y = data
    r = recipes.defaults()
    with pytest.raises(ValueError, match="distill_weight is 0"):
        training.fit(tiny_model(), (x, y), recipe=r, verbose=0, teacher=tiny_model(1))
    r.distill_weight = 1.0
    with pytest.raises(ValueError, match="no `teacher`"):
        training.fit(tiny_model(), (x, y), recipe=r, verbose=0)
    inputs = keras.Input((8, 8, 3))
    other = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="same input and number of classes"):
        training.fit(tiny_model(), (x, y), recipe=r, verbose=0, teacher=other)
    with pytest.raises(ValueError, match="distill_temperature"):
        recipes.resolve({"distill_temperature": 0.0})
