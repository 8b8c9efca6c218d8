"""Small keras-hub vision transformers built offline from their constructors.

Every vision-transformer backbone class of keras-hub 0.32 that builds without
a download, with a small config (random weights): ViT, DeiT, DINOv2 (with
register tokens and SwiGLU), DINOv3, Swin, MiT (SegFormer encoder), the
vision towers of SigLIP and CLIP, ViTDet and the hybrid MobileNetV5 (with a
multi-query attention block). ``nested`` / ``classifier`` wrap them as
``tools/keras_hub_zoo.py`` does for CNNs. Shared by
``tools/bench_transformers.py`` and the tests. Never uses ``from_preset``.
"""

from __future__ import annotations

import keras

SIZE = 32
NUM_CLASSES = 5


def _hub():
    import keras_hub
    return keras_hub


def _vit():
    return _hub().models.ViTBackbone(
        image_shape=(SIZE, SIZE, 3), patch_size=8, num_layers=2, num_heads=4,
        hidden_dim=16, mlp_dim=32)


def _deit():
    return _hub().models.DeiTBackbone(
        image_shape=(SIZE, SIZE, 3), patch_size=8, num_layers=2, num_heads=4,
        hidden_dim=16, intermediate_dim=32)


def _dinov2(swiglu=False, registers=0):
    def build():
        return _hub().models.DINOV2Backbone(
            patch_size=8, num_layers=2, hidden_dim=16, num_heads=4,
            intermediate_dim=32, num_register_tokens=registers,
            use_swiglu_ffn=swiglu, image_shape=(SIZE, SIZE, 3),
            position_embedding_shape=(SIZE, SIZE, 3))
    return build


def _dinov3():
    return _hub().models.DINOV3Backbone(
        patch_size=8, num_layers=2, hidden_dim=16, num_heads=4, intermediate_dim=32,
        num_register_tokens=2, image_shape=(SIZE, SIZE, 3))


def _swin():
    return _hub().models.SwinTransformerBackbone(
        image_shape=(SIZE, SIZE, 3), embed_dim=16, depths=[2, 1], num_heads=[2, 4],
        window_size=4, patch_size=4, drop_path=0.0)


def _mit():
    return _hub().models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[4, 2], max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3], layerwise_strides=[4, 2],
        hidden_dims=[16, 32], image_shape=(SIZE, SIZE, 3))


def _siglip():
    from keras_hub.src.models.siglip.siglip_vision_encoder import SigLIPVisionEncoder
    return SigLIPVisionEncoder(patch_size=8, hidden_dim=16, num_layers=2, num_heads=4,
                               intermediate_dim=32, image_shape=(SIZE, SIZE, 3))


def _clip():
    from keras_hub.src.models.clip.clip_vision_encoder import CLIPVisionEncoder
    return CLIPVisionEncoder(patch_size=8, hidden_dim=16, num_layers=2, num_heads=4,
                             intermediate_dim=32, image_shape=(SIZE, SIZE, 3))


def _vitdet():
    return _hub().models.ViTDetBackbone(
        hidden_size=16, num_layers=2, intermediate_dim=32, num_heads=2,
        global_attention_layer_indices=[1], image_shape=(SIZE, SIZE, 3), patch_size=8,
        num_output_channels=8, window_size=2)


def _mobilenetv5():
    def two(a, b):
        return [[a], [b, b]]
    return _hub().models.MobileNetV5Backbone(
        stackwise_block_types=[["er"], ["uir", "mqa"]],
        stackwise_num_blocks=[1, 2], stackwise_num_filters=[[16], [24, 24]],
        stackwise_strides=[[2], [2, 1]], stackwise_act_layers=two("relu", "gelu"),
        stackwise_exp_ratios=two(4.0, 2.0), stackwise_se_ratios=two(0.0, 0.0),
        stackwise_dw_kernel_sizes=[[0], [3, 0]],
        stackwise_dw_start_kernel_sizes=[[0], [0, 0]],
        stackwise_dw_end_kernel_sizes=[[0], [0, 0]],
        stackwise_exp_kernel_sizes=[[3], [0, 0]], stackwise_pw_kernel_sizes=[[1], [0, 0]],
        stackwise_num_heads=[[0], [0, 2]], stackwise_key_dims=[[0], [0, 8]],
        stackwise_value_dims=[[0], [0, 8]], stackwise_kv_strides=[[0], [0, 2]],
        stackwise_use_cpe=[[False], [False, False]], use_msfa=False,
        image_shape=(SIZE, SIZE, 3))


# name -> (builder, ImageClassifier class name or None)
BACKBONES = {
    "ViT": (_vit, "ViTImageClassifier"),
    "DeiT": (_deit, "DeiTImageClassifier"),
    "DINOv2": (_dinov2(), None),
    "DINOv2 (SwiGLU, registers)": (_dinov2(swiglu=True, registers=2), None),
    "DINOv3": (_dinov3, None),
    "Swin": (_swin, "SwinTransformerImageClassifier"),
    "MiT (SegFormer encoder)": (_mit, "MiTImageClassifier"),
    "SigLIP vision tower": (_siglip, None),
    "CLIP vision tower": (_clip, None),
    "ViTDet": (_vitdet, None),
    "MobileNetV5 (hybrid, MQA)": (_mobilenetv5, "MobileNetV5ImageClassifier"),
}


def backbone(name):
    """A freshly built small backbone (random weights)."""
    keras.utils.set_random_seed(0)
    return BACKBONES[name][0]()


def _features(bb, inp):
    feats = bb(inp)
    if isinstance(feats, dict):
        feats = [feats[k] for k in sorted(feats)]
    feats = keras.tree.flatten(feats)
    return max(feats, key=lambda t: (len(t.shape) == 3, t.shape[-1]))


def nested(bb, num_classes=NUM_CLASSES):
    """The transfer-learning pattern: the backbone used as one layer, its
    tokens (or feature map) pooled, a Dense head."""
    inp = keras.Input(keras.tree.flatten(bb.inputs)[0].shape[1:])
    x = _features(bb, inp)
    if len(x.shape) > 2:          # tokens or a feature map; a pooled output as it is
        pool = keras.layers.GlobalAveragePooling1D if len(x.shape) == 3 else \
            keras.layers.GlobalAveragePooling2D
        x = pool(name="gap")(x)
    out = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(inp, out, name="transfer")


def classifier(name, bb, num_classes=NUM_CLASSES):
    """The keras-hub ImageClassifier task for the backbone (no preprocessor)."""
    cls_name = BACKBONES[name][1]
    if cls_name is None:
        return None
    cls = getattr(_hub().models, cls_name)
    return cls(backbone=bb, num_classes=num_classes, preprocessor=None)
