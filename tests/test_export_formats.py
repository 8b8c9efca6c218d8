"""Every Keras export format with a parity check (issue 29): a pruned model
through ``model.export(format=...)`` for litert, tf_saved_model, onnx (and
openvino where its package is installed), each run by its own runtime and
compared with Keras; bad formats, missing packages and a wrong artifact are
refused in one line, nothing written.
"""
import os

import keras
import numpy as np
import pytest

import remotetrimmer_tf as rt
from helpers import load_tool
from remotetrimmer_tf.export import formats as fm
from remotetrimmer_tf.export.litert import ParityError

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the converters run on the TensorFlow backend")

AVAILABLE = [f for f in fm.FORMATS if not fm.missing_packages(f)]


def _pruned(channels=5):
    """A small BN/residual CNN with any input band count, pruned by half."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((16, 16, channels))
    x = L.Conv2D(16, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="r1")(x)
    y = L.Conv2D(16, 3, padding="same", name="c2")(x)
    y = L.BatchNormalization(name="bn2")(y)
    x = L.ReLU(name="r2")(L.Add(name="add")([x, y]))
    x = L.SeparableConv2D(24, 3, strides=2, padding="same", name="sep")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(4, name="head")(x)
    model = keras.Model(inp, out)
    return rt.Pruner(model, importance="l1", ratio=0.5).prune()


PATHS = {"litert": "m.tflite", "tf_saved_model": "sm", "onnx": "m.onnx",
         "openvino": "m.xml"}


@pytest.mark.parametrize("fmt", AVAILABLE)
def test_pruned_model_exports_and_matches(fmt, tmp_path):
    model = _pruned(channels=13)
    x = np.random.default_rng(3).standard_normal((6, 16, 16, 13)).astype("float32")
    res = fm.export_format(model, tmp_path / PATHS[fmt], fmt, check_data=x)
    assert res.format == fmt and res.num_checked == 6 and res.size_bytes > 0
    assert res.max_abs_diff <= 1e-4
    assert os.path.exists(res.path)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    again = fm.RUNNERS[fmt](res.path, x)          # the file on disk, run again
    np.testing.assert_allclose(again, np.asarray(model(x)), atol=1e-4)


def test_saved_model_and_tflite_aliases(tmp_path):
    assert fm.parse_formats(("litert,onnx", "saved_model", "tflite")) == \
        ["litert", "onnx", "tf_saved_model"]
    with pytest.raises(fm.ExportFormatError) as err:
        fm.parse_formats("litert,pdf")
    assert "'pdf'" in str(err.value) and "onnx" in str(err.value)


def test_keras_hub_backbone_exports_to_onnx(tmp_path):
    pytest.importorskip("keras_hub")
    if fm.missing_packages("onnx"):
        pytest.skip("onnx packages not installed")
    zoo = load_tool("keras_hub_zoo")
    thin = rt.Pruner(zoo.backbone("ResNetV1 basic"), importance="l1", ratio=0.5).prune()
    res = fm.export_format(thin, tmp_path / "bb.onnx", "onnx", num_check=2)
    assert res.max_abs_diff <= 1e-4


@pytest.mark.slow
def test_pruned_keras_hub_vit_exports_to_onnx(tmp_path):
    """keras-hub's ViT captures tensors Keras' ONNX route turns into inputs,
    and its MLP uses exact GELU: the frozen-graph route, checked."""
    pytest.importorskip("keras_hub")
    if fm.missing_packages("onnx"):
        pytest.skip("onnx packages not installed")
    zoo = load_tool("keras_hub_vit_zoo")
    thin = rt.Pruner(zoo.nested(zoo.backbone("ViT")), importance="l1", ratio=0.5).prune()
    res = fm.export_format(thin, tmp_path / "vit.onnx", "onnx", num_check=2)
    assert res.max_abs_diff <= 1e-4


def test_a_wrong_artifact_is_refused_and_nothing_written(tmp_path, monkeypatch):
    model = _pruned()
    fmt = AVAILABLE[0]
    real = fm.RUNNERS[fmt]
    monkeypatch.setitem(fm.RUNNERS, fmt, lambda path, x: real(path, x) + 0.5)
    with pytest.raises(ParityError, match="nothing was written"):
        fm.export_format(model, tmp_path / PATHS[fmt], fmt)
    assert os.listdir(tmp_path) == []


def test_missing_package_and_bad_path_are_one_line(tmp_path, monkeypatch):
    model = _pruned()
    monkeypatch.setattr(fm.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else object())
    with pytest.raises(fm.ExportFormatError) as err:
        fm.export_format(model, tmp_path / "m.onnx", "onnx")
    assert "pip install onnxruntime" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.undo()
    with pytest.raises(fm.ExportFormatError, match=".tflite"):
        fm.export_format(model, tmp_path / "m.onnx", "litert")
    (tmp_path / "m.tflite").write_bytes(b"user's file")
    with pytest.raises(fm.ExportFormatError, match="already exists"):
        fm.export_format(model, tmp_path / "m.tflite", "litert")
    assert (tmp_path / "m.tflite").read_bytes() == b"user's file"


def test_dynamic_input_needs_check_data(tmp_path):
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(2, 1)(inp)))
    with pytest.raises(fm.ExportFormatError, match="check_data"):
        fm.export_format(model, tmp_path / "sm", "tf_saved_model")
    x = np.ones((2, 8, 8, 3), "float32")
    res = fm.export_format(model, tmp_path / "sm", "tf_saved_model", check_data=x)
    assert res.max_abs_diff <= 1e-5


def _normalized_gelu_model(adapt):
    """A pruned model with what Keras' ONNX route (tf2onnx.from_function)
    fails on: a Normalization layer (its mean / variance are captured
    tensors, not variables) and an exact GELU (TensorFlow's Erfc)."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((12, 12, 3))
    if adapt:
        norm = L.Normalization(axis=-1)
        norm.adapt(np.random.default_rng(0).uniform(0, 255, (16, 12, 12, 3)).astype("float32"))
    else:
        norm = L.Normalization(axis=-1, mean=[120.0, 110.0, 100.0], variance=[900.0, 800.0, 700.0])
    x = norm(inp)
    x = L.Conv2D(16, 3, name="c1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Activation("gelu", name="act")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(8, activation="gelu", name="mlp")(x)
    model = keras.Model(inp, L.Dense(3, name="head")(x))
    return rt.Pruner(model, importance="l1", ratio=0.5).prune()


@pytest.mark.parametrize("adapt", [True, False])
def test_onnx_of_normalization_and_exact_gelu_runs_with_one_input(adapt, tmp_path):
    if fm.missing_packages("onnx"):
        pytest.skip("onnx packages not installed")
    import onnxruntime as ort
    model = _normalized_gelu_model(adapt)
    x = np.random.default_rng(4).uniform(0, 255, (5, 12, 12, 3)).astype("float32")
    res = fm.export_format(model, tmp_path / "m.onnx", "onnx", check_data=x)
    assert res.max_abs_diff <= 1e-4 and res.converter == "frozen_graph"
    session = ort.InferenceSession(res.path, providers=["CPUExecutionProvider"])
    assert len(session.get_inputs()) == 1
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
    # unchecked, the artifact is still one that runs
    res = fm.export_format(model, tmp_path / "u.onnx", "onnx", check=False)
    np.testing.assert_allclose(fm.RUNNERS["onnx"](res.path, x), np.asarray(model(x)),
                               atol=1e-4)


def test_grouped_convolution_exports_to_onnx(tmp_path):
    """Keras runs grouped convolutions on CPU through an XLA function that
    tf2onnx leaves unconverted: the frozen-graph route inlines it."""
    if fm.missing_packages("onnx"):
        pytest.skip("onnx packages not installed")
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((10, 10, 4))
    x = L.Conv2D(16, 1, name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(16, 3, padding="same", groups=4, name="grouped")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = rt.Pruner(keras.Model(inp, L.Dense(3)(x)), importance="l1", ratio=0.5).prune()
    assert model.get_layer("grouped").groups == 4
    res = fm.export_format(model, tmp_path / "g.onnx", "onnx")
    assert res.converter == "frozen_graph" and res.max_abs_diff <= 1e-4


def test_exact_gelu_goes_through_keras_onnx_export(tmp_path):
    if fm.missing_packages("onnx"):
        pytest.skip("onnx packages not installed")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="gelu", name="c")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    res = fm.export_format(model, tmp_path / "g.onnx", "onnx")
    assert res.converter == "keras" and res.max_abs_diff <= 1e-4


def test_an_artifact_the_runtime_cannot_load_is_one_line(tmp_path, monkeypatch):
    model = _pruned()
    fmt = AVAILABLE[0]

    def broken(path, x):
        raise RuntimeError("INVALID_GRAPH : node X\nsecond line")
    monkeypatch.setitem(fm.RUNNERS, fmt, broken)
    with pytest.raises(fm.ExportFormatError) as err:
        fm.export_format(model, tmp_path / PATHS[fmt], fmt)
    assert "does not run" in str(err.value) and "\n" not in str(err.value)
    assert os.listdir(tmp_path) == []
