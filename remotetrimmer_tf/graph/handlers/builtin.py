"""Imports every built-in handler module (each registers its handlers)."""

from . import conv, keras_hub, merge, normalization, ops, passthrough, reshape  # noqa: F401
from . import attention, einsum_dense  # noqa: F401,E402  (issue 28: transformers)
