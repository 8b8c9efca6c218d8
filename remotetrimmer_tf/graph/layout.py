"""Where a tensor carries its channels: the last axis or axis 1.

A ``channels_first`` layer (``data_format="channels_first"``: convolutions,
pooling, padding, up-sampling, global pooling, Flatten) reads and writes its
channels on axis 1 of tensors of rank 3 and more; every other tensor has
them last. The graph follows each tensor's channel axis from the layers that
produce and read it, and shows handlers every shape *channels-last* (axis 1
moved to the end), so a handler never needs to know the layout: weight
layouts do not depend on ``data_format`` in Keras 3.

A layer without ``data_format`` on a channels-first tensor is followed only
when its handler says it does not depend on the layout
(``LayerHandler.follows_channels_first``: elementwise layers and ops, merges,
normalisations over the channel axis); any other is frozen with a reason.

Example:
    >>> to_last((None, 16, 8, 8), FIRST)
    (None, 8, 8, 16)
    >>> to_last((None, 16), FIRST)
    (None, 16)
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import keras

__all__ = ["LAST", "FIRST", "to_last", "layer_axis", "input_axes", "node_axes",
           "view_axis"]

LAST, FIRST = -1, 1


def to_last(shape, axis):
    """``shape`` with the channel axis moved last."""
    shape = tuple(shape)
    if axis == FIRST and len(shape) >= 3:
        return (shape[0],) + shape[2:] + (shape[1],)
    return shape


def view_axis(raw_axis, rank, channel_axis):
    """A layer's ``axis`` argument in the channels-last view of its input."""
    if raw_axis is None or channel_axis != FIRST or rank < 3:
        return raw_axis
    a = raw_axis % rank
    return rank - 1 if a == 1 else (a - 1 if a > 1 else a)


def layer_axis(op) -> Optional[int]:
    """FIRST / LAST for a layer with a ``data_format``, else None."""
    fmt = getattr(op, "data_format", None)
    if fmt == "channels_first":
        return FIRST
    if fmt == "channels_last":
        return LAST
    return None


def input_axes(fn) -> List[int]:
    """Channel axis of each model input: FIRST when a layer reading it is
    ``channels_first`` (and the input has rank >= 3)."""
    inputs = keras.tree.flatten(fn.inputs)
    first = set()
    for depth in fn._nodes_by_depth:
        for node in fn._nodes_by_depth[depth]:
            if layer_axis(node.operation) == FIRST:
                first.update(id(t) for t in node.arguments.keras_tensors)
    return [FIRST if id(t) in first and len(t.shape) >= 3 else LAST for t in inputs]


def node_axes(op, handler, in_axes: Sequence[int], in_ranks: Sequence[int],
              out_ranks: Sequence[int], name: str) -> Tuple[List[int], Optional[str]]:
    """``(output axes, problem)`` of one call: ``problem`` is why the layer
    cannot be followed in this layout (then its channels are frozen)."""
    spatial = [a for a, r in zip(in_axes, in_ranks) if r >= 3]
    want = layer_axis(op)
    if want is not None:
        outs = [want if r >= 3 else LAST for r in out_ranks]
        if any(a != want for a in spatial):
            fmt = getattr(op, "data_format", None)
            return outs, (f"layer '{name}' ({fmt}) reads a tensor whose channels are "
                          "on another axis")
        return outs, None
    if FIRST not in spatial:
        return [LAST] * len(out_ranks), None
    outs = [FIRST if r >= 3 else LAST for r in out_ranks]
    if len(set(spatial)) > 1:
        return outs, f"layer '{name}' mixes channels-first and channels-last tensors"
    if not getattr(handler, "follows_channels_first", False):
        return outs, (f"layer '{name}' ({type(op).__name__}) is not known to follow "
                      "channels on axis 1 (channels_first)")
    return outs, None
