"""Imports every built-in handler module (each registers its handlers)."""

from . import conv, keras_hub, merge, normalization, ops, passthrough, reshape  # noqa: F401
from . import attention, attention_ops, einsum_dense, embedding, keras_hub_vit, rebuilt  # noqa: F401,E402,E501  (issue 28)
