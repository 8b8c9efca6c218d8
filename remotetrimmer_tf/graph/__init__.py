"""Channel dependency graph of Keras 3 functional models.

Public names: ``DependencyGraph``, ``ChannelGroup``, ``Member``,
``LayerHandler``, ``register_handler``.
"""

from .channel_group import ChannelGroup, Member
from .dependency_graph import DependencyGraph, NodeView
from .handlers.registry import LayerHandler, get_handler, register_handler

__all__ = ["DependencyGraph", "ChannelGroup", "Member", "LayerHandler",
           "register_handler", "get_handler", "NodeView"]
