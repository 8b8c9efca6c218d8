"""Small keras-hub vision models built offline from their constructors.

Every CNN backbone class of keras-hub 0.32 that builds without a download,
with a small config (random weights), plus the ways users hold them: the
``Backbone`` object itself, a backbone nested as a layer in a classifier
(``f = backbone(inputs)``, the transfer-learning pattern) and the keras-hub
``ImageClassifier`` task (``preprocessor=None``). Shared by
``tools/bench_keras_hub.py`` (the coverage table) and the tests.

Never uses ``from_preset`` (it downloads).
"""

from __future__ import annotations

import keras

SIZE = 64
NUM_CLASSES = 5


def _hub():
    import keras_hub
    return keras_hub


def _resnet(block_type, pre=False, vd=False):
    def build():
        m = _hub().models
        return m.ResNetBackbone(
            input_conv_filters=[16, 16, 32] if vd else [64],
            input_conv_kernel_sizes=[3, 3, 3] if vd else [7],
            stackwise_num_filters=[64, 32],    # keras-hub requires 64 first
            stackwise_num_blocks=[2, 1],
            stackwise_num_strides=[1, 2],
            block_type=block_type, use_pre_activation=pre,
            image_shape=(SIZE, SIZE, 3))
    return build


def _efficientnet(kind):
    def build():
        m = _hub().models
        if kind == "v2":      # fused + unfused MBConv blocks (EfficientNetV2)
            types = ["fused", "fused", "unfused"]
            se = [0.0, 0.0, 0.25]
        elif kind == "v1":    # EfficientNet(V1) MBConv with squeeze-excite
            types = ["v1", "v1", "v1"]
            se = [0.25, 0.25, 0.25]
        else:                 # EfficientNet-lite: plain MBConv, no SE
            types = ["unfused", "unfused", "unfused"]
            se = [0.0, 0.0, 0.0]
        return m.EfficientNetBackbone(
            stackwise_width_coefficients=[1.0] * 3,
            stackwise_depth_coefficients=[1.0] * 3,
            stackwise_kernel_sizes=[3, 3, 3],
            stackwise_num_repeats=[1, 2, 1],
            stackwise_input_filters=[16, 16, 24],
            stackwise_output_filters=[16, 24, 32],
            stackwise_expansion_ratios=[1, 4, 4],
            stackwise_squeeze_and_excite_ratios=se,
            stackwise_strides=[1, 2, 2],
            stackwise_block_types=types,
            stackwise_force_input_filters=[0] * 3,
            stackwise_nores_option=[False] * 3,
            num_features=64, input_shape=(SIZE, SIZE, 3))
    return build


def _mobilenet_v3():
    m = _hub().models
    return m.MobileNetBackbone(
        stackwise_expansion=[[16], [32, 48], [48]],
        stackwise_num_blocks=[1, 2, 1],
        stackwise_num_filters=[[16], [24, 24], [32]],
        stackwise_kernel_size=[[3], [3, 5], [5]],
        stackwise_num_strides=[[2], [2, 1], [1]],
        stackwise_se_ratio=[[0.25], [None, 0.25], [0.25]],
        stackwise_activation=[["relu"], ["hard_swish", "hard_swish"],
                              ["hard_swish"]],
        stackwise_padding=[[1], [1, 2], [2]],
        output_num_filters=64, depthwise_filters=8, depthwise_stride=1,
        depthwise_residual=False, last_layer_filter=96,
        squeeze_and_excite=0.5, image_shape=(SIZE, SIZE, 3))


def _cspnet(stage_type, block_type):
    def build():
        m = _hub().models
        return m.CSPNetBackbone(
            stem_filters=16, stem_kernel_size=3, stem_strides=2,
            stackwise_depth=[1, 1], stackwise_strides=[1, 2],
            stackwise_num_filters=[32, 64], block_type=block_type,
            stage_type=stage_type, bottle_ratio=[0.5], block_ratio=[1.0],
            expand_ratio=[2.0], image_shape=(SIZE, SIZE, 3))
    return build


def _densenet():
    return _hub().models.DenseNetBackbone(
        stackwise_num_repeats=[2, 2], growth_rate=8, image_shape=(SIZE, SIZE, 3))


def _vgg():
    return _hub().models.VGGBackbone(
        stackwise_num_repeats=[1, 2], stackwise_num_filters=[16, 32],
        image_shape=(SIZE, SIZE, 3))


def _xception():
    return _hub().models.XceptionBackbone(
        stackwise_conv_filters=[[16, 32], [32, 64], [64, 64]],
        stackwise_pooling=[True, True, False], image_shape=(SIZE, SIZE, 3))


def _hgnetv2(light=False, affine=False):
    def build():
        return _hub().models.HGNetV2Backbone(
            depths=[1, 1], embedding_size=16, hidden_sizes=[32, 64],
            stem_channels=[3, 8, 16], hidden_act="relu",
            use_learnable_affine_block=affine,
            stackwise_stage_filters=[(16, 8, 32, 1, 2, 3), (32, 16, 64, 1, 2, 3)],
            apply_downsample=[False, True],
            use_lightweight_conv_block=[light, light],
            image_shape=(SIZE, SIZE, 3))
    return build


def _mit():
    return _hub().models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[4, 2], max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3], layerwise_strides=[4, 2],
        hidden_dims=[16, 32], image_shape=(SIZE, SIZE, 3))


# name -> (builder, ImageClassifier class name or None, scope)
BACKBONES = {
    "ResNetV1 basic": (_resnet("basic_block"), "ResNetImageClassifier", "cnn"),
    "ResNetV1 bottleneck": (_resnet("bottleneck_block"), "ResNetImageClassifier", "cnn"),
    "ResNetV2 (pre-activation)": (_resnet("basic_block", pre=True),
                                  "ResNetImageClassifier", "cnn"),
    "ResNet-vd bottleneck": (_resnet("bottleneck_block_vd", vd=True),
                             "ResNetImageClassifier", "cnn"),
    "EfficientNetV1 (MBConv+SE)": (_efficientnet("v1"), "EfficientNetImageClassifier", "cnn"),
    "EfficientNetV2 (fused+unfused)": (_efficientnet("v2"),
                                       "EfficientNetImageClassifier", "cnn"),
    "EfficientNet-lite (MBConv)": (_efficientnet("lite"),
                                   "EfficientNetImageClassifier", "cnn"),
    "MobileNetV3": (_mobilenet_v3, "MobileNetImageClassifier", "cnn"),
    "CSPNet (csp, bottleneck)": (_cspnet("csp", "bottleneck_block"),
                                 "CSPNetImageClassifier", "cnn"),
    "CSPNet (cs3, dark)": (_cspnet("cs3", "dark_block"), "CSPNetImageClassifier", "cnn"),
    "CSPDarkNet (dark)": (_cspnet("dark", "dark_block"), "CSPNetImageClassifier", "cnn"),
    "DenseNet": (_densenet, "DenseNetImageClassifier", "cnn"),
    "VGG": (_vgg, "VGGImageClassifier", "cnn"),
    "Xception": (_xception, "XceptionImageClassifier", "cnn"),
    "HGNetV2": (_hgnetv2(), "HGNetV2ImageClassifier", "cnn"),
    "HGNetV2 (light, affine)": (_hgnetv2(light=True, affine=True),
                                "HGNetV2ImageClassifier", "cnn"),
    "MiT (SegFormer encoder)": (_mit, "MiTImageClassifier", "transformer"),
}


def backbone(name):
    """A freshly built small backbone (random weights, BN statistics perturbed)."""
    keras.utils.set_random_seed(0)
    return BACKBONES[name][0]()


def nested(bb, num_classes=NUM_CLASSES):
    """The transfer-learning pattern: the backbone used as one layer."""
    inp = keras.Input(keras.tree.flatten(bb.inputs)[0].shape[1:])
    feats = keras.tree.flatten(bb(inp))
    feats = max(feats, key=lambda t: t.shape[-1])   # multi-output: the widest map
    x = keras.layers.GlobalAveragePooling2D(name="gap")(feats)
    out = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(inp, out, name="transfer")


def classifier(name, bb, num_classes=NUM_CLASSES):
    """The keras-hub ImageClassifier task for the backbone (no preprocessor)."""
    cls_name = BACKBONES[name][1]
    if cls_name is None:
        return None
    cls = getattr(_hub().models, cls_name)
    return cls(backbone=bb, num_classes=num_classes, preprocessor=None)
