"""The silently-wrong cases of the first wave, with its APIs only (so the
same file ran, and failed, on the code before the fix)."""
import keras
import numpy as np
import pytest
from keras import layers as L

from remotetrimmer_tf.graph import DependencyGraph
from remotetrimmer_tf.surgeon import prune_channels

X = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")


from helpers import group_of as _group_of, zero_bn_channels as _zero_bn_channels  # noqa: E402


@pytest.mark.parametrize("make", ["activation", "dense_gate", "layernorm"])
def test_dead_bn_channels_are_never_pruned_wrongly(make):
    """Only the APIs of the first wave: prunable groups must prune BN-zeroed
    channels exactly (this failed before: softmax traps were channel-wise,
    LayerNorm groups were pruned as exact)."""
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn")(x)
    if make == "activation":
        x = L.Activation("softmax")(x)
    elif make == "dense_gate":
        s = L.Dense(6, activation="softmax", name="gate")(L.GlobalAveragePooling2D()(x))
        x = L.Multiply()([x, L.Reshape((1, 1, 6))(s)])
    else:
        x = L.LayerNormalization(name="ln")(x)
    model = keras.Model(inp, L.Conv2D(4, 1, name="c2")(x))
    drop = [1, 3]
    _zero_bn_channels(model, drop)
    graph = DependencyGraph(model)
    g = _group_of(graph, "c1")
    if not g.prunable:
        assert g.reason
        return
    keep = {g.index: np.setdiff1d(np.arange(g.size), drop)}
    small = prune_channels(model, keep, graph=graph)
    np.testing.assert_allclose(np.asarray(small(X)), np.asarray(model(X)), atol=1e-5)
