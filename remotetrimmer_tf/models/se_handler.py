"""Graph handler for :class:`SqueezeExcite` — the worked example of a custom layer.

A squeeze-and-excite gate passes its channels through (output channel ``c``
is input channel ``c`` times ``s_c``), so for the dependency graph it is
*channelwise*: it joins the group of its input channels. Channel ``c`` owns
row ``c`` of the squeeze kernel ``W1 (C, hidden)`` and column ``c`` of the
excite kernel ``W2 (hidden, C)`` plus the excite bias ``b2[c]``. The hidden
width is not a channel group of its own; it stays as it is.

Registering a handler for your own layer works the same way::

    from remotetrimmer_tf.graph import LayerHandler, register_handler
    register_handler(MyLayer, MyLayerHandler())
"""
from remotetrimmer_tf.graph.handlers import LayerHandler, register_handler
from remotetrimmer_tf.models.se import SqueezeExcite

__all__ = ["SqueezeExciteHandler"]


class SqueezeExciteHandler(LayerHandler):
    """Channelwise handler: keep kept rows of ``W1`` and columns of ``W2``/``b2``."""

    def propagate(self, node, ctx):
        channels = node.in_maps[0]
        ctx.channelwise(node, channels)   # per-channel parameters, same channels
        return [channels]                 # the output carries the input's channels

    def input_channel_axes(self, layer):
        return {0: 0}                     # W1 (C, h) reads the squeezed channels

    def prune(self, layer, config, weights, in_masks, out_masks):
        keep = in_masks[0]
        w1, b1, w2, b2 = weights          # (C, h), (h,), (h, C), (C,)
        config["hidden_units"] = int(w1.shape[1])   # hidden width unchanged
        return config, [w1[keep], b1, w2[:, keep], b2[keep]]


register_handler(SqueezeExcite, SqueezeExciteHandler())
