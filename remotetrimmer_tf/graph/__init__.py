"""Channel dependency graph of Keras 3 functional models.

Public names: ``DependencyGraph``, ``ChannelGroup``, ``Member``,
``LayerHandler``, ``register_handler``, ``register_activation``,
``activation_kind``, ``functional_view``, ``silence_dropped``.
"""

from .channel_group import ChannelGroup, Member
from .dependency_graph import APPROXIMATIONS, DependencyGraph, NodeView
from .dead_channels import silence_dropped
from .functional_view import functional_view, inlined_layers
from .handlers.activations import activation_kind, register_activation
from .handlers.registry import LayerHandler, get_handler, register_handler

__all__ = ["DependencyGraph", "ChannelGroup", "Member", "LayerHandler",
           "register_handler", "get_handler", "NodeView", "functional_view",
           "inlined_layers", "register_activation", "activation_kind",
           "APPROXIMATIONS", "silence_dropped"]
