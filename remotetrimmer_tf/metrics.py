"""Model cost: multiply-accumulates of the layers' kernels and parameter counts.

MACs are read from each layer handler's ``weight_axes`` declaration (see
``graph.handlers.weight_axes``), so a custom layer registered with one handler
is counted like a built-in one; a handler whose layer costs more than its
kernels say (attention: the projections plus QKᵀ and AV over the tokens;
EinsumDense) counts it with its ``macs`` hook (``call_macs``)."""

from __future__ import annotations

from .errors import PruningError
import math
import warnings

import keras

__all__ = ["count_macs", "count_params", "layer_macs", "layer_calls", "call_macs",
           "layer_nodes", "call_view"]


def _prod(xs, what):
    p = 1
    for x in xs:
        if x is None:
            raise PruningError(
                f"count_macs needs fixed shapes, but {what} has an unknown "
                "dimension; build the model with a fixed input shape.")
        p *= int(x)
    return p


def _positions(layer, shape, what):
    """Spatial positions of a tensor of ``shape`` (batch and channel axes out)."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return _prod(shape[2:], what)
    return _prod(shape[1:-1], what)


def channels_of(layer, shape) -> int:
    """The channel count of a tensor of ``shape`` that ``layer`` reads or
    writes (axis 1 for a channels_first layer, else the last axis)."""
    first = getattr(layer, "data_format", None) == "channels_first" and len(shape) >= 3
    return int(shape[1] if first else shape[-1])


def layer_macs(layer, in_shape, out_shape, in_kept=None, out_kept=None) -> int:
    """Multiply-accumulates of one call of ``layer`` (batch of one).

    Read from the layer handler's ``weight_axes``: every weight declared
    ``per="output"`` (``"input"``) is applied once at each output (input)
    position, so it costs its size times that many positions. With
    ``in_kept`` / ``out_kept`` the cost is that of the same call with only
    that many input / output channels (last axis) kept: each channel axis of
    those weights shrinks in proportion (``budget.PlanCost``).

    Args:
        layer: the layer (a layer without a declared kernel costs 0).
        in_shape / out_shape: shapes of its first input / output, batch first.
        in_kept / out_kept: kept channel counts (default: all).

    Example:
        >>> conv = keras.layers.Conv2D(4, 3, padding="same")
        >>> _ = conv(keras.Input((8, 8, 3)))
        >>> layer_macs(conv, (None, 8, 8, 3), (None, 8, 8, 4))     # 8*8 * 3*3*3 * 4
        6912
        >>> layer_macs(conv, (None, 8, 8, 3), (None, 8, 8, 4), out_kept=2)
        3456
    """
    from .graph.handlers.registry import weight_axes_of
    total = 0
    weights = layer.weights
    for i, ax in weight_axes_of(layer).items():
        if ax.per is None:
            continue
        shape = [int(d) for d in weights[i].shape]
        cuts = [(ax.out_axis, out_kept, out_shape)]
        if ax.in_axis != ax.out_axis:       # else a per-channel axis: once
            cuts.append((ax.in_axis, in_kept, in_shape))
        for axis, kept, full in cuts:
            if axis is not None and kept is not None:
                shape[axis] = shape[axis] * int(kept) // channels_of(layer, full)
        where = in_shape if ax.per == "input" else out_shape
        total += _positions(layer, where, layer.name) * math.prod(shape)
    return total


def _uncounted(layer):
    """A layer whose MACs this module cannot know: no handler, and a kernel
    (a weight of rank >= 2) it multiplies with in ways only its call knows."""
    from .graph.handlers.registry import get_handler
    if get_handler(layer) is not None:
        return False
    return any(len(w.shape) >= 2 for w in layer.weights)


def count_macs(model) -> int:
    """Conv + dense multiply-accumulates for one input at the model's input shape.

    Args:
        model: a functional or Sequential-with-Input Keras model, a keras-hub
            Backbone / task or any functional subclass (nested sub-models are
            counted once per call; composite layers through the layers they
            are made of). A layer it cannot count (no handler, but a kernel)
            raises instead of counting 0.

    Returns:
        int: MACs for a batch of one.

    Example:
        >>> inp = keras.Input((8, 8, 3))
        >>> m = keras.Model(inp, keras.layers.Conv2D(4, 3, padding="same")(inp))
        >>> count_macs(m)   # 8*8 * 3*3*3 * 4
        6912
    """
    from .graph.functional_view import functional_view, graph_of
    total = 0
    for op, name, node in layer_nodes(graph_of(functional_view(model, check=False)),
                                      ops=True):
        if isinstance(op, keras.layers.Layer) and _uncounted(op):
            raise PruningError(
                f"count_macs: layer '{op.name}' ({type(op).__name__}) has a "
                "kernel but no handler, so its multiply-accumulates are unknown. "
                "Way out: register a handler for it (docs/custom_layers.md).")
        total += call_macs(op, call_view(op, name, node))
    return int(total)


def call_view(op, name, node):
    """A ``graph.NodeView`` of one Keras node (shapes, args; no channel maps)."""
    from .graph.builder import NodeView
    return NodeView(op, name, None, [tuple(t.shape) for t in node.arguments.keras_tensors],
                    [tuple(t.shape) for t in node.outputs], node.arguments.args,
                    node.arguments.kwargs, [], 0)


def call_macs(layer, call, kept=None) -> int:
    """Multiply-accumulates of one call (``call``: a ``NodeView``): the layer
    handler's ``macs`` hook when it has one, else ``layer_macs`` of the first
    input / output. ``kept``: None or ``(in_kept, out_kept)`` per map of the
    call's ``LayerNode`` (``budget.PlanCost``)."""
    from .graph.handlers.registry import get_handler
    handler = get_handler(layer)
    n = handler.macs(layer, call, kept) if handler is not None else None
    if n is not None:
        return int(n)
    if not isinstance(layer, keras.layers.Layer):
        return 0          # a keras.ops node whose handler counts nothing
    in_kept, out_kept = (None, None) if kept is None else (kept[0][0], kept[1][0])
    return layer_macs(layer, call.in_shapes[0], call.out_shapes[0], in_kept, out_kept)


def layer_nodes(fn, prefix="", ops=False):
    """``(layer, name, keras node)`` of every layer call of the functional
    graph ``fn`` with tensor inputs and outputs, nested models walked (names
    ``"outer/inner"``); with ``ops``, the keras.ops nodes too (a matmul of
    hand-written attention costs MACs)."""
    from .graph.functional_view import graph_of
    for depth in fn._nodes_by_depth:
        for node in fn._nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            if isinstance(op, keras.Model):
                yield from layer_nodes(graph_of(op), prefix + op.name + "/", ops)
                continue
            if not ops and not isinstance(op, keras.layers.Layer):
                continue
            if not node.arguments.keras_tensors or not node.outputs:
                continue
            yield op, prefix + op.name, node


def layer_calls(fn, prefix=""):
    """``(layer, name, in_shape, out_shape)`` of every layer call of the
    functional graph ``fn``, nested models walked (names ``"outer/inner"``)."""
    for op, name, node in layer_nodes(fn, prefix):
        yield (op, name, tuple(node.arguments.keras_tensors[0].shape),
               tuple(node.outputs[0].shape))


def count_params(model, trainable_only=None) -> int:
    """Number of parameters: trainable ones with ``trainable_only=True``
    (what pruning reduces and ``target_params`` budgets), all weights
    (``keras.Model.count_params()``, BN moving statistics included) with
    ``False``.

    Pass ``trainable_only`` explicitly: without it, trainable weights are
    counted as before, with a ``DeprecationWarning`` (Keras' namesake counts
    all weights; the keyword will become required).

    Example:
        >>> inp = keras.Input((4,))
        >>> m = keras.Model(inp, keras.layers.BatchNormalization()(keras.layers.Dense(2)(inp)))
        >>> count_params(m, trainable_only=True), count_params(m, trainable_only=False)
        (14, 18)
        >>> m.count_params()
        18
    """
    if trainable_only is None:
        warnings.warn(
            "count_params(model) counts trainable weights only, unlike "
            "keras.Model.count_params() (all weights); pass trainable_only=True "
            "(or False) explicitly: the keyword will become required.",
            DeprecationWarning, stacklevel=2)
        trainable_only = True
    ws = model.trainable_weights if trainable_only else model.weights
    return int(sum(math.prod(w.shape) for w in ws))
