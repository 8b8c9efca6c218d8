"""Registry of per-layer handlers: the only place layer-specific knowledge lives.

A handler tells the dependency graph how a layer maps the channels (last axis)
of its inputs to the channels of its outputs, and tells the surgeon how to
slice the layer's config and weights once channels are removed.

Channel maps: every symbolic tensor carries an int array ``m`` of length
``C`` (its last-axis size); ``m[c]`` is the id of the *channel atom* at
position ``c``. Two positions holding atoms that are coupled (``ctx.couple``)
are always kept or removed together. A handler's ``propagate`` receives the
maps of the node's input tensors and returns maps for its outputs.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

_REGISTRY: Dict[Any, "LayerHandler"] = {}


class LayerHandler:
    """Base class for layer handlers.

    Override ``propagate`` (graph) and, for layers whose config or weights
    depend on the channel count, ``prune`` (surgery).

    Example:
        >>> class ScaleHandler(LayerHandler):      # per-channel weight (C,)
        ...     def propagate(self, node, ctx):
        ...         ctx.channelwise(node, node.in_maps[0])
        ...         return [node.in_maps[0]]
        ...     def prune(self, layer, config, weights, in_masks, out_masks):
        ...         m = in_masks[0]
        ...         config["units"] = int(m.sum())
        ...         return config, [w[..., m] for w in weights]
    """

    def propagate(self, node, ctx) -> List[np.ndarray]:
        """Return the channel maps of ``node``'s outputs.

        Args:
            node: a ``NodeView`` (``layer``, ``name``, ``in_maps``,
                ``in_shapes``, ``out_shapes``, ``args``, ``kwargs``).
            ctx: the graph builder; use ``ctx.fresh``, ``ctx.couple``,
                ``ctx.freeze``, ``ctx.producer``, ``ctx.channelwise``,
                ``ctx.consumer``.
        """
        raise NotImplementedError

    def input_channel_axes(self, layer) -> Dict[int, int]:
        """``{weight index: axis}`` of the weights that read input channels.

        A channel ``c`` whose rows on these axes are zero in every layer that
        reads it has no effect on the output; ``graph.silence_dropped`` uses
        this to make exactly removable ("dead") channels. Default: none.
        """
        return {}

    def prune(self, layer, config: dict, weights: List[np.ndarray],
              in_masks: Sequence[np.ndarray], out_masks: Sequence[np.ndarray]
              ) -> Tuple[dict, List[np.ndarray]]:
        """Return the new ``config`` and ``weights`` given kept-channel masks.

        ``in_masks[i]`` / ``out_masks[i]`` are boolean arrays over the last
        axis of the node's i-th input / output tensor. ``config`` is a copy
        that may be modified in place. Default: nothing depends on width.
        """
        return config, weights


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
    _ensure_builtin()
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
    return None


_BUILTIN_LOADED = False


def _ensure_builtin():
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    from . import builtin  # noqa: F401  (registers the built-in handlers)
