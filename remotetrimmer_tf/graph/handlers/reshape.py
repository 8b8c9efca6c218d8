"""Flatten / Reshape / Permute: follow channels when the last axis survives."""

from __future__ import annotations

import numpy as np
from keras import layers

from .registry import LayerHandler, register_handler


def reshape_map(node, ctx, m, in_shape, out_shape):
    """Channel map through a row-major reshape from ``in_shape`` to ``out_shape``.

    With flat index ``f = i*C + c``: when the new last axis has ``C`` entries
    position ``c`` is kept; when it has ``k*C`` entries (trailing axes merged,
    e.g. Flatten) channel ``c`` lands at ``(i mod k)*C + c``, i.e. the map is
    tiled ``k`` times. Anything else mixes channels and is frozen.
    """
    c = m.shape[0]
    out_last = out_shape[-1]
    if out_last is not None and c > 0:
        if out_last == c:
            return m
        if out_last % c == 0:
            return np.tile(m, out_last // c)
    why = (f"'{node.name}' reshapes {tuple(in_shape)} to {tuple(out_shape)}, "
           f"mixing the channel axis with others")
    ctx.freeze(m, why)
    return ctx.fresh(node, out_last if out_last is not None else 0, frozen=why)


class FlattenHandler(LayerHandler):
    # Flatten(data_format="channels_first") moves the channels last before
    # flattening: in the channels-last view it is a plain flatten
    def propagate(self, node, ctx):
        return [reshape_map(node, ctx, node.in_maps[0], node.in_shapes[0], node.out_shapes[0])]


class ReshapeHandler(LayerHandler):
    def propagate(self, node, ctx):
        return [reshape_map(node, ctx, node.in_maps[0], node.in_shapes[0], node.out_shapes[0])]

    def prune(self, layer, config, weights, in_masks, out_masks):
        old_c, new_c = out_masks[0].shape[0], int(out_masks[0].sum())
        ts = list(config["target_shape"])
        if ts and ts[-1] == old_c:
            ts[-1] = new_c
        config["target_shape"] = tuple(ts)
        return config, weights


class PermuteHandler(LayerHandler):
    def propagate(self, node, ctx):
        dims = tuple(node.layer.dims)
        if dims and dims[-1] == len(dims):
            return [node.in_maps[0]]
        return ctx.opaque(node, f"Permute '{node.name}' moves the channel axis (dims={dims})")


register_handler(layers.Flatten, FlattenHandler())
register_handler(layers.Reshape, ReshapeHandler())
register_handler(layers.Permute, PermuteHandler())
