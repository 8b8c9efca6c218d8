"""Float32 LiteRT parity on models that amplify float32 rounding.

An absolute 1e-4 bound fails correct exports of models with large outputs;
the check then compares LiteRT and Keras float32 with the model evaluated in
float64. A file of a perturbed model must still fail.
"""
import keras
import numpy as np
import pytest

from remotetrimmer_tf.export import litert

L = keras.layers


def _loud_net(seed=0, depth=10):
    """A deep plain CNN whose outputs are ~1e3: rounding moves them > 1e-4."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((16, 16, 3))
    h = x
    for i in range(depth):
        h = L.Conv2D(16, 3, padding="same", name=f"c{i}",
                     kernel_initializer=keras.initializers.HeNormal(seed + i))(h)
        h = L.BatchNormalization(name=f"bn{i}")(h)
        h = L.ReLU(name=f"r{i}")(h)
    h = L.GlobalAveragePooling2D()(h)
    y = L.Dense(4, name="fc", kernel_initializer=keras.initializers.RandomNormal(
        stddev=300.0, seed=seed))(h)
    model = keras.Model(x, y, name="loud")
    rng = np.random.default_rng(seed)
    for i in range(depth):
        bn = model.get_layer(f"bn{i}")
        bn.set_weights([rng.uniform(1.0, 2.0, 16).astype("float32"),
                        rng.normal(0, 0.1, 16).astype("float32"),
                        rng.normal(0, 0.1, 16).astype("float32"),
                        rng.uniform(0.5, 1.0, 16).astype("float32")])
    return model


def _x(n=16, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 16, 16, 3)).astype("float32")


def test_float64_reference_matches_keras_to_rounding():
    model = _loud_net()
    x = _x(4)
    exact = litert.float64_outputs(model, x)
    ref = np.asarray(model(x, training=False))
    scale = np.abs(exact).max()
    assert scale > 100
    assert 0 < np.abs(ref - exact).max() < 1e-4 * scale


@pytest.mark.slow
def test_correct_export_of_a_rounding_amplifying_model_passes(tmp_path):
    model = _loud_net()
    x = _x()
    data = litert.convert_to_litert_bytes(model, None, None)
    res = litert.write_checked(model, str(tmp_path / "m.tflite"), data,
                               quantize=None, int8_io=False, x=x,
                               source="check_data", atol=1e-4)
    assert res.max_abs_diff > 1e-4          # the absolute bound alone fails
    info = res.extra["float64_reference"]
    assert info["passed"] and info["litert_error"] <= info["tolerance"]
    assert info["keras_float32_error"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1.001, 1.01])
def test_a_perturbed_model_still_fails(tmp_path, scale):
    model = _loud_net()
    wrong = _loud_net()
    k = wrong.get_layer("c5")
    w, b = k.get_weights()
    k.set_weights([w * scale, b])
    data = litert.convert_to_litert_bytes(wrong, None, None)
    with pytest.raises(litert.ParityError, match="float64 outputs"):
        litert.write_checked(model, str(tmp_path / "m.tflite"), data,
                             quantize=None, int8_io=False, x=_x(),
                             source="check_data", atol=1e-4)
    assert not (tmp_path / "m.tflite").exists()


def test_a_perturbed_small_model_fails_on_the_absolute_bound(tmp_path):
    x_in = keras.Input((8, 8, 3))
    y = L.Dense(3)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3, name="c")(x_in)))
    model = keras.Model(x_in, y)
    wrong = keras.models.clone_model(model)
    wrong.set_weights([w * 1.01 for w in model.get_weights()])
    data = litert.convert_to_litert_bytes(wrong, None, None)
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    with pytest.raises(litert.ParityError, match="atol"):
        litert.write_checked(model, str(tmp_path / "m.tflite"), data,
                             quantize=None, int8_io=False, x=x,
                             source="check_data", atol=1e-4)
    ok = litert.write_checked(model, str(tmp_path / "ok.tflite"),
                              litert.convert_to_litert_bytes(model, None, None),
                              quantize=None, int8_io=False, x=x,
                              source="check_data", atol=1e-4)
    assert ok.max_abs_diff <= 1e-4 and ok.extra is None
