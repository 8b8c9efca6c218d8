"""Couplings (Add, Multiply, ...) and Concatenate."""

from __future__ import annotations

from ...errors import PruningError
import numpy as np
from keras import layers

from .registry import LayerHandler, register_handler


def couple_broadcast(node, ctx, maps, shapes, out_c):
    """Elementwise op over tensors broadcast to ``out_c`` channels.

    Inputs with ``out_c`` channels are coupled position by position; inputs
    broadcast along the channel axis (1 channel) are frozen.
    """
    full = [m for m in maps if m.shape[0] == out_c]
    if not full:
        why = f"'{node.name}' broadcasts a single channel to {out_c}"
        for m in maps:
            ctx.freeze(m, why)
        return ctx.fresh(node, out_c, frozen=why)
    out = full[0]
    for m in maps:
        if m.shape[0] == out_c:
            if m is not out:
                ctx.couple(out, m)
        elif m.shape[0] == 1:
            ctx.freeze(m, f"'{node.name}' broadcasts this 1-channel tensor over channels")
        else:
            raise PruningError(
                f"Layer '{node.name}': cannot broadcast {m.shape[0]} channels "
                f"to {out_c}.")
    return out


class CouplingHandler(LayerHandler):
    """Add / Subtract / Multiply / Average / Maximum / Minimum layers."""

    follows_channels_first = True

    def propagate(self, node, ctx):
        out_c = node.out_channels(0)
        return [couple_broadcast(node, ctx, node.in_maps, node.in_shapes, out_c)]


class ConcatenateHandler(LayerHandler):
    """Concatenate: along the last axis the output map is the input maps joined."""

    follows_channels_first = True

    def propagate(self, node, ctx):
        axis = node.axis(getattr(node.layer, "axis", -1))
        return [concat_maps(node, ctx, node.in_maps, node.in_shapes, axis)]


def concat_maps(node, ctx, maps, shapes, axis):
    rank = len(shapes[0])
    if axis < 0:
        axis += rank
    if axis == rank - 1:
        return np.concatenate(maps)
    out = maps[0]
    for m in maps[1:]:
        if m.shape != out.shape:
            raise PruningError(f"Layer '{node.name}': inputs have different widths.")
        ctx.couple(out, m)
    return out


for _n in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
    register_handler(getattr(layers, _n), CouplingHandler())
register_handler(layers.Concatenate, ConcatenateHandler())
# keras.applications InceptionResNetV2: inputs[0] + inputs[1] * scale (scalar)
register_handler("keras.src.applications.inception_resnet_v2.CustomScaleLayer",
                 CouplingHandler())
