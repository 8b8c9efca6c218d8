"""``TimeDistributed(layer)``: the wrapped layer's handler, over every step.

The wrapper applies its layer to each slice along axis 1; the channels stay
on the last axis, so the inner layer's handler decides everything: the
graph sees the call with the time axis taken out, the weights are the inner
layer's (same order), and the surgeon edits the inner layer's config.
A wrapped layer without a handler freezes the channels around the wrapper.
"""
from __future__ import annotations

from keras import layers

from .registry import LayerHandler, get_handler, register_handler


class _Inner:
    """The wrapper's call as its inner layer sees it (time axis removed)."""

    def __init__(self, node, inner):
        self.__dict__.update({k: getattr(node, k) for k in node.__slots__})
        self.layer = inner
        self.in_shapes = [s[:1] + s[2:] if len(s) > 2 else s for s in node.in_shapes]
        self.out_shapes = [s[:1] + s[2:] if len(s) > 2 else s for s in node.out_shapes]

    def out_channels(self, i=0):
        shape = self.out_shapes[i]
        return 0 if not shape or shape[-1] is None else int(shape[-1])

    def axis(self, raw_axis):
        return raw_axis


class TimeDistributedHandler(LayerHandler):
    def _inner(self, layer):
        inner = getattr(layer, "layer", None)
        return inner, (get_handler(inner) if inner is not None else None)

    def propagate(self, node, ctx):
        inner, handler = self._inner(node.layer)
        if handler is None or getattr(node, "channel_axis", -1) != -1:
            return ctx.opaque(node, f"TimeDistributed '{node.name}' wraps "
                                    f"{type(inner).__name__}, which has no handler")
        return handler.propagate(_Inner(node, inner), ctx)

    def weight_axes(self, layer):
        inner, handler = self._inner(layer)
        return handler.weight_axes(inner) if handler is not None else {}

    def prune(self, layer, config, weights, in_masks, out_masks):
        inner, handler = self._inner(layer)
        cfg, new = handler.prune(inner, dict(config["layer"]["config"]), weights,
                                 in_masks, out_masks)
        config["layer"] = dict(config["layer"], config=cfg)
        return config, new


register_handler(layers.TimeDistributed, TimeDistributedHandler())
