"""Producers: Conv*, ConvTranspose*, SeparableConv*, Dense (kernel in/out axes)."""

from __future__ import annotations

import numpy as np
from keras import layers

from .activations import activation_problem
from .registry import LayerHandler, register_handler
from .weight_axes import WeightAxes, weight_index


def _axes(layer, **declared):
    """``{weight index: WeightAxes}`` from ``attribute=WeightAxes`` pairs."""
    out = {}
    for attribute, axes in declared.items():
        i = weight_index(layer, attribute)
        if i is not None:
            out[i] = axes
    return out


# LoRA (``layer.enable_lora(r)``): a (*k, in, r) reads the input channels,
# b (r, out) writes the output channels; kernel + a @ b stays exact when both
# are sliced with the kernel.
_LORA = {"lora_kernel_a": WeightAxes(in_axis=-2), "lora_kernel_b": WeightAxes(out_axis=-1)}


def _freeze_if_mixing(node, ctx, m):
    """A channel-mixing or unknown ``activation=`` freezes the layer's output."""
    why = activation_problem(node.name, getattr(node.layer, "activation", None))
    if why:
        ctx.freeze(m, why)
    return m


class ConvHandler(LayerHandler):
    """Conv1D/2D/3D (kernel ``(*k, in/groups, out)``) and Dense (``(in, out)``)."""

    units_key = "filters"

    def weight_axes(self, layer):
        # kernel (*k, in / groups, out) or (in, out); bias (out,); LoRA a, b
        return _axes(layer, kernel=WeightAxes(out_axis=-1, in_axis=-2, per="output"),
                     bias=WeightAxes(out_axis=-1), **_LORA)

    def propagate(self, node, ctx):
        (m,) = node.in_maps[:1]
        layer = node.layer
        groups = int(getattr(layer, "groups", 1) or 1)
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
            # depthwise-as-grouped: kernel (*k, 1, C), one group per channel
            config["groups"] = int(mo.sum())
            new = [w[..., mo] for w in weights]
        else:
            config, new = super().prune(layer, config, weights, in_masks, out_masks)
        config[self.units_key] = int(mo.sum())
        return config, new


class DenseHandler(ConvHandler):
    units_key = "units"
    follows_channels_first = False      # a Dense reads the real last axis


class ConvTransposeHandler(ConvHandler):
    """Conv*Transpose: kernel ``(*k, out, in)``, applied at every input position."""

    def weight_axes(self, layer):
        return _axes(layer, kernel=WeightAxes(out_axis=-2, in_axis=-1, per="input"),
                     bias=WeightAxes(out_axis=-1))


class SeparableConvHandler(ConvHandler):
    """SeparableConv*: depthwise ``(*k, in, mult)``, pointwise ``(*1, in*mult, out)``."""

    def weight_axes(self, layer):
        return _axes(layer,
                     depthwise_kernel=WeightAxes(in_axis=-2, per="output"),
                     pointwise_kernel=WeightAxes(out_axis=-1, in_axis=-2, per="output"),
                     bias=WeightAxes(out_axis=-1))


class DepthwiseConvHandler(LayerHandler):
    """DepthwiseConv*: channel-wise when ``depth_multiplier == 1``."""

    def propagate(self, node, ctx):
        m = node.in_maps[0]
        mult = int(getattr(node.layer, "depth_multiplier", 1))
        if mult != 1:
            why = f"depthwise layer '{node.name}' has depth_multiplier={mult} > 1"
        else:
            ctx.channelwise(node, m)
            return [_freeze_if_mixing(node, ctx, m)]
        return ctx.opaque(node, why)

    def weight_axes(self, layer):
        # kernel (*k, C, 1): channel c in is channel c out (multiplier > 1 is frozen)
        return _axes(layer, kernel=WeightAxes(out_axis=-2, in_axis=-2, per="output"),
                     bias=WeightAxes(out_axis=-1))


for _c in (layers.Conv1D, layers.Conv2D, layers.Conv3D):
    register_handler(_c, ConvHandler())
register_handler(layers.Dense, DenseHandler())
for _c in (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose):
    register_handler(_c, ConvTransposeHandler())
for _c in (layers.SeparableConv1D, layers.SeparableConv2D):
    register_handler(_c, SeparableConvHandler())
for _c in (layers.DepthwiseConv1D, layers.DepthwiseConv2D):
    register_handler(_c, DepthwiseConvHandler())
