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
from remotetrimmer_tf.graph.handlers import LayerHandler, WeightAxes, register_handler
from remotetrimmer_tf.models.se import SqueezeExcite

__all__ = ["SqueezeExciteHandler"]


class SqueezeExciteHandler(LayerHandler):
    """Channelwise handler: keep kept rows of ``W1`` and columns of ``W2``/``b2``."""

    def propagate(self, node, ctx):
        channels = node.in_maps[0]
        ctx.channelwise(node, channels)   # per-channel parameters, same channels
        return [channels]                 # the output carries the input's channels

    def weight_axes(self, layer):
        # W1 (C, h) reads the squeezed channels, W2 (h, C) and b2 (C,) write
        # them; b1 (h,) is the hidden width, which stays. The default prune
        # slices exactly these axes (the config holds no channel count).
        return {0: WeightAxes(in_axis=0), 2: WeightAxes(out_axis=1),
                3: WeightAxes(out_axis=0)}

    def prune(self, layer, config, weights, in_masks, out_masks):
        config, new = super().prune(layer, config, weights, in_masks, out_masks)
        config["hidden_units"] = int(new[0].shape[1])   # hidden width unchanged
        return config, new


register_handler(SqueezeExcite, SqueezeExciteHandler())
