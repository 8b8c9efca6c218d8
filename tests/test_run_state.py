"""The run folder's models are saved without training state."""
import io
import zipfile

import keras
import numpy as np

from remotetrimmer_tf.pipeline.run_state import without_optimizer


def test_a_fitted_model_is_saved_without_its_optimizer(tmp_path):
    import h5py
    inp = keras.Input((6, 6, 3))
    out = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(inp)))
    model = keras.Model(inp, out)
    model.compile("adam", "mse")
    x = np.random.default_rng(0).random((4, 6, 6, 3), dtype="float32")
    model.fit(x, np.zeros((4, 2)), verbose=0)
    bare = without_optimizer(model)
    assert getattr(bare, "optimizer", None) is None and model.optimizer is not None
    bare.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        weights = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
        assert "optimizer" not in weights
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(x), model(x), rtol=1e-6, atol=1e-6)
