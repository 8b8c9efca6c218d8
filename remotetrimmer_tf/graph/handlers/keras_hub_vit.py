"""keras-hub vision-transformer layers that own weights (registered by name:
keras-hub is never imported here).

A ViT embedding layer runs a patch convolution over the image and adds, on
the channel axis, learned tokens (class, distillation, register, mask) and
position tables: its output channels are the convolution's filters, and every
such weight carries them on its last axis. Removing channel ``c`` slices all
of them at ``c``: exact. The weights are named here by their path, so a
weight whose last axis only happens to have the same length (SigLIP's and
CLIP's integer ``position_ids``) is never sliced. Layer scales multiply each
channel by a learned factor. The encoder blocks around them are composites
(``functional_view`` inlines them); their attention is a
``MultiHeadAttention`` (``attention.py``).
"""

from __future__ import annotations

import math

from .normalization import ChannelwiseHandler, LayerNormHandler
from .passthrough import PassThroughHandler
from .registry import LayerHandler, register_handler
from .weight_axes import WeightAxes

__all__ = ["TokenEmbeddingHandler"]


def _index(layer, suffix):
    for i, w in enumerate(layer.weights):
        if w.path == suffix or w.path.endswith("/" + suffix):
            return i
    return None


def _owner(layer, var):
    """The sub-layer of ``layer`` whose weights hold ``var``."""
    for sub in layer._flatten_layers(include_self=False, recursive=True):
        if any(w is var for w in sub.weights):
            return sub
    return None


class TokenEmbeddingHandler(LayerHandler):
    """Patch convolution + tokens + position tables on the channel axis.

    Args:
        width_key: the constructor argument holding the width (``hidden_dim``).
        kernel: path suffix of the patch convolution's kernel.
        channels: path suffixes of the weights whose last axis is the width.
    """

    def __init__(self, width_key, kernel, channels):
        self.width_key, self.kernel, self.channels = width_key, kernel, tuple(channels)

    def propagate(self, node, ctx):
        if getattr(node.layer, "data_format", "channels_last") == "channels_first":
            return ctx.opaque(node, f"layer '{node.name}' uses data_format='channels_first'")
        for m in node.in_maps[1:]:
            ctx.freeze(m, f"'{node.name}' reads this tensor as a mask, not as channels")
        ctx.consumer(node, node.in_maps[0])
        out = ctx.fresh(node, node.out_channels(0))
        ctx.producer(node, out)
        return [out]

    def weight_axes(self, layer):
        axes = {}
        k = _index(layer, self.kernel)
        if k is not None:
            axes[k] = WeightAxes(out_axis=-1, in_axis=-2, per="output")
        for suffix in self.channels:
            i = _index(layer, suffix)
            if i is not None:
                axes[i] = WeightAxes(out_axis=-1)
        return axes

    def prune(self, layer, config, weights, in_masks, out_masks):
        config, new = super().prune(layer, config, weights, in_masks, out_masks)
        config[self.width_key] = int(out_masks[0].sum())
        return config, new

    def macs(self, layer, call, kept=None):
        """The patch convolution at its output positions (the tokens are added)."""
        k = _index(layer, self.kernel)
        conv = _owner(layer, layer.weights[k]) if k is not None else None
        if conv is None:
            return 0
        positions = conv.compute_output_shape(tuple(call.in_shapes[0]))[1:-1]
        if any(p is None for p in positions):
            raise ValueError(f"count_macs needs fixed shapes, but layer '{layer.name}' "
                             f"sees the input shape {tuple(call.in_shapes[0])}.")
        shape = [int(d) for d in layer.weights[k].shape]
        if kept is not None:
            shape[-2], shape[-1] = kept[0][0], kept[1][0]
        return int(math.prod(positions) * math.prod(shape))


_HUB = "keras_hub.src.models."
for _path, _kernel, _channels in (
        ("vit.vit_layers.ViTPatchingAndEmbedding", "patch_embedding/kernel",
         ("class_token", "patch_embedding/bias", "position_embedding/embeddings")),
        ("deit.deit_layers.DeiTEmbeddings", "patch_embedding/kernel",
         ("mask_token", "class_token", "distillation_token", "patch_embedding/bias",
          "position_embedding")),
        ("dinov2.dinov2_layers.DINOV2Embedding", "projection/kernel",
         ("cls_token", "mask_token", "register_tokens", "position_embeddings",
          "interpolated_position_embeddings", "projection/bias")),
        ("dinov3.dinov3_layers.DINOV3Embedding", "projection/kernel",
         ("cls_token", "mask_token", "register_tokens", "projection/bias")),
        ("siglip.siglip_layers.SigLIPVisionEmbedding", "patch_embedding/kernel",
         ("patch_embedding/bias", "position_embedding/embeddings")),
        ("clip.clip_layers.CLIPVisionEmbedding", "patch_embedding/kernel",
         ("class_embedding", "patch_embedding/bias", "position_embedding/embeddings"))):
    register_handler(_HUB + _path, TokenEmbeddingHandler("hidden_dim", _kernel, _channels))

_LAYER_SCALE = type("LayerScaleHandler", (ChannelwiseHandler,), {"config_keys": ("hidden_dim",)})
for _path in ("dinov2.dinov2_layers.DINOV2LayerScale", "dinov3.dinov3_layers.DINOV3LayerScale"):
    register_handler(_HUB + _path, _LAYER_SCALE())


class PositionTableHandler(LayerHandler):
    """A layer that makes a position table from its input's shape (rotary
    sin / cos): its output channels are not the input's; both stay whole."""

    def propagate(self, node, ctx):
        return ctx.opaque(node, f"'{node.name}' makes a rotary position table "
                                "(positions, not channels)")


register_handler(_HUB + "dinov3.dinov3_layers.DINOV3RopePositionEmbedding",
                 PositionTableHandler())

# stochastic depth: each sample kept or dropped whole (identity at inference)
for _path in ("mit.mit_layers.DropPath", "swin_transformer.swin_transformer_layers.DropPath",
              "dinov2.dinov2_layers.DINOV2DropPath", "dinov3.dinov3_layers.DINOV3DropPath",
              "mobilenetv5.mobilenetv5_layers.DropPath"):
    register_handler(_HUB + _path, PassThroughHandler())
register_handler(_HUB + "mobilenetv5.mobilenetv5_layers.LayerScale2d",
                 type("LayerScale2dHandler", (ChannelwiseHandler,), {"config_keys": ("dim",)})())


class RmsNorm2dHandler(LayerNormHandler):
    """MobileNetV5's RmsNorm2d: an RMS norm over the channels (approximate)."""

    config_keys = ("dim",)

    def check(self, node):
        if getattr(node.layer, "data_format", None) == "channels_first":
            return f"layer '{node.name}' uses data_format='channels_first'"
        return None


register_handler(_HUB + "mobilenetv5.mobilenetv5_layers.RmsNorm2d", RmsNorm2dHandler())


class AttentionPoolingHandler(LayerHandler):
    """SigLIP's attention-pooling head: a learned probe attends over the
    tokens, then a residual MLP; kept whole (its probe owns weights the graph
    cannot follow). Its MACs: the attention (one query token) and the MLP."""

    def propagate(self, node, ctx):
        return ctx.opaque(node, f"attention-pooling head '{node.name}' is kept whole "
                                "(its learned probe is used directly)")

    def macs(self, layer, call, kept=None):
        import keras
        from .attention import MultiHeadAttentionHandler
        tokens = call.in_shapes[0]
        width = int(layer.probe.shape[-1])
        probe = keras.KerasTensor((tokens[0], 1, width))
        value = keras.KerasTensor(tuple(tokens))
        view = call.replace(layer=layer.attention, out_shapes=[(tokens[0], 1, width)],
                            args=(probe, value, value), kwargs={})
        mlp = sum(int(math.prod(d.kernel.shape)) for d in (layer.mlp.fc1, layer.mlp.fc2))
        return MultiHeadAttentionHandler().macs(layer.attention, view) + mlp


register_handler(_HUB + "siglip.siglip_layers.SigLIPMultiHeadAttentionPooling",
                 AttentionPoolingHandler())
