"""Weight-free layers that keep every channel in place (activations, pooling...)."""

from __future__ import annotations

import numpy as np
from keras import layers

from .activations import activation_problem
from .registry import LayerHandler, register_handler


def config_array(value):
    """A config entry as a numpy array (lists, Keras' ``__numpy__`` form), or
    None for scalars, strings and other values."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        value = value.get("config", {}).get("value")
    if isinstance(value, (list, tuple, np.ndarray)):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        return arr if arr.ndim else None
    return None


def per_channel_state(node, keys=()):
    """Why a layer thought weight-free carries per-channel state (weights, or
    a config vector over the channels other than ``keys``), else None."""
    layer, c = node.layer, len(node.in_maps[0]) if node.in_maps else 0
    for w in getattr(layer, "weights", None) or []:
        shape = tuple(int(d) for d in w.shape)
        if c > 1 and c in shape:        # scalars (a learnable affine's scale) are fine
            return (f"layer '{node.name}' ({type(layer).__name__}) holds a per-channel "
                    f"weight {w.path!r} that no handler slices")
    try:
        config = layer.get_config()
    except Exception:      # no config: nothing in it to slice
        return None
    for key, value in config.items():
        arr = config_array(value)
        if key not in keys and arr is not None and arr.size > 1 and arr.shape[-1] == c:
            return (f"layer '{node.name}' ({type(layer).__name__}) has a per-channel "
                    f"'{key}' that no handler slices")
    return None


class PassThroughHandler(LayerHandler):
    """Output channel ``c`` is input channel ``c``; nothing to slice."""

    follows_channels_first = True

    def propagate(self, node, ctx):
        why = per_channel_state(node)
        if why:
            return ctx.opaque(node, why)
        return [node.in_maps[0]]


class RescalingHandler(PassThroughHandler):
    """``Rescaling(scale, offset)``: a scalar or per-channel ``scale`` /
    ``offset`` (last axis over the channels, or 1); the vectors are sliced."""

    keys = ("scale", "offset")
    follows_channels_first = False   # its vectors broadcast over the real last axis

    def propagate(self, node, ctx):
        c = len(node.in_maps[0])
        config = node.layer.get_config()
        for key in self.keys:
            arr = config_array(config.get(key))
            if arr is not None and arr.shape[-1] not in (1, c):
                return ctx.opaque(node, f"layer '{node.name}' has a '{key}' of shape "
                                        f"{arr.shape} that does not follow the channels")
        return [node.in_maps[0]]

    def prune(self, layer, config, weights, in_masks, out_masks):
        m = in_masks[0]
        for key in self.keys:
            arr = config_array(config.get(key))
            if arr is not None and arr.shape[-1] == m.shape[0] and m.shape[0] > 1:
                config[key] = {"class_name": "__numpy__",
                               "config": {"value": arr[..., m].tolist(), "dtype": "float32"}}
        return config, weights


class ActivationHandler(PassThroughHandler):
    """``Activation(fn)``: channel-wise only when ``fn`` is (see activations.py)."""

    def propagate(self, node, ctx):
        why = activation_problem(node.name, node.layer.activation)
        if why:
            return ctx.opaque(node, why)
        return [node.in_maps[0]]


class SoftmaxHandler(LayerHandler):  # over the real axes: channels-last only
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
    "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D",
    "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "Resizing", "CenterCrop",
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
    "RandomContrast", "RandomCrop", "RandomBrightness",
]

for _n in _PASS:
    _c = getattr(layers, _n, None)
    if _c is not None:
        register_handler(_c, PassThroughHandler())
register_handler(layers.Rescaling, RescalingHandler())
register_handler(layers.Activation, ActivationHandler())
register_handler(layers.Softmax, SoftmaxHandler())
register_handler("keras.src.applications.convnext.StochasticDepth", PassThroughHandler())
