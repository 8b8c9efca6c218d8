"""Two real keras.applications graphs (ops nodes, SE gates, Reshape): prune and reload."""

import os
import warnings

import keras
import numpy as np
import pytest

from remotetrimmer_tf.graph import DependencyGraph
from remotetrimmer_tf.cost import count_macs, count_params
from remotetrimmer_tf.surgeon import prune_channels


@pytest.mark.parametrize("name, kwargs, full_checks", [
    ("MobileNetV3Small", {"alpha": 0.75, "minimalistic": False}, True),
    pytest.param("EfficientNetB0", {}, False, marks=pytest.mark.slow),
])
def test_application_prunes_half_and_reloads(name, kwargs, full_checks, tmp_path):
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3),
                                              classes=5, **kwargs)
    graph = DependencyGraph(model)
    x = np.random.RandomState(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    if full_checks:
        same = prune_channels(model, {}, graph=graph)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(same(x)),
                                   keras.ops.convert_to_numpy(model(x)), atol=1e-6)
    prunable = [g for g in graph.groups if g.prunable and g.size > 1]
    assert len(prunable) >= 20
    keep = {g.index: np.arange(0, g.size, 2) for g in prunable}
    small = prune_channels(model, keep, graph=graph)
    assert count_params(small) < 0.5 * count_params(model)
    assert count_macs(small) < 0.5 * count_macs(model)
    y = keras.ops.convert_to_numpy(small(x))
    assert y.shape == (1, 5)
    if not full_checks:
        return
    path = os.path.join(tmp_path, "small.keras")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*numpy.*")
        small.save(path)
    back = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(x)), y, atol=1e-6)
