"""Imports every built-in handler module (each registers its handlers)."""

from . import (conv, keras_hub, merge, normalization, ops, passthrough,  # noqa: F401
               mixing, recurrent, reshape, wrappers)
# transformers
from . import attention, attention_ops, einsum_dense, embedding  # noqa: F401,E402
from . import keras_hub_vit, rebuilt  # noqa: F401,E402
from . import probed  # noqa: F401,E402  (last: a fallback for users' own layers)
