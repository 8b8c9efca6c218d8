"""Model cost: multiply-accumulates of conv/dense layers and parameter counts."""

from __future__ import annotations

import math
import warnings

import keras

__all__ = ["count_macs", "count_params"]


def _prod(xs, what):
    p = 1
    for x in xs:
        if x is None:
            raise ValueError(
                f"count_macs needs fixed shapes, but {what} has an unknown "
                "dimension; build the model with a fixed input shape.")
        p *= int(x)
    return p


def _layer_macs(layer, in_shape, out_shape):
    L = keras.layers
    name = layer.name
    if isinstance(layer, L.Dense):
        cin, cout = int(in_shape[-1]), int(out_shape[-1])
        return _prod(out_shape[1:-1], name) * cin * cout
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        k = _prod(layer.kernel_size, name)
        cin = int(in_shape[-1])
        mult = int(layer.depth_multiplier)
        spatial = _prod(out_shape[1:-1], name)
        return spatial * k * cin * mult + spatial * cin * mult * int(out_shape[-1])
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        k = _prod(layer.kernel_size, name)
        return _prod(out_shape[1:-1], name) * k * int(out_shape[-1])
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        k = _prod(layer.kernel_size, name)
        return _prod(in_shape[1:-1], name) * k * int(in_shape[-1]) * int(out_shape[-1])
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        k = _prod(layer.kernel_size, name)
        groups = int(getattr(layer, "groups", 1) or 1)
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            cin, spatial, cout = int(in_shape[1]), _prod(out_shape[2:], name), int(out_shape[1])
        else:
            cin, spatial, cout = int(in_shape[-1]), _prod(out_shape[1:-1], name), int(out_shape[-1])
        return spatial * k * (cin // groups) * cout
    return 0


def _graph_of(model):
    from .graph.functional_view import _graph_of as graph_of, functional_view
    return graph_of(functional_view(model, check=False))


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
    total = 0
    for op, _, in_shape, out_shape in layer_calls(_graph_of(model)):
        if _uncounted(op):
            raise ValueError(
                f"count_macs: layer '{op.name}' ({type(op).__name__}) has a "
                "kernel but no handler, so its multiply-accumulates are unknown. "
                "Way out: register a handler for it (docs/custom_layers.md).")
        total += _layer_macs(op, in_shape, out_shape)
    return int(total)


def layer_calls(fn, prefix=""):
    """``(layer, name, in_shape, out_shape)`` of every layer call of the
    functional graph ``fn``, nested models walked (names ``"outer/inner"``)."""
    from .graph.functional_view import _graph_of as graph_of
    for depth in fn._nodes_by_depth:
        for node in fn._nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            if isinstance(op, keras.Model):
                yield from layer_calls(graph_of(op), prefix + op.name + "/")
                continue
            if not isinstance(op, keras.layers.Layer):
                continue
            ins = node.arguments.keras_tensors
            if not ins or not node.outputs:
                continue
            yield op, prefix + op.name, tuple(ins[0].shape), tuple(node.outputs[0].shape)


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
