"""Channel-wise layers with per-channel parameters (BN, LN, PReLU, Normalization...)."""

from __future__ import annotations

import numpy as np
from keras import layers

from .registry import LayerHandler, register_handler


def _last_axis(axis, rank):
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    if axis is None:
        return False
    return axis == -1 or axis == rank - 1


class ChannelwiseHandler(LayerHandler):
    """Pass-through layer whose weights are sliced along their last axis.

    Every weight whose last dimension equals the channel count is sliced on
    that axis; others (scalars, counters) are kept. ``config_keys`` names
    config entries set to the new channel count.
    """

    config_keys = ()

    def check(self, node):
        """Return a reason string when the layer is not channel-wise here."""
        return None

    def propagate(self, node, ctx):
        m = node.in_maps[0]
        why = self.check(node)
        if why:
            return ctx.opaque(node, why)
        if node.layer.weights:
            ctx.channelwise(node, m)
        return [m]

    def prune(self, layer, config, weights, in_masks, out_masks):
        m = in_masks[0]
        n = m.shape[0]
        new = [w[..., m] if (w.ndim >= 1 and w.shape[-1] == n) else w for w in weights]
        for k in self.config_keys:
            if k in config:
                config[k] = int(m.sum())
        return config, new


class AxisChannelwiseHandler(ChannelwiseHandler):
    """BatchNormalization / LayerNormalization: only when normalising the
    channel axis (the last one, or axis 1 of a channels_first tensor)."""

    follows_channels_first = True

    def check(self, node):
        rank = len(node.in_shapes[0])
        axis = getattr(node.layer, "axis", -1)
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if isinstance(axis, int):
            axis = node.axis(axis)
        if not _last_axis(axis, rank):
            return (f"layer '{node.name}' normalises over axis "
                    f"{node.layer.axis}, not only the channel (last) axis")
        return None


class LayerNormHandler(AxisChannelwiseHandler):
    """LayerNormalization / RMSNormalization over the channel axis.

    Removing channels changes the mean / mean square the layer divides by, so
    pruning through it is an approximation: refused (the channels are frozen)
    unless the user allows it with ``approximate=("layernorm",)``, and then
    the group is marked ``approximate``.
    """

    def propagate(self, node, ctx):
        if self.check(node) is None:        # over the channel axis only
            note = (f"{type(node.layer).__name__} '{node.name}' normalises over the "
                    "channels: removing channels changes its statistics")
            if not ctx.allows("layernorm"):
                return ctx.opaque(node, note + " (allow with approximate=('layernorm',))")
            ctx.approximate(node.in_maps[0], note)
        return super().propagate(node, ctx)


class NormalizationHandler(AxisChannelwiseHandler):
    """keras.layers.Normalization: mean/variance per channel."""

    def prune(self, layer, config, weights, in_masks, out_masks):
        config, new = super().prune(layer, config, weights, in_masks, out_masks)
        m = in_masks[0]
        for k in ("mean", "variance"):
            v = config.get(k)
            if v is not None and np.ndim(v) >= 1 and np.shape(v)[-1] == m.shape[0]:
                config[k] = np.asarray(v)[..., m].tolist()
        return config, new


class PReLUHandler(ChannelwiseHandler):
    def check(self, node):
        alpha = node.layer.weights[0]
        if alpha.shape[-1] not in (1, node.in_maps[0].shape[0]):
            return f"PReLU '{node.name}' has a non channel-last alpha"
        return None


class GroupNormHandler(ChannelwiseHandler):
    config_keys = ("groups",)

    def check(self, node):
        g = int(getattr(node.layer, "groups", 1))
        c = node.in_maps[0].shape[0]
        if g == c and _last_axis(node.layer.axis, len(node.in_shapes[0])):
            return None  # instance-norm like: one channel per group
        return f"GroupNormalization '{node.name}' (groups={g}) couples channels in groups"


register_handler(layers.BatchNormalization, AxisChannelwiseHandler())
register_handler(layers.LayerNormalization, LayerNormHandler())
if hasattr(layers, "RMSNormalization"):
    register_handler(layers.RMSNormalization, LayerNormHandler())
register_handler(layers.Normalization, NormalizationHandler())
register_handler(layers.PReLU, PReLUHandler())
register_handler(layers.GroupNormalization, GroupNormHandler())
register_handler("keras.src.applications.convnext.LayerScale",
                 type("LayerScaleHandler", (ChannelwiseHandler,),
                      {"config_keys": ("projection_dim",)})())
