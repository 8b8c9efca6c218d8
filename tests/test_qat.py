"""Tests for the optional tfmot extra: QAT and TFMOT magnitude pruning.

The end-to-end tests need tensorflow-model-optimization and tf_keras importable
by the worker's Python (the current interpreter, or $REMOTETRIMMER_QAT_PYTHON).
Install them in a separate venv (tfmot pins absl-py 1.x and flips tf.keras):

    python -m venv --system-site-packages /tmp/qatenv
    /tmp/qatenv/bin/pip install tensorflow-model-optimization tf_keras
    /tmp/qatenv/bin/python -m pytest tests/test_qat.py -q

In an environment without them these tests are skipped with that reason; the
bridge-spec and argument checks below run everywhere.
"""

import os
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
    compressed_size,
    qat_available,
    qat_to_litert,
    tfmot_prune_to_litert,
    to_litert,
)
from remotetrimmer_tf.export.qat import bridge_spec  # noqa: E402

SHAPE = (16, 16, 3)
QAT_OK, QAT_REASON = qat_available()
needs_tfmot = pytest.mark.skipif(
    not QAT_OK, reason=f"optional 'qat' extra not installed: {QAT_REASON}"
)


def tiny_cnn(seed=0, width=8):
    keras.utils.set_random_seed(seed)
    x = keras.Input(SHAPE)
    h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    r = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(h)
    r = keras.layers.BatchNormalization()(r)
    h = keras.layers.ReLU()(keras.layers.Add()([h, r]))
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(3)(h)
    return keras.Model(x, out, name="tiny_cnn")


def toy_data(n=96, seed=0):
    """Three separable classes: the mean colour channel carries the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    x = rng.normal(0, 0.5, (n,) + SHAPE).astype(np.float32)
    x[np.arange(n), :, :, y] += 1.5
    return x, y


def test_bridge_spec_describes_graph_and_weights():
    m = tiny_cnn()
    spec, weights = bridge_spec(m)
    names = [l["name"] for l in spec["layers"]]
    assert names == [l.name for l in m.layers]
    add = next(l for l in spec["layers"] if l["class_name"] == "Add")
    refs = add["nodes"][0]["args"][0]
    assert [r["__ref__"][0] for r in refs] == [
        m.layers[3].name, m.layers[5].name
    ]
    assert spec["outputs"] == [{"__ref__": [m.layers[-1].name, 0, 0]}]
    n_arrays = sum(len(l.get_weights()) for l in m.layers)
    assert len(weights) == n_arrays == sum(spec["num_weights"].values())


def test_bridge_rejects_custom_layers():
    class Gate(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    x = keras.Input(SHAPE)
    h = Gate(name="se_gate")(keras.layers.Conv2D(4, 3)(x))
    m = keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    with pytest.raises(ValueError, match="se_gate"):
        bridge_spec(m)


def test_argument_checks_before_any_work(tmp_path):
    m = tiny_cnn()
    with pytest.raises(ValueError, match="sparsity"):
        tfmot_prune_to_litert(m, tmp_path / "p.tflite", 1.5, toy_data())
    with pytest.raises(ValueError, match="train_data"):
        tfmot_prune_to_litert(m, tmp_path / "p.tflite", 0.5)
    with pytest.raises(ValueError, match=".tflite"):
        qat_to_litert(m, tmp_path / "p.bin", toy_data())
    assert not os.listdir(tmp_path)


def test_missing_extra_gives_clear_error(tmp_path):
    ok, reason = qat_available(python=sys.executable + "-does-not-exist")
    assert not ok and "cannot run" in reason
    with pytest.raises(ImportError, match="tfmot is not available"):
        qat_to_litert(
            tiny_cnn(), tmp_path / "q.tflite", toy_data(),
            python=sys.executable + "-does-not-exist",
        )


def test_compressed_size_of_sparse_bytes():
    dense = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    sparse = dense.copy()
    sparse[: 3 * 4096 // 4] = 0
    assert compressed_size(sparse.tobytes()) < 0.5 * compressed_size(dense.tobytes())


@pytest.mark.slow
@needs_tfmot
def test_qat_end_to_end(tmp_path):
    x, y = toy_data(128)
    m = tiny_cnn()
    m.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    m.fit(x, y, epochs=8, batch_size=32, verbose=0)
    res = qat_to_litert(
        m, tmp_path / "qat.tflite", (x, y), check_data=x, epochs=1,
        learning_rate=1e-3, timeout=300,
    )
    assert os.path.isfile(res.path) and res.quantize == "int8"
    info = res.extra
    assert info["bridge_max_abs_diff"] <= 1e-4  # tf_keras rebuild == Keras 3
    assert len(info["history"]["loss"]) == 1 and info["num_train_samples"] == 128
    r = LiteRTRunner(res.path)
    assert np.int8 in {d["dtype"] for d in r.interpreter.get_tensor_details()}
    # QAT int8 model still predicts like the float model on the toy task
    assert res.top1_agreement >= 0.8
    assert os.listdir(tmp_path) == ["qat.tflite"]
    # the current process still runs Keras 3 (tfmot stayed in the worker)
    assert "tensorflow_model_optimization" not in sys.modules
    assert keras.__version__.startswith("3.")


@pytest.mark.slow
@needs_tfmot
def test_tfmot_magnitude_pruning_row(tmp_path):
    x, y = toy_data(64)
    m = tiny_cnn(width=16)
    dense = to_litert(m, tmp_path / "dense.tflite")
    res = tfmot_prune_to_litert(
        m, tmp_path / "tfmot.tflite", 0.75, (x, y), check_data=x[:16],
        learning_rate=0.0, timeout=300,
    )
    info = res.extra
    assert abs(info["kernel_sparsity"] - 0.75) < 0.02
    # same dense tensors: file size about unchanged, gzip size much smaller
    assert res.size_bytes > 0.8 * dense.size_bytes
    assert info["gzip_bytes"] < 0.7 * compressed_size(dense.path)
