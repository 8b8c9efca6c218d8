"""Registry of per-layer handlers: the only place layer-specific knowledge lives.

A handler tells the dependency graph how a layer maps the channels (last axis)
of its inputs to the channels of its outputs (``propagate``), declares which
axes of the layer's weights carry those channels (``weight_axes``: read by
the surgeon's slicing, the importance criteria and MAC counting), and tells
the surgeon how the layer's config changes once channels are removed
(``prune``).

Channel maps: every symbolic tensor carries an int array ``m`` of length
``C`` (its last-axis size); ``m[c]`` is the id of the *channel atom* at
position ``c``. Two positions holding atoms that are coupled (``ctx.couple``)
are always kept or removed together. A handler's ``propagate`` receives the
maps of the node's input tensors and returns maps for its outputs; ``ctx`` is
a ``graph.builder.GraphBuilder``.

The built-in handlers register themselves when this package is imported
(``handlers/__init__.py`` imports ``builtin``); this module imports none of
them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .weight_axes import WeightAxes, slice_weights

_REGISTRY: Dict[Any, "LayerHandler"] = {}
# Asked, in order, for an object no registered class matches (``probed``:
# a user's layer proven to act channel by channel).
_FALLBACKS: List[Callable[[Any], Optional["LayerHandler"]]] = []


class LayerHandler:
    """Base class for layer handlers.

    Override ``propagate`` (graph); for a layer with weights whose shape
    depends on the channels, ``weight_axes`` (then the default ``prune``
    slices them); override ``prune`` too when the config holds a width
    (``units``, ``filters``...).

    Example:
        >>> class ScaleHandler(LayerHandler):      # per-channel weight (C,)
        ...     def propagate(self, node, ctx):
        ...         ctx.channelwise(node, node.in_maps[0])
        ...         return [node.in_maps[0]]
        ...     def weight_axes(self, layer):
        ...         return {0: WeightAxes(out_axis=0, in_axis=0)}
        >>> h = ScaleHandler()
        >>> w = [np.arange(3.0)]
        >>> h.prune(None, {}, w, [np.array([True, False, True])],
        ...         [np.array([True, False, True])])[1][0].tolist()
        [0.0, 2.0]
    """

    #: True when the handler does not depend on where a tensor keeps its
    #: channels: it is then used on channels_first tensors too, seeing every
    #: shape channels-last (``graph.layout``). Layers with a ``data_format``
    #: follow it whatever this says.
    follows_channels_first = False

    def propagate(self, node, ctx) -> List[np.ndarray]:
        """Return the channel maps of ``node``'s outputs.

        Args:
            node: a ``NodeView`` (``layer``, ``name``, ``in_maps``,
                ``in_shapes``, ``out_shapes``, ``args``, ``kwargs``).
            ctx: the ``GraphBuilder``: ``ctx.fresh``, ``ctx.couple``,
                ``ctx.freeze``, ``ctx.opaque``, ``ctx.producer``,
                ``ctx.channelwise``, ``ctx.consumer``, ``ctx.allows``,
                ``ctx.approximate``.
        """
        raise NotImplementedError

    def weight_axes(self, layer) -> Dict[int, WeightAxes]:
        """``{weight index: WeightAxes(out_axis, in_axis, per)}`` of ``layer``.

        The one declaration of which axes of which weights carry the layer's
        output / input channels (see ``handlers.weight_axes``): the surgeon
        slices them, ``l1``/``l2``/``fpgm``/``taylor`` read a producer's
        filters on ``out_axis``, ``count_macs`` counts the weights with
        ``per``, dead channels zero the ``in_axis`` rows. Default: no weight
        depends on the channels.
        """
        return {}

    def input_channel_axes(self, layer) -> Dict[int, int]:
        """``{weight index: axis}`` of the weights that read input channels.

        Derived from ``weight_axes`` (an ``in_axis`` that is not also the
        ``out_axis``): a channel ``c`` whose rows on these axes are zero in
        every layer that reads it has no effect on the output;
        ``graph.silence_dropped`` uses this to make exactly removable
        ("dead") channels.
        """
        return {i: a.in_axis for i, a in self.weight_axes(layer).items()
                if a.in_axis is not None and a.in_axis != a.out_axis}

    # ---- hooks for layers whose channels the weight_axes cannot say alone
    # (attention: heads inside the layer, several inputs); default: none.
    def slot_filters(self, layer, slot: str, values: List[np.ndarray]):
        """``(channels, fan)`` rows of ``values`` (arrays in ``layer.weights``
        order: the weights, or their gradients) that make channel ``c`` of
        the layer's ``slot`` (``Member.slot``, e.g. ``"heads"``): what
        ``l1`` / ``l2`` / ``fpgm`` / ``taylor`` score. None: not scorable."""
        return None

    def silence(self, layer, slot: str, weights: List[np.ndarray], rows):
        """``weights`` with every entry that reads channels ``rows`` of the
        layer's ``slot`` set to zero (``graph.silence_dropped``); the default
        knows no slot."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot silence channels of slot {slot!r} of "
            f"layer '{getattr(layer, 'name', '?')}'.")

    def macs(self, layer, call, kept=None) -> Optional[int]:
        """Multiply-accumulates of one call when the ``weight_axes`` cannot say
        them (attention: QKᵀ and AV over the tokens), else None (default).

        Args:
            layer: the layer.
            call: a ``NodeView`` of the call (``in_shapes``, ``out_shapes``,
                ``args`` / ``kwargs`` with the symbolic inputs).
            kept: None (every channel), or ``(in_kept, out_kept)``: kept
                channel counts of the ``LayerNode``'s ``in_maps`` (inner
                maps last) and ``out_maps``.
        """
        return None

    def prune(self, layer, config: dict, weights: List[np.ndarray],
              in_masks: Sequence[np.ndarray], out_masks: Sequence[np.ndarray]
              ) -> Tuple[dict, List[np.ndarray]]:
        """Return the new ``config`` and ``weights`` given kept-channel masks.

        ``in_masks[i]`` / ``out_masks[i]`` are boolean arrays over the last
        axis of the node's i-th input / output tensor. ``config`` is a copy
        that may be modified in place. Default: the weights are sliced along
        their ``weight_axes`` (first input / output), the config is kept.
        """
        axes = self.weight_axes(layer)
        if not axes:
            return config, weights
        return config, slice_weights(axes, weights, in_masks[0] if in_masks else None,
                                     out_masks[0] if out_masks else None,
                                     getattr(layer, "name", "?"))


def _key(layer_class):
    if isinstance(layer_class, str):
        return layer_class
    if isinstance(layer_class, type):
        return layer_class
    raise TypeError(
        f"register_handler expects a class or a 'module.ClassName' string, got "
        f"{layer_class!r}.")


def register_handler(layer_class, handler: LayerHandler, override: bool = True):
    """Register ``handler`` for ``layer_class`` (and its subclasses).

    Args:
        layer_class: the layer/operation class, or its qualified name
            ``"module.ClassName"`` (or bare ``"ClassName"`` as a last resort).
        handler: a ``LayerHandler`` instance (a subclass is instantiated).
        override: replace an existing registration (default True).

    Example:
        >>> register_handler(MyScale, ScaleHandler())   # doctest: +SKIP
    """
    if isinstance(handler, type) and issubclass(handler, LayerHandler):
        handler = handler()
    if not isinstance(handler, LayerHandler):
        raise TypeError(f"handler must be a LayerHandler instance, got {handler!r}.")
    key = _key(layer_class)
    if not override and key in _REGISTRY:
        return _REGISTRY[key]
    _REGISTRY[key] = handler
    return handler


def get_handler(obj):
    """The handler for a layer/operation instance, or None if unknown."""
    for cls in type(obj).__mro__:
        h = _REGISTRY.get(cls)
        if h is not None:
            return h
        h = _REGISTRY.get(f"{cls.__module__}.{cls.__qualname__}")
        if h is not None:
            return h
        h = _REGISTRY.get(cls.__name__)
        if h is not None:
            return h
    for fallback in _FALLBACKS:
        h = fallback(obj)
        if h is not None:
            return h
    return None


def register_fallback(fallback: Callable[[Any], Optional[LayerHandler]]):
    """Ask ``fallback(obj)`` for a handler when no registered class matches
    ``obj`` (it returns a ``LayerHandler`` or None)."""
    if fallback not in _FALLBACKS:
        _FALLBACKS.append(fallback)
    return fallback


def weight_axes_of(layer) -> Dict[int, WeightAxes]:
    """The declared ``weight_axes`` of ``layer`` (``{}`` without a handler)."""
    handler = get_handler(layer)
    return handler.weight_axes(layer) if handler is not None else {}
