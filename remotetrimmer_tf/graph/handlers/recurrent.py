"""Recurrent layers (LSTM, GRU, SimpleRNN, ConvLSTM*, Bidirectional of them).

A recurrent layer reads its input channels through its input kernel(s)
(``(..., in, gates * units)``, rows on axis -2), so the channels feeding it
can be pruned exactly: the kernel rows of the removed channels go. Its own
units (the state width, the gates) are not pruned: the outputs are frozen
channels. A generic ``keras.layers.RNN`` over a user's cell, other inputs
(initial states, constants) and ``channels_first`` ConvLSTMs freeze the
channels around the layer.
"""
from __future__ import annotations

from keras import layers

from .registry import LayerHandler, register_handler
from .weight_axes import WeightAxes


def _input_kernels(layer):
    """Indices of the weights that read the input channels (leaf ``kernel``)."""
    return [i for i, w in enumerate(layer.weights)
            if w.path.split("/")[-1] == "kernel"]


class RecurrentHandler(LayerHandler):
    """Consumer of its first input's channels; outputs frozen."""

    def weight_axes(self, layer):
        return {i: WeightAxes(in_axis=-2) for i in _input_kernels(layer)}

    def _problem(self, node):
        layer, c = node.layer, len(node.in_maps[0])
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            return f"recurrent layer '{node.name}' uses data_format='channels_first'"
        kernels = [layer.weights[i] for i in _input_kernels(layer)]
        if not kernels or any(int(k.shape[-2]) != c for k in kernels):
            return (f"recurrent layer '{node.name}' ({type(layer).__name__}) has no "
                    "input kernel over its input channels")
        return None

    def propagate(self, node, ctx):
        why = self._problem(node)
        if why:
            return ctx.opaque(node, why)
        for other in node.in_maps[1:]:
            ctx.freeze(other, f"an initial state / constant of recurrent layer '{node.name}'")
        ctx.consumer(node, node.in_maps[0])
        why = f"the units of recurrent layer '{node.name}' are not pruned"
        return [ctx.fresh(node, node.out_channels(i), frozen=why, out_index=i)
                for i in range(len(node.out_shapes))]


class GenericRNNHandler(RecurrentHandler):
    """``keras.layers.RNN(cell)``: followed over a Keras cell (LSTMCell,
    GRUCell, SimpleRNNCell); over any other cell (a user's, stacked cells)
    the channels around it are frozen."""

    def _problem(self, node):
        cell = type(getattr(node.layer, "cell", None)).__name__
        if cell not in ("LSTMCell", "GRUCell", "SimpleRNNCell"):
            return f"layer '{node.name}' is an RNN over cell {cell}, which is not known"
        return super()._problem(node)


_KNOWN = ("LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
for _n in _KNOWN:
    if hasattr(layers, _n):
        register_handler(getattr(layers, _n), RecurrentHandler())


class BidirectionalHandler(RecurrentHandler):
    """``Bidirectional(LSTM/GRU/SimpleRNN)``: both directions read the input."""

    def _problem(self, node):
        inner = type(getattr(node.layer, "forward_layer", None)).__name__
        if inner not in _KNOWN:
            return f"Bidirectional '{node.name}' wraps {inner}, not a known recurrent layer"
        return super()._problem(node)


register_handler(layers.Bidirectional, BidirectionalHandler())
register_handler(layers.RNN, GenericRNNHandler())
