"""Producers: Conv*, ConvTranspose*, SeparableConv*, Dense (kernel in/out axes)."""

from __future__ import annotations

import numpy as np
from keras import layers

from .activations import activation_problem
from .registry import LayerHandler, register_handler


def _channels_last(node):
    fmt = getattr(node.layer, "data_format", "channels_last")
    return fmt in (None, "channels_last")


def _freeze_if_mixing(node, ctx, m):
    """A channel-mixing or unknown ``activation=`` freezes the layer's output."""
    why = activation_problem(node.name, getattr(node.layer, "activation", None))
    if why:
        ctx.freeze(m, why)
    return m


class ConvHandler(LayerHandler):
    """Conv1D/2D/3D (kernel ``(*k, in/groups, out)``) and Dense (``(in, out)``)."""

    units_key = "filters"

    def input_channel_axes(self, layer):
        return {0: -2}          # kernel (*k, in / groups, out) or (in, out)

    def propagate(self, node, ctx):
        (m,) = node.in_maps[:1]
        layer = node.layer
        groups = int(getattr(layer, "groups", 1) or 1)
        if not _channels_last(node):
            ctx.freeze(m, f"layer '{node.name}' uses data_format='channels_first'")
            return [ctx.fresh(node, node.out_channels(0), frozen=
                              f"layer '{node.name}' uses data_format='channels_first'")]
        if groups != 1 and groups == m.shape[0] == node.out_channels(0):
            ctx.channelwise(node, m)       # depthwise written as Conv(groups=C)
            return [_freeze_if_mixing(node, ctx, m)]
        ctx.consumer(node, m)
        out = ctx.fresh(node, node.out_channels(0))
        if groups != 1:
            # grouped convolution: every group keeps the same local channels
            # (channel j of each group is removed together), groups stays G
            kin, kout = m.shape[0] // groups, out.shape[0] // groups
            for g in range(1, groups):
                ctx.couple(m[g * kin:(g + 1) * kin], m[:kin])
                ctx.couple(out[g * kout:(g + 1) * kout], out[:kout])
        ctx.producer(node, out)
        return [_freeze_if_mixing(node, ctx, out)]

    def prune(self, layer, config, weights, in_masks, out_masks):
        mi, mo = in_masks[0], out_masks[0]
        groups = int(config.get("groups", 1) or 1)
        if groups != 1 and weights[0].shape[-2] == 1 and \
                mi.shape[0] == mo.shape[0] == groups:
            # depthwise-as-grouped: kernel (*k, 1, C)
            config["groups"] = int(mo.sum())
            kernel = weights[0][..., mo]
        elif groups != 1:  # kernel (*k, Cin / G, Cout): the local kept inputs
            local = mi.reshape(groups, -1)
            if not (local == local[:1]).all():
                raise ValueError(f"grouped convolution '{layer.name}': the groups "
                                 "keep different input channels.")
            kernel = weights[0][..., local[0], :][..., mo]
        else:
            kernel = weights[0][..., mi, :][..., mo]
        new = [kernel] + [w[..., mo] for w in weights[1:]]
        config[self.units_key] = int(mo.sum())
        return config, new


class DenseHandler(ConvHandler):
    units_key = "units"


class ConvTransposeHandler(ConvHandler):
    """Conv*Transpose: kernel ``(*k, out, in)``."""

    def input_channel_axes(self, layer):
        return {0: -1}

    def prune(self, layer, config, weights, in_masks, out_masks):
        mi, mo = in_masks[0], out_masks[0]
        kernel = weights[0][..., mi][..., mo, :]
        new = [kernel] + [w[..., mo] for w in weights[1:]]
        config["filters"] = int(mo.sum())
        return config, new


class SeparableConvHandler(ConvHandler):
    """SeparableConv*: depthwise ``(*k, in, mult)``, pointwise ``(*1, in*mult, out)``."""

    def input_channel_axes(self, layer):
        return {0: -2}

    def prune(self, layer, config, weights, in_masks, out_masks):
        mi, mo = in_masks[0], out_masks[0]
        dw, pw = weights[0], weights[1]
        mult = dw.shape[-1]
        rows = np.repeat(mi, mult)
        new = [dw[..., mi, :], pw[..., rows, :][..., mo]]
        new += [w[..., mo] for w in weights[2:]]
        config["filters"] = int(mo.sum())
        return config, new


class DepthwiseConvHandler(LayerHandler):
    """DepthwiseConv*: channel-wise when ``depth_multiplier == 1``."""

    def propagate(self, node, ctx):
        m = node.in_maps[0]
        mult = int(getattr(node.layer, "depth_multiplier", 1))
        if not _channels_last(node):
            why = f"layer '{node.name}' uses data_format='channels_first'"
        elif mult != 1:
            why = f"depthwise layer '{node.name}' has depth_multiplier={mult} > 1"
        else:
            ctx.channelwise(node, m)
            return [_freeze_if_mixing(node, ctx, m)]
        ctx.freeze(m, why)
        return [ctx.fresh(node, node.out_channels(0), frozen=why)]

    def prune(self, layer, config, weights, in_masks, out_masks):
        m = in_masks[0]
        new = [weights[0][..., m, :]] + [w[..., m] for w in weights[1:]]
        return config, new


for _c in (layers.Conv1D, layers.Conv2D, layers.Conv3D):
    register_handler(_c, ConvHandler())
register_handler(layers.Dense, DenseHandler())
for _c in (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose):
    register_handler(_c, ConvTransposeHandler())
for _c in (layers.SeparableConv1D, layers.SeparableConv2D):
    register_handler(_c, SeparableConvHandler())
for _c in (layers.DepthwiseConv1D, layers.DepthwiseConv2D):
    register_handler(_c, DepthwiseConvHandler())
