"""Imports every built-in handler module (each registers its handlers)."""

from . import (conv, keras_hub, merge, normalization, ops, passthrough,  # noqa: F401
               mixing, recurrent, reshape, wrappers)
