"""keras.ops of hand-written attention (``q @ kᵀ``, ``softmax(..) @ v``,
``ops.dot_product_attention``): what they do to the channels.

- ``matmul(a, b)`` contracts ``a``'s last axis with ``b``'s second-to-last:
  output channel ``c`` is ``Σ_i a[.., i]·b[.., i, c]``, so the output's
  channels are ``b``'s (a pass-through of ``b``'s map) and ``a``'s last axis
  is consumed whole (frozen);
- ``dot_product_attention(q, k, v)``: the output's channels are ``v``'s; ``q``
  and ``k`` are contracted together and scaled by ``1/sqrt(their width)``,
  so they stay whole (frozen);
- ``einsum`` of tensors, ``image.extract_patches``: frozen (they mix the
  channels with other axes).

Example:
    >>> a, b = keras.Input((4, 6)), keras.Input((6, 5))
    >>> from remotetrimmer_tf.graph import DependencyGraph
    >>> y = keras.layers.Dense(3)(keras.ops.matmul(a, keras.layers.Dense(5)(b)))
    >>> [g.prunable for g in DependencyGraph(keras.Model([a, b], y)).groups]
    [False, False, True, False]
"""

from __future__ import annotations

import math

from keras.src.ops import nn as _nn
from keras.src.ops import numpy as _np_ops

from .registry import LayerHandler, register_handler


def _product(dims, layer):
    if any(d is None for d in dims):
        raise ValueError(f"count_macs needs fixed shapes, but op '{layer.name}' sees an "
                         "unknown size.")
    return int(math.prod(int(d) for d in dims))


class MatmulHandler(LayerHandler):
    """``a @ b``: the output carries ``b``'s channels; ``a``'s are consumed."""

    def propagate(self, node, ctx):
        if len(node.in_maps) != 2 or len(node.in_shapes[1]) < 2 or \
                node.out_channels(0) != node.in_maps[1].shape[0]:
            return ctx.opaque(node, f"op '{node.name}' multiplies over the channel axis")
        ctx.freeze(node.in_maps[0], f"op '{node.name}' contracts this tensor's last axis")
        return [node.in_maps[1]]

    def macs(self, layer, call, kept=None):
        """Every output entry sums over ``a``'s last axis."""
        out = list(call.out_shapes[0][1:])
        if kept is not None:
            out[-1] = kept[1][0]
        return _product(out + [call.in_shapes[0][-1]], layer)


class DotProductAttentionHandler(LayerHandler):
    """``dot_product_attention(q, k, v)``: the output carries ``v``'s channels."""

    def propagate(self, node, ctx):
        if len(node.in_maps) < 3 or node.out_channels(0) != node.in_maps[2].shape[0]:
            return ctx.opaque(node, f"op '{node.name}' attends over an unknown layout")
        why = f"op '{node.name}' contracts the query and key channels (scaled by their width)"
        ctx.freeze(node.in_maps[0], why)
        ctx.freeze(node.in_maps[1], why)
        for m in node.in_maps[3:]:
            ctx.freeze(m, f"'{node.name}' reads this tensor as a bias or mask")
        return [node.in_maps[2]]

    def macs(self, layer, call, kept=None):
        """``QKᵀ`` and ``AV`` for (batch, tokens, heads, channels) tensors."""
        q, k, v = (call.in_shapes[i] for i in range(3))
        dv = v[-1] if kept is None else kept[0][2]
        return _product([q[1], k[1], q[2], q[3] + dv], layer)


class FrozenOpHandler(LayerHandler):
    def propagate(self, node, ctx):
        return ctx.opaque(node, f"op '{node.name}' ({type(node.layer).__name__}) may mix "
                                "the channels")


register_handler(_np_ops.Matmul, MatmulHandler())
register_handler(_nn.DotProductAttention, DotProductAttentionHandler())
for _n in ("Einsum", "Tensordot", "Dot", "Inner", "Outer"):
    if hasattr(_np_ops, _n):
        register_handler(getattr(_np_ops, _n), FrozenOpHandler())
# image patches flattened into vectors (a ViT's patchify): pixels and channels mixed
register_handler("keras.src.ops.image.ExtractPatches", FrozenOpHandler())
