"""``graph.rebuilt.Rebuilt``: the wrapped layer's own handler, on its arguments.

A ``Rebuilt`` copy holds one layer (``.inner``) with the same weights in the
same order; every question (channels, weight axes, slots, MACs) goes to the
inner layer's handler, and ``prune`` edits the constructor ``arguments`` the
way that handler edits a config.
"""

from __future__ import annotations

from .registry import LayerHandler, get_handler, register_handler


def _inner_view(node):
    return node.replace(layer=node.layer.inner)


class RebuiltHandler(LayerHandler):
    """Delegates to the handler of the wrapped layer's class."""

    @staticmethod
    def _handler(layer):
        return get_handler(layer.inner)

    def propagate(self, node, ctx):
        inner = node.layer.inner
        handler = self._handler(node.layer)
        if handler is None:
            why = (f"layer '{node.name}' ({type(inner).__name__}, rebuilt from its "
                   "constructor arguments) has no handler")
            if ctx.unknown == "error":
                raise ValueError(
                    f"No channel handler for layer '{node.name}' of type "
                    f"{type(inner).__module__}.{type(inner).__name__}. Way out: register a "
                    "handler with remotetrimmer_tf.graph.register_handler(<class>, "
                    "<LayerHandler>) (see docs/custom_layers.md); or pass unknown='freeze'.")
            return ctx.opaque(node, why)
        return handler.propagate(_inner_view(node), ctx)

    def weight_axes(self, layer):
        handler = self._handler(layer)
        return handler.weight_axes(layer.inner) if handler else {}

    def prune(self, layer, config, weights, in_masks, out_masks):
        handler = self._handler(layer)
        if handler is None:
            return config, weights
        args, new = handler.prune(layer.inner, dict(config["arguments"]), weights,
                                  in_masks, out_masks)
        config["arguments"] = args
        return config, new

    def slot_filters(self, layer, slot, values):
        handler = self._handler(layer)
        return handler.slot_filters(layer.inner, slot, values) if handler else None

    def silence(self, layer, slot, weights, rows):
        return self._handler(layer).silence(layer.inner, slot, weights, rows)

    def macs(self, layer, call, kept=None):
        handler = self._handler(layer)
        return handler.macs(layer.inner, call, kept) if handler else None


register_handler("remotetrimmer_tf.graph.rebuilt.Rebuilt", RebuiltHandler())
