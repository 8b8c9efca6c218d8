"""Dead channels: the exactness check of any pruning plan.

``silence_dropped(model, keep)`` returns a copy of the model in which every
channel that ``keep`` removes is read by no layer: the weights of every
member that reads it (the ``in_axis`` of its handler's ``weight_axes``,
see ``LayerHandler.input_channel_axes``; channels inside a layer, like an
attention layer's heads, through its handler's ``silence``: a dropped head's
value and output slices) are zero on its rows. Removing such channels with
``prune_channels`` must then leave the output unchanged, up to float
rounding; where it does not, the graph mis-grouped a channel-mixing layer
(or the group is marked ``approximate``). The coverage table, the property
tests and the keras-hub tests all check pruning this way.

Example:
    >>> inp = keras.Input((4, 4, 3))
    >>> x = keras.layers.Conv2D(6, 1, name="c1")(inp)
    >>> m = keras.Model(inp, keras.layers.Conv2D(2, 1, name="c2")(x))
    >>> g = DependencyGraph(m)
    >>> keep = {1: [0, 2, 4]}
    >>> quiet = silence_dropped(m, keep, graph=g)
    >>> from remotetrimmer_tf.surgeon import prune_channels
    >>> small = prune_channels(quiet, keep)
    >>> x = np.ones((1, 4, 4, 3), "float32")
    >>> bool(np.allclose(quiet(x), small(x), atol=1e-5))
    True
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from ..errors import PruningError
from .dependency_graph import DependencyGraph
from .handlers.registry import get_handler
from .handlers.weight_axes import axis_mask

__all__ = ["silence_dropped", "silence_in_place"]


def _get_layer(model, name):
    layer = model
    for part in name.split("/"):
        layer = layer.get_layer(part)
    return layer


def silence_dropped(model, keep: Dict[int, Sequence[int]],
                    graph: Optional[DependencyGraph] = None):
    """A copy of ``graph.model`` in which the channels ``keep`` drops are dead.

    Args:
        model: the model ``keep`` was planned for.
        keep: ``{group index: kept indices}`` (e.g. ``Pruner.plan()``).
        graph: its ``DependencyGraph`` (built when omitted).

    Returns:
        A new plain functional model with the same graph and layer names.
    """
    from ..surgeon import prune_channels
    if graph is None:
        graph = DependencyGraph(model)
    graph.channel_mask(keep)                    # validates keep
    copy = prune_channels(model, {}, graph=graph)    # an exact copy
    silence_in_place(copy, keep, graph)
    return copy


def _rows_on_axis(dropped, rows, length):
    """Entries of a weight axis of ``length`` that the dropped channels own."""
    try:
        return np.nonzero(axis_mask(dropped, length))[0]
    except ValueError:      # an axis not laid out by the channels' count
        return np.unique(rows % length)


def _zero_grouped(w, in_axis, out_axis, channels, width):
    """A grouped kernel (``groups = width / L`` blocks, ``L`` rows each): input
    channel ``c`` is row ``c mod L`` of group ``c // L`` only, which writes
    that group's block of outputs; zero exactly that block (a depthwise kernel
    written as ``Conv(groups=C)`` has ``L = 1``)."""
    rows = w.shape[in_axis]
    groups = width // rows
    if out_axis is None or w.shape[out_axis] % groups:
        raise PruningError(f"a grouped kernel of shape {w.shape} does not split into "
                           f"{groups} groups along axis {out_axis}.")
    block = w.shape[out_axis] // groups
    for c in np.asarray(channels).tolist():
        g, j = divmod(int(c), rows)
        sel = [slice(None)] * w.ndim
        sel[in_axis] = j
        sel[out_axis] = slice(g * block, (g + 1) * block)
        w[tuple(sel)] = 0


def _silence_slot(layer, handler, member, drop):
    """Zero what reads the dropped channels of a member's ``slot`` (the
    handler's ``silence``: e.g. a dropped attention head's value / output
    slices)."""
    rows = np.asarray(member.indices)[drop].reshape(-1)
    rows = rows[rows >= 0]
    if rows.size:
        layer.set_weights(handler.silence(layer, member.slot, layer.get_weights(), rows))


def silence_in_place(copy, keep, graph):
    """Zero, in ``copy`` (a model with ``graph.model``'s layer names, e.g. its
    no-op rebuild), the weights that read the channels ``keep`` drops."""
    for gi, idx in keep.items():
        group = graph.groups[gi]
        drop = np.setdiff1d(np.arange(group.size), np.asarray(idx, dtype=np.int64))
        if not drop.size:
            continue
        for member in group.consumers + group.channelwise:
            layer = _get_layer(copy, member.layer)
            handler = get_handler(layer)
            if member.slot is not None:     # channels inside the layer (heads...)
                _silence_slot(layer, handler, member, drop)
                continue
            axes = handler.input_channel_axes(layer) if handler else {}
            if not axes:
                continue
            rows = np.asarray(member.indices)[drop].reshape(-1)
            rows = rows[rows >= 0]
            node = graph.nodes.get(member.layer)
            width = len(node.in_maps[0]) if node is not None and node.in_maps else 0
            dropped = np.zeros(max(width, int(rows.max(initial=-1)) + 1), dtype=bool)
            dropped[rows] = True
            weights = layer.get_weights()
            declared = handler.weight_axes(layer)
            for wi, axis in axes.items():
                w = weights[wi]
                if 0 < w.shape[axis] < dropped.shape[0]:
                    _zero_grouped(w, axis, declared[wi].out_axis, np.nonzero(dropped)[0],
                                  dropped.shape[0])
                    continue
                sel = [slice(None)] * w.ndim
                sel[axis] = _rows_on_axis(dropped, rows, w.shape[axis])
                w[tuple(sel)] = 0
            layer.set_weights(weights)
