"""A sub-layer called on constants, kept as a node of a traced graph.

A composite layer may call one of its sub-layers on values that do not
depend on its inputs: the keras.io ViT's ``PatchEncoder`` adds
``position_embedding(ops.arange(num_patches))`` to its projected patches.
Traced on symbolic tensors, that call would run once and leave a constant
in the graph (its weights frozen into it, no longer trained, never pruned).
``ConstantCall`` keeps it a layer: it holds (a copy of) the sub-layer and
the constant inputs, and is called on a tensor of the graph that only places
it there (its values are not read). It saves and reloads with its layer.

Example:
    >>> emb = keras.layers.Embedding(4, 3)
    >>> node = ConstantCall(emb, [np.arange(4)[None]])
    >>> tuple(node(keras.Input((4, 2))).shape)
    (1, 4, 3)
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["ConstantCall"]


@keras.saving.register_keras_serializable("remotetrimmer_tf")
class ConstantCall(keras.layers.Layer):
    """``layer(*constants)``; its own input (an anchor) is not read.

    Args:
        layer: the layer (or its serialized config).
        constants: the arrays it is called on.
    """

    def __init__(self, layer, constants, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        self.inner = layer
        self.constants = [np.asarray(c) for c in constants]

    def build(self, anchor_shape=None):
        if not self.inner.built:
            self.inner.build(*[c.shape for c in self.constants])

    def call(self, anchor):
        return self.inner(*[keras.ops.convert_to_tensor(c) for c in self.constants])

    def compute_output_spec(self, anchor):
        return self.inner.compute_output_spec(
            *[keras.KerasTensor(c.shape, dtype=str(c.dtype)) for c in self.constants])

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.inner),
                "constants": [{"value": c.tolist(), "dtype": str(c.dtype)}
                              for c in self.constants]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["constants"] = [np.asarray(c["value"], dtype=c["dtype"])
                               for c in config["constants"]]
        return cls(**config)
