"""Per-layer handlers. See ``registry.LayerHandler`` and ``register_handler``."""

from .registry import LayerHandler, get_handler, register_handler

__all__ = ["LayerHandler", "get_handler", "register_handler"]
