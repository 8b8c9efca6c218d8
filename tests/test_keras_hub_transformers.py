"""keras-hub vision transformers: Backbones, nested backbones and tasks.

Built offline from their constructors with small configs
(``tools/keras_hub_vit_zoo.py``, shared with ``tools/bench_transformers.py``).
Those built on ``MultiHeadAttention`` lose whole heads and MLP units, the
hand-written attentions their MLP units; every one prunes exactly (no-op
rebuild, dead channels removed) and the pruned plain model saves and
reloads. The ones that cannot be followed are refused in one line naming the
layer. The user's model is never touched: pruning adds no node to its layers,
and training the pruned model leaves its weights as they were.
"""

import keras
import warnings

import numpy as np
import pytest

import remotetrimmer_tf as rt
from remotetrimmer_tf.graph import DependencyGraph, silence_dropped
from helpers import assert_close as _assert_close, fast_first, load_tool, outputs  # noqa: E402

pytest.importorskip("keras_hub")

zoo = load_tool("keras_hub_vit_zoo")

X = np.random.default_rng(0).standard_normal((2, zoo.SIZE, zoo.SIZE, 3)).astype("float32")
WITH_MHA = ["ViT", "DeiT", "DINOv2 (SwiGLU, registers)", "SigLIP vision tower",
            "CLIP vision tower"]
HAND_WRITTEN = ["DINOv3", "MiT (SegFormer encoder)"]


def _out(model):
    return outputs(model, X)


def _check_exact(model, tmp_path):
    pruner = rt.Pruner(model, importance="l1", ratio=0.5)
    keep = pruner.plan()
    small = rt.prune_channels(pruner.graph.model, keep, graph=pruner.graph)
    assert keep
    _assert_close(_out(model), _out(rt.prune_channels(model, {}, graph=pruner.graph)))
    quiet = silence_dropped(model, keep, graph=pruner.graph)
    _assert_close(_out(quiet), _out(rt.prune_channels(quiet, keep)))
    assert 0 < rt.count_macs(small) < rt.count_macs(model)
    path = tmp_path / "small.keras"
    small.save(path)
    _assert_close(_out(small), _out(keras.saving.load_model(path)))
    return pruner, small


@pytest.mark.parametrize("name", fast_first(WITH_MHA) + fast_first(HAND_WRITTEN, keep=0))
def test_vision_transformer_backbone_prunes_exactly(name, tmp_path):
    bb = zoo.backbone(name)
    before = [w.copy() for w in bb.get_weights()]
    nodes = {layer.name: len(layer._inbound_nodes) for layer in bb.layers}
    pruner, small = _check_exact(bb, tmp_path)
    heads = [g for g in pruner.graph.groups if g.units is not None and g.prunable]
    if name in WITH_MHA:
        assert heads and all(g.index in pruner.plan() for g in heads)
        mhas = [layer for layer in small.layers
                if isinstance(layer, keras.layers.MultiHeadAttention)]
        assert mhas and all(layer.num_heads == 2 for layer in mhas)
    for a, b in zip(before, bb.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert {layer.name: len(layer._inbound_nodes) for layer in bb.layers} == nodes


def test_nested_vit_and_image_classifier_prune_exactly(tmp_path):
    bb = zoo.backbone("ViT")
    _check_exact(zoo.nested(bb), tmp_path)
    _check_exact(zoo.classifier("ViT", bb), tmp_path)


def test_training_the_pruned_model_leaves_the_original_alone():
    bb = zoo.backbone("DeiT")
    task = zoo.classifier("DeiT", bb)
    before = [w.copy() for w in task.get_weights()]
    small = rt.Pruner(task, importance="l2", ratio=0.5).prune()
    original = {id(v) for v in task.weights}
    assert not any(id(v) in original for v in small.weights)
    small.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    small.fit(X, np.array([0, 1]), epochs=1, verbose=0)
    for a, b in zip(before, task.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,layer", [("Swin", "blocks_0"),
                                        ("ViTDet", "add_positional_embedding")])
def test_untraceable_transformers_are_refused_in_one_line(name, layer):
    # a layer whose call cannot run on symbolic tensors stays one opaque node:
    # refused in one line naming it
    with pytest.raises(ValueError) as err:
        DependencyGraph(zoo.backbone(name))
    assert layer in str(err.value) and "\n" not in str(err.value)


def test_a_layer_built_with_a_lambda_is_copied_in_process():
    """MobileNetV5 builds Activation(lambda x: gelu(x)): Keras rebuilds a lambda
    only with safe_mode=False; the copy reuses the same function in process."""
    bb = zoo.backbone("MobileNetV5 (hybrid, MQA)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        thin = rt.Pruner(bb, importance="l1", ratio=0.5, approximate=("layernorm",)).prune()
    assert thin.count_params() < bb.count_params()
