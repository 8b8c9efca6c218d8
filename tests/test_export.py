"""Tests for remotetrimmer_tf.export: LiteRT and SavedModel export."""

import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("export needs the TensorFlow backend", allow_module_level=True)
pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from remotetrimmer_tf.export import (  # noqa: E402
    LiteRTRunner,
    ParityError,
    check_parity,
    run_litert,
    to_litert,
    to_saved_model,
    top1_agreement,
)

SHAPE = (16, 16, 3)


def tiny_resnet(num_classes=4, seed=0):
    """Conv-BN-ReLU stem, one residual block, GAP, Dense: a tiny ResNet."""
    keras.utils.set_random_seed(seed)
    x = keras.Input(SHAPE)
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    r = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(h)
    r = keras.layers.BatchNormalization()(r)
    h = keras.layers.ReLU()(keras.layers.Add()([h, r]))
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(num_classes)(h)
    model = keras.Model(x, out, name="tiny_resnet")
    # Non-trivial BN statistics so that folding BN is actually exercised.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, g.shape),
                    rng.normal(0, 0.1, b.shape),
                    rng.normal(0, 0.2, m.shape),
                    rng.uniform(0.5, 2.0, v.shape),
                ]
            )
    return model


def images(n, seed=1):
    return np.random.default_rng(seed).standard_normal((n,) + SHAPE).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def model():
    return tiny_resnet()


def test_float32_matches_keras_within_1e4(model, tmp_path):
    x = images(32)
    res = to_litert(model, tmp_path / "m.tflite", check_data=x)
    assert os.path.isfile(res.path) and res.size_bytes == os.path.getsize(res.path)
    assert res.quantize is None and res.num_checked == 32
    assert res.max_abs_diff <= 1e-4
    assert res.top1_agreement == 1.0
    # Independent re-check through the public runner.
    got = run_litert(res.path, x, num_threads=1)
    ref = np.asarray(model(x, training=False))
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    # Only the final file is left behind (temp file renamed).
    assert os.listdir(tmp_path) == ["m.tflite"]


def test_random_check_when_no_data(model, tmp_path):
    res = to_litert(model, str(tmp_path / "m.tflite"))
    assert res.check_source == "random" and res.num_checked == 8
    assert res.max_abs_diff <= 1e-4


def test_runner_resizes_batch_and_dynamic_batch(model, tmp_path):
    x = images(5)
    ref = np.asarray(model(x, training=False))
    static = to_litert(model, tmp_path / "s.tflite")  # batch 1
    assert LiteRTRunner(static.path).input_shape == (1,) + SHAPE
    np.testing.assert_allclose(run_litert(static.path, x, batch_size=3), ref, atol=1e-4)
    dyn = to_litert(model, tmp_path / "d.tflite", batch_size=None)
    with open(dyn.path, "rb") as f:
        np.testing.assert_allclose(run_litert(f.read(), x), ref, atol=1e-4)


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_weight_quantised_modes(model, tmp_path, mode):
    x = images(16)
    ref_size = len(
        open(to_litert(model, tmp_path / "f.tflite", check=False).path, "rb").read()
    )
    res = to_litert(model, tmp_path / f"{mode}.tflite", mode, check_data=x)
    assert res.quantize == mode
    # weight quantisation keeps outputs close (relative to the output scale)
    scale = np.abs(np.asarray(model(x, training=False))).max()
    assert res.max_abs_diff < 0.05 * scale
    assert res.top1_agreement >= 0.9
    if mode == "float16":
        assert res.size_bytes < ref_size


def test_int8_full_integer(model, tmp_path):
    calib, test = images(64, seed=2), images(64, seed=3)
    res = to_litert(
        model, tmp_path / "q.tflite", "int8", representative_data=calib,
        check_data=test,
    )
    assert res.quantize == "int8" and res.check_source == "check_data"
    r = LiteRTRunner(res.path)
    assert r.input_dtype == np.float32 and r.output_dtype == np.float32
    # int8 kernels inside: the interpreter holds int8 tensors
    dtypes = {d["dtype"] for d in r.interpreter.get_tensor_details()}
    assert np.int8 in dtypes
    scale = np.abs(np.asarray(model(test, training=False))).max()
    assert res.max_abs_diff < 0.1 * scale
    assert res.top1_agreement >= 0.8


def test_int8_io(model, tmp_path):
    calib = images(32, seed=2)
    res = to_litert(
        model, tmp_path / "q.tflite", "int8", representative_data=calib,
        int8_io=True,
    )
    r = LiteRTRunner(res.path)
    assert r.input_dtype == np.int8 and r.output_dtype == np.int8
    # the runner quantises/dequantises: outputs are float and close to Keras
    out = r(calib[:4])
    assert out.dtype == np.float32
    ref = np.asarray(model(calib[:4], training=False))
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()


def test_int8_needs_representative_data(model, tmp_path):
    with pytest.raises(ValueError, match="representative_data"):
        to_litert(model, tmp_path / "q.tflite", "int8")
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_representative_data_forms(model, tmp_path):
    import tensorflow as tf

    x = images(20)
    y = np.zeros(20, np.int32)
    unbatched = tf.data.Dataset.from_tensor_slices(x)
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    for i, data in enumerate([unbatched, batched, (x, y), lambda: iter([x[:10]])]):
        res = to_litert(
            model, tmp_path / f"q{i}.tflite", "int8", representative_data=data
        )
        assert res.check_source == "representative_data"
        assert res.num_checked == (10 if i == 3 else 20)


def test_min_top1_agreement_failure_writes_nothing(model, tmp_path):
    with pytest.raises(ParityError, match="nothing was written"):
        to_litert(
            model, tmp_path / "q.tflite", "int8",
            representative_data=images(16), min_top1_agreement=1.01,
        )
    assert not os.listdir(tmp_path)


def test_never_overwrites_unless_asked(model, tmp_path):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"user data")
    with pytest.raises(ValueError, match="already exists"):
        to_litert(model, target)
    assert target.read_bytes() == b"user data"
    res = to_litert(model, target, overwrite=True)
    assert res.size_bytes > 1000 and target.read_bytes() != b"user data"


def test_bad_arguments(model, tmp_path):
    with pytest.raises(ValueError, match=".tflite"):
        to_litert(model, tmp_path / "m.bin")
    with pytest.raises(ValueError, match="quantize"):
        to_litert(model, tmp_path / "m.tflite", "int4")
    with pytest.raises(TypeError, match="keras.Model"):
        to_litert(object(), tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="does not exist"):
        to_litert(model, tmp_path / "missing_dir" / "m.tflite")
    with pytest.raises(ValueError, match="expects"):
        to_litert(model, tmp_path / "m.tflite", check_data=np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="int8_io"):
        to_litert(model, tmp_path / "m.tflite", int8_io=True)
    with pytest.raises(ValueError, match="does not exist"):
        LiteRTRunner(tmp_path / "nope.tflite")
    assert not os.listdir(tmp_path)


def test_check_parity_and_top1_helpers(model, tmp_path):
    res = to_litert(model, tmp_path / "m.tflite", check=False)
    assert res.max_abs_diff is None
    p = check_parity(model, res.path, images(4))
    assert p["num_checked"] == 4 and p["max_abs_diff"] <= 1e-4
    assert top1_agreement([[0, 1], [1, 0]], [[0, 2], [0, 1]]) == 0.5
    with pytest.raises(ValueError, match="Shapes differ"):
        top1_agreement(np.zeros((2, 3)), np.zeros((3, 3)))


def test_saved_model_parity_and_overwrite(model, tmp_path):
    import tensorflow as tf

    x = images(4)
    res = to_saved_model(model, tmp_path / "sm", check_data=x)
    assert res.max_abs_diff <= 1e-5 and res.size_bytes > 0
    loaded = tf.saved_model.load(res.path)
    out = loaded.signatures["serving_default"](input=tf.constant(x))["output"]
    np.testing.assert_allclose(out.numpy(), np.asarray(model(x)), atol=1e-5)
    with pytest.raises(ValueError, match="already exists"):
        to_saved_model(model, tmp_path / "sm")
    res2 = to_saved_model(model, tmp_path / "sm", overwrite=True)
    assert res2.path == res.path
    assert sorted(os.listdir(tmp_path)) == ["sm"]  # no temp dirs left


def test_import_does_not_pull_tensorflow_or_tfmot():
    code = (
        "import sys, remotetrimmer_tf.export as e;"
        "bad=[m for m in ('tensorflow','tf_keras',"
        "'tensorflow_model_optimization','ai_edge_litert') if m in sys.modules];"
        "print(','.join(bad))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.strip() == ""
