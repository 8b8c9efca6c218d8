"""Filter-norm criteria: ``l1`` and ``l2`` of the producers' output filters.

A producer's filter of output channel ``c`` is read from its handler's
``weight_axes``: every kernel (a weight with ``per``) cut along its
``out_axis`` (Conv: ``kernel[..., c]``, Conv*Transpose: ``kernel[..., c, :]``,
SeparableConv: the pointwise kernel), so a custom layer with one handler is
scored like a built-in one. Channels inside a layer (a member with a
``slot``: an attention layer's heads) are read through its handler's
``slot_filters``: a head's query / key / value / gate / output slices.
"""
import numpy as np

from remotetrimmer_tf.graph.handlers.registry import get_handler, weight_axes_of
from remotetrimmer_tf.graph.handlers.weight_axes import output_major
from remotetrimmer_tf.importance.reductions import NoScoreError, get_layer, reduce_scores, \
    take_channels, to_numpy

__all__ = ["l1", "l2", "producer_filters", "filter_weights", "slot_filters"]


def filter_weights(layer):
    """``[(variable, WeightAxes)]``: the kernels that make ``layer``'s output
    channels (declared ``per`` and ``out_axis``), in ``layer.weights`` order."""
    weights = layer.weights
    return [(weights[i], ax) for i, ax in sorted(weight_axes_of(layer).items())
            if ax.per is not None and ax.out_axis is not None]


def slot_filters(layer, slot, values=None):
    """``(channels, fan)`` rows making the channels of a member's ``slot``
    (e.g. an attention layer's heads: each head's q/k/v/o slices), from its
    handler's ``slot_filters``; ``values`` default to the layer's weights."""
    handler = get_handler(layer)
    if handler is None:
        return None
    if values is None:
        values = [to_numpy(v).astype(np.float64) for v in layer.weights]
    rows = handler.slot_filters(layer, slot, values)
    return None if rows is None else np.asarray(rows, dtype=np.float64)


def _output_filters(layer, slot=None):
    """The layer's kernels as ``(out_channels, fan)`` float64, or None if it has none."""
    if slot is not None:
        return slot_filters(layer, slot)
    parts = [output_major(to_numpy(v).astype(np.float64), ax)
             for v, ax in filter_weights(layer)]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def producer_filters(group, model):
    """``[(layer_name, (size, fan) array)]``: each producer's filter per channel."""
    out = []
    for member in group.producers:
        layer = get_layer(model, member.layer)
        w = _output_filters(layer, member.slot)
        if w is None:
            continue
        idx = np.asarray(member.indices)
        out.append((member.layer, take_channels(w, idx).reshape(group.size, -1)))
    if not out:
        raise NoScoreError(
            f"group {group.index} (layers {group.layers[:4]}...) has no producer "
            "kernel (Conv/Dense) to score.")
    return out


def l1(group, model, reduction="mean", **ctx):
    """L1 norm of each channel's output filter in every producer (Li et al., 2017).

    Args:
        group: A ``ChannelGroup``.
        model: The model the graph was built from.
        reduction: How to combine several producers (residual groups).

    Returns:
        ``(group.size,)`` scores, higher = more important.

    Example:
        >>> l1(graph.groups[0], model).shape    # doctest: +SKIP
        (64,)
    """
    return reduce_scores([np.abs(w).sum(axis=1) for _, w in
                          producer_filters(group, model)], reduction)


def l2(group, model, reduction="mean", **ctx):
    """L2 norm of each channel's output filter in every producer.

    Args:
        group: A ``ChannelGroup``.
        model: The model the graph was built from.
        reduction: How to combine several producers (residual groups).

    Returns:
        ``(group.size,)`` scores, higher = more important.

    Example:
        >>> l2(graph.groups[0], model).shape    # doctest: +SKIP
        (64,)
    """
    return reduce_scores([np.sqrt((w ** 2).sum(axis=1)) for _, w in
                          producer_filters(group, model)], reduction)
