"""``keras.layers.Embedding`` and ``graph.constant_call.ConstantCall``.

An Embedding maps integer ids (their last axis is positions, not channels:
frozen) to ``output_dim`` new channels: a producer whose table
``(input_dim, output_dim)`` carries them on its last axis. A ``ConstantCall``
is its wrapped layer called on constants: the constants get frozen maps, the
anchor input is not read, every other question goes to the wrapped layer's
handler (``prune`` edits the wrapped layer's config).
"""

from __future__ import annotations

from keras import layers

from .registry import LayerHandler, get_handler, register_handler
from .weight_axes import WeightAxes


class EmbeddingHandler(LayerHandler):
    def propagate(self, node, ctx):
        for m in node.in_maps:
            ctx.freeze(m, f"Embedding '{node.name}' reads ids, not channels")
        out = ctx.fresh(node, node.out_channels(0))
        ctx.producer(node, out)
        return [out]

    def weight_axes(self, layer):
        return {0: WeightAxes(out_axis=-1)} if layer.weights else {}

    def prune(self, layer, config, weights, in_masks, out_masks):
        config, new = super().prune(layer, config, weights, in_masks, out_masks)
        config["output_dim"] = int(out_masks[0].sum())
        return config, new


class ConstantCallHandler(LayerHandler):
    """Delegates to the wrapped layer's handler; the constants are frozen."""

    def propagate(self, node, ctx):
        inner = node.layer.inner
        handler = get_handler(inner)
        consts = node.layer.constants
        maps = [ctx.fresh(node, int(c.shape[-1]) if c.ndim else 1,
                          frozen=f"'{node.name}' calls its layer on constants", out_index=f"c{i}")
                for i, c in enumerate(consts)]
        view = node.replace(layer=inner, in_maps=maps, in_shapes=[c.shape for c in consts],
                            args=tuple(consts), kwargs={}, constants=list(consts))
        if handler is None:
            return ctx.opaque(view, f"'{node.name}' ({type(inner).__name__}) has no handler")
        return handler.propagate(view, ctx)

    def weight_axes(self, layer):
        handler = get_handler(layer.inner)
        return handler.weight_axes(layer.inner) if handler else {}

    def prune(self, layer, config, weights, in_masks, out_masks):
        handler = get_handler(layer.inner)
        if handler is None:
            return config, weights
        inner = dict(config["layer"])
        cfg, new = handler.prune(layer.inner, dict(inner["config"]), weights,
                                 [None] * len(layer.constants), out_masks)
        inner["config"] = cfg
        config["layer"] = inner
        return config, new


register_handler(layers.Embedding, EmbeddingHandler())
register_handler("remotetrimmer_tf.graph.constant_call.ConstantCall", ConstantCallHandler())
