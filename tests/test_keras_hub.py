"""keras-hub models: Backbones, nested backbones and ImageClassifier tasks.

Built offline from their constructors with small configs (``tools/
keras_hub_zoo.py``, shared with ``tools/bench_keras_hub.py``); never
``from_preset``. Every CNN backbone class prunes exactly: the no-op rebuild
and dead-channel removal leave outputs unchanged, and the pruned plain
functional model reloads without custom objects.
"""

import keras
import numpy as np
import pytest

import remotetrimmer_tf as rt
from remotetrimmer_tf.graph import DependencyGraph, silence_dropped
from helpers import assert_close as _assert_close, load_tool, outputs  # noqa: E402

keras_hub = pytest.importorskip("keras_hub")

zoo = load_tool("keras_hub_zoo")

X = np.random.default_rng(0).standard_normal((2, zoo.SIZE, zoo.SIZE, 3)).astype("float32")
CNN = [n for n, v in zoo.BACKBONES.items() if v[2] == "cnn"]


def _out(model):
    return outputs(model, X)


def _check_exact(model, ratio=0.5, tmp_path=None):
    pruner = rt.Pruner(model, importance="l1", ratio=ratio)
    small = pruner.prune()
    keep = pruner.plan()
    assert keep, "nothing was pruned"
    assert type(small) is keras.Model or isinstance(small, keras.Model)
    _assert_close(_out(model), _out(rt.prune_channels(model, {}, graph=pruner.graph)))
    quiet = silence_dropped(model, keep, graph=pruner.graph)
    _assert_close(_out(quiet), _out(rt.prune_channels(quiet, keep)))
    assert rt.count_params(small) < rt.count_params(model)
    assert 0 < rt.count_macs(small) < rt.count_macs(model)
    if tmp_path is not None:
        path = tmp_path / "small.keras"
        small.save(path)
        _assert_close(_out(small), _out(keras.saving.load_model(path)))
    return pruner, small


def _sweep(names):
    """The first name in the fast tier, the rest of the sweep slow."""
    return [n if i == 0 else pytest.param(n, marks=pytest.mark.slow)
            for i, n in enumerate(names)]


@pytest.mark.parametrize("name", _sweep(CNN))
def test_every_cnn_backbone_prunes_exactly(name, tmp_path):
    bb = zoo.backbone(name)
    before = [w.copy() for w in bb.get_weights()]
    n_nodes = {l.name: len(l._inbound_nodes) for l in bb.layers}
    _check_exact(bb, tmp_path=tmp_path)
    # the user's model is untouched: same weights, no new nodes on its layers
    for a, b in zip(before, bb.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert {l.name: len(l._inbound_nodes) for l in bb.layers} == n_nodes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["EfficientNetV2 (fused+unfused)",
                                  "ResNetV2 (pre-activation)"])
def test_nested_backbone_and_task_prune_exactly(name, tmp_path):
    bb = zoo.backbone(name)
    nested = zoo.nested(bb)
    pruner, small = _check_exact(nested, tmp_path=tmp_path)
    inner = next(l for l in small.layers if isinstance(l, keras.Model))
    assert inner.name == bb.name                     # the nested model stays nested
    names = {n for g in pruner.graph.groups for n in g.layers}
    assert any(n.startswith(bb.name + "/") for n in names)
    task = zoo.classifier(name, bb)
    _check_exact(task, tmp_path=tmp_path)


def test_ignore_reaches_inner_and_composite_layers():
    bb = zoo.backbone("EfficientNetV2 (fused+unfused)")
    nested = zoo.nested(bb)
    graph = DependencyGraph(nested)
    inner = sorted({m.layer for g in graph.groups if g.prunable for m in g.producers
                    if "/" in m.layer})[0]
    pruner = rt.Pruner(nested, importance="l1", ratio=0.5, ignore=(inner,))
    keep = pruner.plan()
    assert any("ignored" in why for why in pruner.skipped.values())
    assert all(inner not in pruner.graph.groups[gi].layers
               or inner in [m.layer for m in pruner.graph.groups[gi].consumers]
               for gi in keep)
    # a composite block's name ignores every layer it was inlined into
    block = next(l.name for l in bb.layers
                 if type(l).__name__ in ("FusedMBConvBlock", "MBConvBlock"))
    pr2 = rt.Pruner(bb, importance="l1", ratio=0.5, ignore=(block,))
    pr2.plan()
    assert any(block in why for why in pr2.skipped.values())
    with pytest.raises(ValueError, match="not in model"):
        rt.Pruner(bb, importance="l1", ratio=0.5, ignore=("no_such_layer",)).plan()


def test_task_with_preprocessor_keeps_it():
    """(issue 29: was refused) the preprocessor is carried over to the pruned
    task; tests/test_keras_hub_presets.py checks its presets."""
    bb = zoo.backbone("VGG")
    pre = keras_hub.models.ImageClassifierPreprocessor(
        image_converter=keras_hub.layers.ImageConverter(image_size=(64, 64)))
    task = keras_hub.models.VGGImageClassifier(backbone=bb, num_classes=3,
                                               preprocessor=pre)
    thin = rt.Pruner(task, importance="l1", ratio=0.5).prune()
    assert isinstance(thin, keras_hub.models.VGGImageClassifier)
    assert thin.preprocessor.get_config()["image_converter"]["config"]["image_size"] \
        == [64, 64] or tuple(thin.preprocessor.image_converter.image_size) == (64, 64)


def test_functional_subclass_built_in_init():
    class Tiny(keras.Model):
        def __init__(self, width=8, **kw):
            inp = keras.Input((16, 16, 3))
            x = keras.layers.Conv2D(width, 3, padding="same", name="c1")(inp)
            x = keras.layers.BatchNormalization(name="bn1")(x)
            out = keras.layers.Conv2D(2, 1, name="c2")(keras.layers.ReLU()(x))
            super().__init__(inp, out, **kw)
            self.width = width

        def get_config(self):
            return {"width": self.width, "name": self.name}

    model = Tiny()
    x = np.ones((1, 16, 16, 3), "float32")
    small = rt.Pruner(model, importance="slim", ratio=0.5).prune()
    assert type(small).__name__ == "Functional"
    assert small.get_layer("c1").filters == 4
    assert small(x).shape == (1, 16, 16, 2)
