"""Imports every built-in handler module (each registers its handlers)."""

from . import conv, merge, normalization, ops, passthrough, reshape  # noqa: F401
