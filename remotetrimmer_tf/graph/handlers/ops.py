"""Keras ops applied to symbolic tensors (``x + 3.0``, ``ops.sigmoid(x)``, ...).

In Keras 3 functional models these appear as Operation nodes. Elementwise ops
with scalar or broadcast operands pass channels through or couple them;
array constants over the channel axis, reductions over the channel axis and
other channel-mixing ops freeze the channels involved.
"""

from __future__ import annotations

import keras
import numpy as np
from keras.src.ops import nn as _nn
from keras.src.ops import numpy as _np_ops

from .merge import concat_maps, couple_broadcast
from .registry import LayerHandler, register_handler
from .reshape import reshape_map


def _array_constants(node):
    out = []
    for a in node.constants:
        if isinstance(a, (bool, int, float, complex, str, type(None))):
            continue
        shape = getattr(a, "shape", None)
        if shape is None:
            try:
                shape = np.shape(a)
            except Exception:  # pragma: no cover
                shape = ()
        if int(np.prod(shape)) > 1 if len(shape) else False:
            out.append(shape)
    return out


class ElementwiseOpHandler(LayerHandler):
    """Unary or n-ary elementwise op: couples tensor operands, broadcasting ok."""

    follows_channels_first = True

    def propagate(self, node, ctx):
        out_c = node.out_channels(0)
        consts = [s for s in _array_constants(node) if len(s) and s[-1] not in (1,)]
        if consts:
            why = (f"op '{node.name}' combines the channels with a constant "
                   f"array of shape {tuple(consts[0])}")
            return ctx.opaque(node, why)
        return [couple_broadcast(node, ctx, node.in_maps, node.in_shapes, out_c)]


class ReductionOpHandler(LayerHandler):
    """Mean/Sum/Max/...: pass-through unless the channel axis is reduced."""

    def propagate(self, node, ctx):
        op = node.layer
        axis = getattr(op, "axis", None)
        rank = len(node.in_shapes[0])
        axes = None if axis is None else (list(axis) if isinstance(axis, (list, tuple)) else [axis])
        if axes is not None and all((a % rank) != rank - 1 for a in axes):
            return [node.in_maps[0]]
        return ctx.opaque(node, f"op '{node.name}' reduces over the channel axis")


class ConcatenateOpHandler(LayerHandler):
    def propagate(self, node, ctx):
        return [concat_maps(node, ctx, node.in_maps, node.in_shapes,
                            getattr(node.layer, "axis", 0))]


class ReshapeOpHandler(LayerHandler):
    def propagate(self, node, ctx):
        return [reshape_map(node, ctx, node.in_maps[0], node.in_shapes[0],
                            node.out_shapes[0])]

    def prune(self, layer, config, weights, in_masks, out_masks):
        old_c, new_c = out_masks[0].shape[0], int(out_masks[0].sum())
        for k in ("newshape", "new_shape", "shape"):
            if k in config and config[k] is not None:
                s = list(config[k])
                if s and s[-1] == old_c:
                    s[-1] = new_c
                config[k] = tuple(s)
        return config, weights


class AxisOpHandler(LayerHandler):
    """Transpose / ExpandDims / Squeeze: pass when the last axis stays last."""

    def propagate(self, node, ctx):
        op = node.layer
        in_rank = len(node.in_shapes[0])
        out_shape = node.out_shapes[0]
        ok = False
        axes = getattr(op, "axes", None)
        if type(op).__name__ == "Transpose":
            ok = axes is None and in_rank <= 1 or (axes is not None and (axes[-1] % in_rank) == in_rank - 1)
        else:
            ok = len(out_shape) > 0 and out_shape[-1] == node.in_maps[0].shape[0] \
                and node.in_shapes[0][-1] == out_shape[-1]
            axis = getattr(op, "axis", None)
            if type(op).__name__ == "Squeeze" and axis is None:
                ok = ok and node.in_shapes[0][-1] != 1
            if type(op).__name__ == "ExpandDims":
                ax = axis if isinstance(axis, (list, tuple)) else [axis]
                ok = ok and all(a != -1 and a != len(out_shape) - 1 for a in ax)
        if ok:
            return [node.in_maps[0]]
        return ctx.opaque(node, f"op '{node.name}' moves or merges the channel axis")


class SoftmaxOpHandler(LayerHandler):
    def propagate(self, node, ctx):
        axis = getattr(node.layer, "axis", -1)
        rank = len(node.in_shapes[0])
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if all((a % rank) != rank - 1 for a in axes):
            return [node.in_maps[0]]
        return ctx.opaque(node, f"op '{node.name}' normalises over the channel axis")


class PadOpHandler(LayerHandler):
    """``keras.ops.pad``: pass-through when the channel axis is not padded."""

    def propagate(self, node, ctx):
        rank = len(node.in_shapes[0])
        try:
            pw = np.broadcast_to(np.asarray(node.layer.pad_width, dtype=np.int64),
                                 (rank, 2))
        except ValueError:
            pw = None
        if pw is not None and not pw[-1].any():
            return [node.in_maps[0]]
        return ctx.opaque(node, f"op '{node.name}' pads the channel axis")


class SplitOpHandler(LayerHandler):
    """``keras.ops.split``: along the channel axis each output is a slice of the
    input's channels (the surgeon rewrites the split points); along another
    axis every output carries all the channels."""

    def _on_channels(self, node):
        rank = len(node.in_shapes[0])
        return (int(node.layer.axis) % rank) == rank - 1

    def propagate(self, node, ctx):
        m = node.in_maps[0]
        n_out = len(node.out_shapes)
        if not self._on_channels(node):
            return [m] * n_out
        outs, start = [], 0
        for shape in node.out_shapes:
            outs.append(m[start:start + int(shape[-1])])
            start += int(shape[-1])
        return outs

    def prune(self, layer, config, weights, in_masks, out_masks):
        # along the channel axis the outputs' widths add up to the input's
        if len(out_masks) > 1 and \
                sum(mk.shape[0] for mk in out_masks) == in_masks[0].shape[0]:
            sizes = [int(mk.sum()) for mk in out_masks]
            config["indices_or_sections"] = np.cumsum(sizes[:-1]).tolist()
        return config, weights


def _key_axes(key, rank):
    """Per-axis entries of a ``x[key]`` index (Ellipsis expanded), or None."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is None for k in key) or sum(k is Ellipsis for k in key) > 1:
        return None
    if Ellipsis in key:
        i = key.index(Ellipsis)
        fill = rank - (len(key) - 1)
        key = key[:i] + (slice(None),) * fill + key[i + 1:]
    if len(key) > rank:
        return None
    return list(key) + [slice(None)] * (rank - len(key))


class GetItemOpHandler(LayerHandler):
    """``x[...]``: pass-through when the channel axis is taken whole."""

    def propagate(self, node, ctx):
        rank = len(node.in_shapes[0])
        key = node.args[1] if len(node.args) > 1 else node.kwargs.get("key")
        axes = _key_axes(key, rank) if not isinstance(key, keras.KerasTensor) else None
        if axes is not None and axes[-1] == slice(None) \
                and node.out_channels(0) == node.in_maps[0].shape[0] \
                and len(node.out_shapes[0]) > 0:
            return [node.in_maps[0]]
        return ctx.opaque(node, f"op '{node.name}' indexes or slices the channel axis")


_ELEMENTWISE_NUMPY = [
    "Abs", "Absolute", "Add", "Subtract", "Multiply", "Divide", "TrueDivide",
    "DivideNoNan", "Maximum", "Minimum", "Power", "Negative", "Exp", "Expm1",
    "Exp2", "Log", "Log1p", "Log2", "Log10", "Sqrt", "Square", "Reciprocal",
    "Clip", "Sign", "Floor", "Ceil", "Round", "Tanh", "Sin", "Cos", "Copy",
    "Fmax", "Fmin", "Cbrt", "Where", "Erf", "Mod", "FloorDivide",
    "Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual",
    "LogicalAnd", "LogicalOr", "LogicalNot", "LogicalXor", "IsNan", "IsInf", "IsFinite",
]
_ELEMENTWISE_NN = [
    "Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "Silu", "Gelu",
    "Elu", "Selu", "Celu", "Softplus", "Softsign", "LeakyRelu", "LogSigmoid",
    "HardTanh", "TanhShrink", "SoftShrink", "HardShrink", "Squareplus",
    "SparsePlus", "Threshold", "SparseSigmoid",
]
for _n in _ELEMENTWISE_NUMPY:
    if hasattr(_np_ops, _n):
        register_handler(getattr(_np_ops, _n), ElementwiseOpHandler())
for _n in _ELEMENTWISE_NN:
    if hasattr(_nn, _n):
        register_handler(getattr(_nn, _n), ElementwiseOpHandler())
for _n in ("Mean", "Sum", "Max", "Min", "Amax", "Amin", "Prod", "Var", "Std", "Any", "All"):
    if hasattr(_np_ops, _n):
        register_handler(getattr(_np_ops, _n), ReductionOpHandler())
register_handler(_np_ops.Concatenate, ConcatenateOpHandler())
register_handler(_np_ops.Reshape, ReshapeOpHandler())
for _n in ("Transpose", "ExpandDims", "Squeeze"):
    register_handler(getattr(_np_ops, _n), AxisOpHandler())
register_handler(_np_ops.Pad, PadOpHandler())
register_handler(_np_ops.Split, SplitOpHandler())
register_handler(_np_ops.GetItem, GetItemOpHandler())
register_handler(_nn.Softmax, SoftmaxOpHandler())
register_handler(_nn.LogSoftmax, SoftmaxOpHandler())
