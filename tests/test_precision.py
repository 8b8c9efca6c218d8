"""training.precision: bf16 detection, the mixed clone, fit(precision=...) keeps float32 models."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from remotetrimmer_tf import training  # noqa: E402
from remotetrimmer_tf.training import precision  # noqa: E402


def _model(classes=3):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="fc")(x))


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    y = (x[:, :, :, 0].mean(axis=(1, 2)) > 0).astype("int32")
    return x, y


def test_cpu_flags_from_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert precision.cpu_bf16_flags(str(f)) == ("avx512_bf16",)
    f.write_text("flags: fpu amx_bf16 avx512_bf16\n")
    assert precision.cpu_bf16_flags(str(f)) == ("amx_bf16", "avx512_bf16")
    f.write_text("flags: fpu avx2\n")
    assert precision.cpu_bf16_flags(str(f)) == ()
    assert precision.cpu_bf16_flags(str(tmp_path / "missing")) == ()


def test_resolve_precision(monkeypatch):
    monkeypatch.delenv("REMOTETRIMMER_PRECISION", raising=False)
    assert precision.resolve_precision("float32") == "float32"
    assert precision.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda *a: ())
    assert precision.resolve_precision("auto") == "float32"
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda *a: ("amx_bf16",))
    monkeypatch.setattr(precision, "_accelerator_visible", lambda: False)
    assert precision.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "_accelerator_visible", lambda: True)
    assert precision.resolve_precision("auto") == "float32"   # GPU: unchanged
    monkeypatch.setattr(precision, "_accelerator_visible", lambda: False)
    monkeypatch.setattr(precision.keras.backend, "backend", lambda: "jax")
    assert precision.resolve_precision("auto") == "float32"   # XLA:CPU has no bf16 gain
    monkeypatch.undo()
    monkeypatch.delenv("REMOTETRIMMER_PRECISION", raising=False)
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda *a: ("amx_bf16",))
    monkeypatch.setattr(precision, "_accelerator_visible", lambda: False)
    monkeypatch.setenv("REMOTETRIMMER_PRECISION", "float32")
    assert precision.resolve_precision("auto") == "float32"
    monkeypatch.setenv("REMOTETRIMMER_PRECISION", "fp8")
    with pytest.raises(ValueError, match="REMOTETRIMMER_PRECISION"):
        precision.resolve_precision("auto")
    with pytest.raises(ValueError, match="recipe.precision"):
        precision.resolve_precision("float16")
    with pytest.raises(ValueError, match="recipe.precision"):
        training.recipes.resolve({"precision": "half"})


def test_with_policy_clone_keeps_weights_and_float32_outputs():
    model = _model()
    clone = precision.with_policy(model, "mixed_bfloat16")
    assert clone.get_layer("c1").compute_dtype == "bfloat16"
    assert clone.get_layer("bn").compute_dtype == "bfloat16"
    assert clone.get_layer("fc").dtype_policy.name == "float32"   # logits in float32
    assert all(v.dtype == "float32" for v in clone.weights)
    for a, b in zip(model.weights, clone.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    x, _ = _data(8)
    out = keras.ops.convert_to_numpy(clone(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(model(x)), atol=5e-2)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.mark.slow
def test_fit_bf16_trains_float32_model_reproducibly(tmp_path):
    x, y = _data()
    recipe = dict(epochs=2, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4,
                  augment="flips_rot90", precision="mixed_bfloat16", seed=3)
    runs = []
    for i in range(2):
        keras.utils.set_random_seed(0)
        model = _model()
        before = _weights(model)
        hist = training.fit(model, (x, y), val=(x, y), recipe=recipe,
                            workdir=tmp_path / f"r{i}", verbose=0)
        assert len(hist["loss"]) == 2 and np.isfinite(hist["loss"]).all()
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
        assert any(not np.array_equal(a, b) for a, b in zip(before, _weights(model)))
        runs.append(_weights(model))
        # checkpoints hold the float32 model, with the trained weights (with
        # `val` the model ends with the best val_accuracy epoch: best.keras)
        last = keras.saving.load_model(tmp_path / f"r{i}" / "last.keras")
        assert {layer.dtype_policy.name for layer in last.layers} == {"float32"}
        kept = last if hist.kept_epoch == 2 else keras.saving.load_model(
            tmp_path / f"r{i}" / "best.keras")
        for a, b in zip(_weights(kept), _weights(model)):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)     # same seed -> same weights


@pytest.mark.slow
def test_fit_bf16_resume_continues(tmp_path):
    x, y = _data()
    recipe = dict(epochs=2, batch_size=16, lr=0.05, momentum=0.9, augment="none",
                  precision="mixed_bfloat16", seed=1)
    keras.utils.set_random_seed(0)
    full = _model()
    training.fit(full, (x, y), recipe=recipe, workdir=tmp_path / "full", verbose=0)
    keras.utils.set_random_seed(0)
    part = _model()
    training.fit(part, (x, y), recipe=dict(recipe, epochs=1), workdir=tmp_path / "part",
                 verbose=0)
    state = json.loads((tmp_path / "part" / "state.json").read_text())
    assert state["epoch"] == 1
    keras.utils.set_random_seed(0)
    resumed = _model()
    hist = training.fit(resumed, (x, y), recipe=recipe, workdir=tmp_path / "part",
                        verbose=0)
    assert len(hist["loss"]) == 1
    for a, b in zip(_weights(full), _weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-5)
