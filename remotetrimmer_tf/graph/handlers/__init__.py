"""Per-layer handlers. See ``registry.LayerHandler`` and ``register_handler``.

Importing this package registers the built-in handlers (``builtin``); the
registry itself imports none of them, so there is no import circle.
"""

from .registry import LayerHandler, get_handler, register_handler, weight_axes_of
from .weight_axes import WeightAxes
from . import builtin  # noqa: F401,E402  (registers the built-in handlers)

__all__ = ["LayerHandler", "get_handler", "register_handler", "weight_axes_of",
           "WeightAxes"]
