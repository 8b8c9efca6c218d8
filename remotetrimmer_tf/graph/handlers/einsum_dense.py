"""``keras.layers.EinsumDense``: which axes carry channels, read from the equation.

An equation ``"<input>,<kernel>-><output>"`` names every axis by a letter.
The channels are the last axis of the input (letter ``ci``) and of the
output (``co``). Three cases follow the channels exactly:

- ``ci`` is contracted with the kernel and ``co`` comes from the kernel only
  (``"abc,cd->abd"``, ``"abc,cde->abde"``): a producer, like Dense: the kernel
  axis of ``ci`` reads the input channels, the one of ``co`` makes the output
  channels (other kernel-only axes, e.g. attention heads, stay whole);
- ``ci`` is ``co`` and the kernel has no such axis (``"abc,bd->adc"``: the
  kernel mixes tokens, every channel alike): the channels pass through;
- ``ci`` is ``co`` and the kernel has it (a per-channel scale): channel-wise.

Anything else moves or mixes the channel axis (``ci`` kept on another output
axis, ``co`` taken from another input axis) and is frozen, in one line.

Example:
    >>> parse_equation("abc,cde->abde")
    ('', 'abc', 'cde', 'abde', '')
"""

from __future__ import annotations

import math
import re

from keras import layers

from .activations import activation_problem
from .registry import LayerHandler, register_handler
from .weight_axes import WeightAxes

__all__ = ["EinsumDenseHandler", "parse_equation"]

_EQ = re.compile(r"^(\.\.\.)?([a-zA-Z]+)(\.\.\.)?,([a-zA-Z]+)->(\.\.\.)?([a-zA-Z]+)(\.\.\.)?$")


def parse_equation(equation):
    """``(left, input, kernel, output, right)`` letters of an EinsumDense
    equation; ``left`` / ``right`` are ``"..."`` where axes are elided."""
    match = _EQ.match(equation.replace(" ", ""))
    if match is None:
        raise ValueError(f"EinsumDense equation {equation!r} is not of the form "
                         "'X,Y->Z', '...X,Y->...Z' or 'X...,Y->Z...'.")
    left_in, inp, right_in, ker, left_out, out, right_out = match.groups()
    return (left_in or "", inp, ker, out, right_in or "")


def _kind(equation):
    """``("producer" | "pass" | "channelwise" | None, why)`` of an equation."""
    _, inp, ker, out, right = parse_equation(equation)
    if right:
        return "pass", None           # the channel axis is elided: carried through
    ci, co = inp[-1], out[-1]
    if ci == co:
        return ("channelwise" if ci in ker else "pass"), None
    if ci in out:
        return None, f"moves the channel axis '{ci}' to another output axis"
    if ci not in ker:
        return None, f"reduces the channel axis '{ci}' without a kernel axis"
    if co in inp:
        return None, f"makes its output channels '{co}' from an input axis"
    return "producer", None


def _named(layer, name):
    """Index of the layer's weight called ``name`` (``.../kernel``), or None."""
    for i, w in enumerate(layer.weights):
        if w.path.rsplit("/", 1)[-1] == name:
            return i
    return None


class EinsumDenseHandler(LayerHandler):
    """EinsumDense: the kernel axes of the channel letters (see the module doc)."""

    def _problem(self, node):
        layer = node.layer
        kind, why = _kind(layer.equation)
        if kind is None:
            return kind, f"EinsumDense '{node.name}' ({layer.equation}) {why}"
        if getattr(layer, "lora_enabled", False) or \
                getattr(layer, "quantization_mode", None) is not None:
            return None, (f"EinsumDense '{node.name}' is quantized or has LoRA weights, "
                          "which cannot be sliced")
        return kind, None

    def propagate(self, node, ctx):
        m = node.in_maps[0]
        kind, why = self._problem(node)
        if why:
            return ctx.opaque(node, why)
        if kind == "producer":
            ctx.consumer(node, m)
            out = ctx.fresh(node, node.out_channels(0))
            ctx.producer(node, out)
        else:
            if kind == "channelwise" or self.weight_axes(node.layer):
                ctx.channelwise(node, m)
            out = m
        why = activation_problem(node.name, getattr(node.layer, "activation", None))
        if why:
            ctx.freeze(out, why)
        return [out]

    def weight_axes(self, layer):
        kind, _ = _kind(layer.equation)
        _, inp, ker, out, right = parse_equation(layer.equation)
        axes = {}
        k, b = _named(layer, "kernel"), _named(layer, "bias")
        if kind == "producer":
            axes[k] = WeightAxes(out_axis=ker.index(out[-1]), in_axis=ker.index(inp[-1]),
                                 per="output")
        elif kind == "channelwise" and not right:
            axis = ker.index(inp[-1])
            axes[k] = WeightAxes(out_axis=axis, in_axis=axis)
        if b is not None and kind is not None and not right and \
                out[-1] in (layer.bias_axes or ""):
            axes[b] = WeightAxes(out_axis=-1, in_axis=-1 if kind != "producer" else None)
        return {i: a for i, a in axes.items() if i is not None}

    def prune(self, layer, config, weights, in_masks, out_masks):
        config, new = super().prune(layer, config, weights, in_masks, out_masks)
        shape = config.get("output_shape")
        n = int(out_masks[0].sum())
        if isinstance(shape, int):
            config["output_shape"] = n
        elif shape and shape[-1] is not None:
            config["output_shape"] = tuple(shape[:-1]) + (n,)
        return config, new

    def macs(self, layer, call, kept=None):
        """Every letter's size multiplied (batch and elided axes included
        once): one multiply-accumulate per term of the einsum sum."""
        left, inp, ker, out, right = parse_equation(layer.equation)
        in_shape = list(call.in_shapes[0])
        kshape = [int(d) for d in layer.weights[_named(layer, "kernel")].shape]
        n_elided = len(in_shape) - len(inp)
        spec = inp if not left else "." * n_elided + inp
        if right:
            spec = inp + "." * n_elided
        sizes = {}
        for letter, d in zip(spec, in_shape):
            if letter != ".":
                sizes[letter] = d
        sizes.update(zip(ker, kshape))
        extra = [d for letter, d in zip(spec, in_shape) if letter == "."]
        batch = spec[0]
        if kept is not None and not right:
            sizes[inp[-1]] = kept[0][0]
            sizes[out[-1]] = kept[1][0]
        dims = [d for letter, d in sizes.items() if letter != batch] + \
            (extra[1:] if batch == "." else extra)
        if any(d is None for d in dims):
            raise ValueError(f"count_macs needs fixed shapes, but EinsumDense "
                             f"'{layer.name}' sees the input shape {tuple(in_shape)}.")
        return int(math.prod(int(d) for d in dims))


register_handler(layers.EinsumDense, EinsumDenseHandler())
