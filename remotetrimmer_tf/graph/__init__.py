"""Channel dependency graph of Keras 3 functional models.

Public names: ``DependencyGraph`` (``groups``, ``nodes``, ``groups_of``...),
``ChannelGroup``, ``Member``, ``LayerNode``; for handlers ``LayerHandler``,
``register_handler``, ``get_handler``, ``WeightAxes``, ``weight_axes_of``,
``NodeView`` and ``GraphBuilder`` (the ``ctx`` of ``propagate``);
``register_activation``, ``activation_kind``; ``functional_view``,
``graph_of``, ``inlined_layers``; ``silence_dropped``.
"""

from .builder import GraphBuilder, LayerNode, NodeView
from .channel_group import ChannelGroup, Member
from .dependency_graph import APPROXIMATIONS, DependencyGraph, check_approximate
from .dead_channels import silence_dropped
from .functional_view import functional_view, graph_of, inlined_layers
from .handlers.activations import activation_kind, register_activation
from .handlers.registry import LayerHandler, get_handler, register_handler, weight_axes_of
from .handlers.weight_axes import WeightAxes

__all__ = ["DependencyGraph", "ChannelGroup", "Member", "LayerNode", "LayerHandler",
           "register_handler", "get_handler", "weight_axes_of", "WeightAxes",
           "NodeView", "GraphBuilder", "functional_view", "graph_of",
           "inlined_layers", "register_activation", "activation_kind",
           "APPROXIMATIONS", "check_approximate", "silence_dropped"]
