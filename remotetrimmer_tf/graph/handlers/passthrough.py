"""Weight-free layers that keep every channel in place (activations, pooling...)."""

from __future__ import annotations

from keras import layers

from .activations import activation_problem
from .registry import LayerHandler, register_handler


class PassThroughHandler(LayerHandler):
    """Output channel ``c`` is input channel ``c``; nothing to slice."""

    def propagate(self, node, ctx):
        fmt = getattr(node.layer, "data_format", None)
        if fmt == "channels_first":
            return ctx.opaque(node, f"layer '{node.name}' uses data_format='channels_first'")
        return [node.in_maps[0]]


class ActivationHandler(PassThroughHandler):
    """``Activation(fn)``: channel-wise only when ``fn`` is (see activations.py)."""

    def propagate(self, node, ctx):
        why = activation_problem(node.name, node.layer.activation)
        if why:
            return ctx.opaque(node, why)
        return [node.in_maps[0]]


class SoftmaxHandler(LayerHandler):
    """Softmax over the channel axis couples all channels: freeze them."""

    def propagate(self, node, ctx):
        axis = getattr(node.layer, "axis", -1)
        rank = len(node.in_shapes[0])
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if any(a in (-1, rank - 1) for a in axes):
            return ctx.opaque(node, f"softmax '{node.name}' normalises over the channel axis")
        return [node.in_maps[0]]


_PASS = [
    "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    "Identity", "Masking",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "Rescaling", "Resizing", "CenterCrop",
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
    "RandomContrast", "RandomCrop", "RandomBrightness",
]

for _n in _PASS:
    _c = getattr(layers, _n, None)
    if _c is not None:
        register_handler(_c, PassThroughHandler())
register_handler(layers.Activation, ActivationHandler())
register_handler(layers.Softmax, SoftmaxHandler())
register_handler("keras.src.applications.convnext.StochasticDepth", PassThroughHandler())
