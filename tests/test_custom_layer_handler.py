"""A custom layer registered with ONE handler is pruned, scored and counted.

The layer keeps its kernel output-major, ``weight (out, in)`` as in PyTorch,
and calls it ``weight``: nothing outside its handler can guess which axis
carries which channels. Its handler's ``weight_axes`` declaration is the only
place that says so, and the surgeon (slicing), ``l1`` / ``fpgm`` / ``taylor``
(filters per output channel), ``count_macs`` / ``PlanCost`` (MACs) and dead
channels (exactness check) all read it.
"""

import keras
import numpy as np
import pytest
from keras import layers as L

from remotetrimmer_tf import Pruner, count_macs, prune_channels
from remotetrimmer_tf.cost import PlanCost
from remotetrimmer_tf.graph import (DependencyGraph, LayerHandler, WeightAxes,
                                    register_handler, silence_dropped)
from remotetrimmer_tf.importance.taylor import mean_gradients


@keras.saving.register_keras_serializable("test_custom_layer_handler")
class TorchPointwise(L.Layer):
    """``y = x @ weight.T + bias`` over the channel (last) axis; weight ``(out, in)``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.weight = self.add_weight(name="weight", shape=(self.units, input_shape[-1]),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,),
                                    initializer="random_normal")

    def call(self, x):
        return keras.ops.einsum("...i,oi->...o", x, self.weight) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class TorchPointwiseHandler(LayerHandler):
    """The one handler: channels (propagate), weight axes, config width."""

    def propagate(self, node, ctx):
        ctx.consumer(node, node.in_maps[0])
        out = ctx.fresh(node, node.out_channels(0))
        ctx.producer(node, out)
        return [out]

    def weight_axes(self, layer):
        return {0: WeightAxes(out_axis=0, in_axis=1, per="output"),
                1: WeightAxes(out_axis=0)}

    def prune(self, layer, config, weights, in_masks, out_masks):
        config, weights = super().prune(layer, config, weights, in_masks, out_masks)
        config["units"] = int(out_masks[0].sum())
        return config, weights


register_handler(TorchPointwise, TorchPointwiseHandler())


def _model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 6, 3))
    x = TorchPointwise(8, name="mine")(inp)            # producer of 8 channels
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(6, 3, padding="same", name="conv")(x)
    x = TorchPointwise(5, name="mine2")(x)             # consumer of conv's 6
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(2, name="head")(x))


def _group(graph, producer):
    return next(g for g in graph.groups if [m.layer for m in g.producers] == [producer])


def _data():
    rng = np.random.RandomState(0)
    return rng.randn(16, 6, 6, 3).astype("float32"), rng.randint(0, 2, 16).astype("int32")


def test_l1_and_fpgm_score_the_declared_output_axis():
    model = _model()
    w = model.get_layer("mine").get_weights()[0].astype(np.float64)     # (8, 3)
    graph = DependencyGraph(model)
    g = _group(graph, "mine")
    l1 = Pruner(model, importance="l1", ratio=0.5)
    l1.plan()
    assert g.index in l1.scores, l1.skipped
    np.testing.assert_allclose(l1.scores[g.index], np.abs(w).sum(axis=1))
    fpgm = Pruner(model, importance="fpgm", ratio=0.5)
    fpgm.plan()
    d = np.sqrt(((w[:, None, :] - w[None, :, :]) ** 2).sum(-1)).sum(1)
    np.testing.assert_allclose(fpgm.scores[g.index], d, rtol=1e-6)


def test_taylor_scores_weight_and_bias_of_the_custom_layer():
    model = _model()
    x, y = _data()
    pruner = Pruner(model, importance="taylor", ratio=0.5, steps=2)
    pruner.plan(data=(x, y))
    g = _group(pruner.graph, "mine")
    assert g.index in pruner.scores, pruner.skipped
    layer = model.get_layer("mine")
    grads = mean_gradients(model, (x, y), steps=2)
    w, b = (v.astype(np.float64) for v in layer.get_weights())
    expected = np.abs((w * grads[layer.weight.path]).sum(axis=1) + b * grads[layer.bias.path])
    np.testing.assert_allclose(pruner.scores[g.index], expected, rtol=1e-6)


@pytest.mark.parametrize("importance", ["l1", "fpgm"])
def test_custom_layer_is_pruned_exactly_and_reloads(importance, tmp_path):
    model = _model()
    pruner = Pruner(model, importance=importance, ratio=0.5)
    keep = pruner.plan()
    graph = pruner.graph
    mine, conv = _group(graph, "mine"), _group(graph, "conv")
    assert mine.index in keep and conv.index in keep       # both sides of it shrink
    small = pruner.prune()
    assert small.get_layer("mine").get_weights()[0].shape == (4, 3)
    assert small.get_layer("mine2").get_weights()[0].shape == (2, 3)  # its 5 -> 2 too
    x, _ = _data()
    quiet = silence_dropped(model, keep, graph=graph)       # dropped channels dead
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small(x)),
                               keras.ops.convert_to_numpy(quiet(x)), atol=1e-5)
    path = str(tmp_path / "small.keras")
    small.save(path)
    back = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(x)),
                               keras.ops.convert_to_numpy(small(x)), atol=1e-6)


def test_count_macs_and_plan_cost_count_the_custom_layer():
    model = _model()
    # mine: 36 positions * 8 * 3; conv: 36 * 9 * 8 * 6; mine2: 36 * 6 * 5; head: 5 * 2
    assert count_macs(model) == 36 * 8 * 3 + 36 * 9 * 8 * 6 + 36 * 6 * 5 + 5 * 2
    graph = DependencyGraph(model)
    keep = {_group(graph, "mine").index: [0, 2, 5], _group(graph, "conv").index: [1, 4]}
    small = prune_channels(model, keep, graph=graph)
    assert count_macs(small) == 36 * 3 * 3 + 36 * 9 * 3 * 2 + 36 * 2 * 5 + 5 * 2
    assert PlanCost(graph).macs(keep) == count_macs(small)
