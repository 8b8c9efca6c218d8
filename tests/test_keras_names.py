"""The two names that differ from their Keras namesakes: the
ambiguous default must be stated; left out it still works, with a
DeprecationWarning, and saved models load unchanged without one."""
import warnings

import keras
import numpy as np
import pytest

import remotetrimmer_tf as rt
from remotetrimmer_tf import training


def _bn_model():
    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.BatchNormalization()(keras.layers.Dense(3)(inp)))


def test_count_params_states_what_it_counts():
    model = _bn_model()   # Dense 4*3+3 = 15 trainable, BN 3+3 trainable + 3+3 moving
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rt.count_params(model, trainable_only=True) == 21
        assert rt.count_params(model, trainable_only=False) == model.count_params() == 27
    with pytest.warns(DeprecationWarning, match="trainable_only"):
        assert rt.count_params(model) == 21


def test_aml_states_from_logits():
    y, z = np.array([0, 2]), np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]], "float32")
    with pytest.warns(DeprecationWarning, match="from_logits"):
        implicit = rt.AdaptiveMiningLoss()
    assert implicit.from_logits is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explicit = rt.AdaptiveMiningLoss(from_logits=True)
        probs = rt.AdaptiveMiningLoss(from_logits=False)
    np.testing.assert_allclose(float(implicit(y, z)), float(explicit(y, z)), rtol=1e-6)
    p = keras.ops.convert_to_numpy(keras.ops.softmax(z))
    np.testing.assert_allclose(float(probs(y, p)), float(explicit(y, z)), rtol=1e-5)


def test_saved_aml_configs_and_models_load_silently(tmp_path):
    loss = training.make_loss({"loss": "aml"}, from_logits=True)
    config = keras.saving.serialize_keras_object(loss)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        again = keras.saving.deserialize_keras_object(config)
    assert again.from_logits is True and again.get_config() == loss.get_config()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=loss)
    path = str(tmp_path / "m.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(path)
    assert not [w for w in caught if "from_logits" in str(w.message)]
    assert loaded.loss.from_logits is True
    # a config written before the keyword was explicit still loads (same value)
    old = {k: v for k, v in loss.get_config().items() if k != "from_logits"}
    with pytest.warns(DeprecationWarning):
        assert rt.AdaptiveMiningLoss.from_config(old).from_logits is True
