"""MultiHeadAttention and GroupedQueryAttention: whole heads, and the feature widths.

Inside the layer, ``H`` heads each project the query and key to ``key_dim``
channels and the value to ``value_dim``; the output projection reads the
``H × value_dim`` results. Removing head ``h`` (its query / key / value /
gate slices and the output projection's rows of that head) and rewriting
``num_heads`` gives exactly the model in which head ``h``'s value slice is
zero (its attention output is then 0, whatever its softmax): the heads are
prunable like channels. The graph sees them as the layer's inner ``"heads"``
map of ``H × key_dim`` channels (``head_dim`` for GQA) kept or dropped in
whole units: one head, or for ``GroupedQueryAttention`` one key/value head
together with the query heads that read it.

The layer's query / value / key widths and its output width are ordinary
channels: the query, value and key kernels read their input's channels
(``"query"``, ``"value"``, ``"key"`` slots), the output projection makes new
ones (``output_shape``; GroupedQueryAttention's output has the query's width,
so its output channels are the query's). Masks are frozen; a call that
returns the attention scores freezes the heads (the scores have a head axis).

Example:
    >>> inp = keras.Input((6, 8))
    >>> y = keras.layers.MultiHeadAttention(4, 2, name="mha")(inp, inp)
    >>> out = keras.layers.Dense(3)(keras.layers.Dense(8)(y))
    >>> from remotetrimmer_tf.graph import DependencyGraph
    >>> [g.units.shape for g in DependencyGraph(keras.Model(inp, out)).groups
    ...  if g.units is not None]
    [(4, 2)]
"""

from __future__ import annotations

import inspect
import math

import keras
import numpy as np

from .registry import LayerHandler, register_handler
from .weight_axes import WeightAxes

__all__ = ["MultiHeadAttentionHandler", "GroupedQueryAttentionHandler"]

_PROJ = ("query", "key", "value", "gate")
_READS = {"query": "query", "gate": "query", "key": "key", "value": "value"}
_INNER = ("query", "value", "key", "heads")      # order of the inner maps


def _roles(node):
    """``({"query": map, "value": map, "key": map}, other maps)`` of a call."""
    bound = inspect.signature(type(node.layer).call).bind_partial(
        None, *node.args, **node.kwargs).arguments
    tensors = [t for t in keras.tree.flatten((node.args, node.kwargs))
               if isinstance(t, keras.KerasTensor)]
    by_id = {}
    for t, m in zip(tensors, node.in_maps):
        by_id.setdefault(id(t), m)
    roles = {r: by_id.get(id(bound.get(r))) if isinstance(bound.get(r), keras.KerasTensor)
             else None for r in ("query", "value", "key")}
    if roles["key"] is None:
        roles["key"] = roles["value"]
    used = {id(bound[r]) for r in ("query", "value", "key")
            if isinstance(bound.get(r), keras.KerasTensor)}
    others = [m for t, m in zip(tensors, node.in_maps) if id(t) not in used]
    return roles, others, bound


def _shapes(layer, call):
    """``(query, value, key)`` shapes of a call (``call``: a ``NodeView``)."""
    bound = inspect.signature(type(layer).call).bind_partial(
        None, *call.args, **call.kwargs).arguments
    q, v = bound["query"].shape, bound["value"].shape
    k = bound["key"].shape if isinstance(bound.get("key"), keras.KerasTensor) else v
    return tuple(q), tuple(v), tuple(k)


def _layout(layer):
    """``[(weight index, projection, "kernel" | "bias")]`` of an attention layer."""
    out = []
    for i, w in enumerate(layer.weights):
        parts = w.path.split("/")
        if len(parts) >= 2 and parts[-1] in ("kernel", "bias") and \
                parts[-2] in _PROJ + ("attention_output",):
            out.append((i, parts[-2], parts[-1]))
    return out


class MultiHeadAttentionHandler(LayerHandler):
    """``keras.layers.MultiHeadAttention``: heads, query / value / key widths, output."""

    base = keras.layers.MultiHeadAttention

    # ---- what differs between MHA and GQA
    def heads(self, layer):
        """``(query heads, key/value heads, key dim, value dim)``."""
        return layer.num_heads, layer.num_heads, layer.key_dim, layer.value_dim

    def set_heads(self, layer, config, n_query):
        config["num_heads"] = int(n_query)

    def output_map(self, node, ctx, roles):
        out = ctx.fresh(node, node.out_channels(0))
        ctx.producer(node, out)
        return out

    def set_output(self, layer, config, n_query_in, n_out):
        shape = config.get("output_shape")
        if shape:
            config["output_shape"] = tuple(shape[:-1]) + (int(n_out),)
        elif n_out != n_query_in:
            config["output_shape"] = (int(n_out),)

    # ---- the graph
    def _problem(self, node, bound):
        layer = node.layer
        for name in ("call", "build", "_compute_attention"):
            if getattr(type(layer), name, None) is not getattr(self.base, name, None):
                return (f"{type(layer).__name__} '{node.name}' overrides {name}() of "
                        f"{self.base.__name__}, so its heads cannot be followed")
        if not layer.built or not _layout(layer):
            return f"attention layer '{node.name}' is not built"
        return None

    def propagate(self, node, ctx):
        roles, others, bound = _roles(node)
        why = self._problem(node, bound)
        if why or roles["query"] is None or roles["value"] is None:
            return ctx.opaque(node, why or f"attention layer '{node.name}': no query/value")
        for m in others:
            ctx.freeze(m, f"'{node.name}' reads this tensor as a mask, not as channels")
        hq, hkv, dk, _ = self.heads(node.layer)
        scores = bool(bound.get("return_attention_scores"))
        frozen = (f"'{node.name}' returns its attention scores, whose head axis "
                  "would change") if scores else None
        heads = ctx.fresh(node, hq * dk, frozen=frozen, out_index="heads")
        ctx.units(heads, hq // hkv * dk)
        ctx.producer(node, heads, slot="heads")
        ctx.consumer(node, heads, slot="heads")
        for slot in ("query", "value", "key"):
            ctx.consumer(node, roles[slot], slot=slot)
        ctx.inner(node, [roles[s] for s in _INNER[:3]] + [heads])
        outs = [self.output_map(node, ctx, roles)]
        for i in range(1, len(node.out_shapes)):
            outs.append(ctx.fresh(node, node.out_channels(i), frozen=frozen, out_index=i))
        return outs

    def weight_axes(self, layer):
        return {i: WeightAxes(out_axis=-1, per="output" if kind == "kernel" else None)
                for i, proj, kind in _layout(layer) if proj == "attention_output"}

    # ---- heads as channel masks
    def _head_masks(self, layer, mask):
        """``(query heads, kv heads)`` kept, from the inner heads map's mask."""
        hq, hkv, dk, _ = self.heads(layer)
        per_head = np.asarray(mask, dtype=bool).reshape(hq, dk)
        if not (per_head == per_head[:, :1]).all():
            raise ValueError(f"keep splits an attention head of layer '{layer.name}'; "
                             "keep or drop a head's channels together.")
        q = per_head[:, 0]
        return q, q.reshape(hkv, hq // hkv).any(axis=1)

    def prune(self, layer, config, weights, in_masks, out_masks):
        mq, mv, mk, mh = in_masks[-4:]
        q_heads, kv_heads = self._head_masks(layer, mh)
        inputs = {"query": mq, "key": mk, "value": mv}
        new = list(weights)
        for i, proj, kind in _layout(layer):
            w = np.asarray(weights[i])
            if proj == "attention_output":
                if kind == "kernel":
                    w = w[q_heads]
                w = w[..., out_masks[0]]
            else:
                keep = kv_heads if proj in ("key", "value") else q_heads
                if kind == "kernel":
                    w = w[inputs[_READS[proj]]][:, keep]
                else:
                    w = w[keep]
            new[i] = w
        self.set_heads(layer, config, int(q_heads.sum()))
        self.set_output(layer, config, int(mq.sum()), int(out_masks[0].sum()))
        return config, new

    # ---- importance, dead channels, costs
    def slot_filters(self, layer, slot, values):
        if slot != "heads":
            return None
        hq, hkv, dk, _ = self.heads(layer)
        g = hq // hkv
        rows = [[] for _ in range(hq)]
        for i, proj, kind in _layout(layer):
            w = np.asarray(values[i], dtype=np.float64)
            if proj == "attention_output" and kind == "bias":
                continue
            axis = 1 if kind == "kernel" and proj != "attention_output" else 0
            w = np.moveaxis(w, axis, 0)
            for h in range(hq):
                rows[h].append(w[h // g if proj in ("key", "value") else h].reshape(-1))
        per_head = np.stack([np.concatenate(r) for r in rows])
        return np.repeat(per_head, dk, axis=0)

    def silence(self, layer, slot, weights, rows):
        if slot not in _INNER:
            return super().silence(layer, slot, weights, rows)
        rows = np.asarray(rows, dtype=np.int64)
        new = [np.array(w) for w in weights]
        hq, hkv, dk, _ = self.heads(layer)
        for i, proj, kind in _layout(layer):
            if slot == "heads":
                dropped = np.zeros(hq, dtype=bool)
                dropped[np.unique(rows // dk)] = True
                if proj == "attention_output" and kind == "kernel":
                    new[i][dropped] = 0
                elif proj == "value":
                    kv = dropped.reshape(hkv, hq // hkv).all(axis=1)
                    if kind == "kernel":
                        new[i][:, kv] = 0
                    else:
                        new[i][kv] = 0
            elif slot in ("query", "value", "key") and kind == "kernel" and \
                    _READS.get(proj) == slot:
                new[i][rows] = 0
        return new

    def macs(self, layer, call, kept=None):
        q, v, k = _shapes(layer, call)
        hq, hkv, dk, dv = self.heads(layer)
        out = list(call.out_shapes[0][len(q) - 1:])
        dq, dvi, dki = q[-1], v[-1], k[-1]
        if kept is not None:
            g = hq // hkv
            dq, dvi, dki, n_heads = kept[0][-4:]
            hq = n_heads // dk
            hkv = hq // g
            out[-1] = kept[1][0]
        dims = [d for d in list(q[1:]) + list(k[1:]) + out if d is None]
        if dims:
            raise ValueError(f"count_macs needs fixed shapes, but attention layer "
                             f"'{layer.name}' sees query {q} and key {k}.")
        tq, tk = math.prod(q[1:-1]), math.prod(k[1:-1])
        attended = self._attended(layer, q, k)
        n_out = math.prod(out)
        proj = tq * dq * hq * dk + tk * dki * hkv * dk + tk * dvi * hkv * dv \
            + tq * hq * dv * n_out
        if any(p == "gate" for _, p, _ in _layout(layer)):
            proj += tq * dq * hq * dv
        return int(proj + attended * hq * (dk + dv))

    @staticmethod
    def _attended(layer, q, k):
        """Query positions × the key positions each attends to (QKᵀ per head
        and channel): ``T·S`` for tokens, more axes with ``attention_axes``."""
        axes = getattr(layer, "attention_axes", None) or tuple(range(1, len(q) - 1))
        axes = [a % len(q) for a in axes]
        rest = [i for i in range(1, len(q) - 1) if i not in axes]
        return math.prod(q[i] for i in rest) * math.prod(q[i] for i in axes) * \
            math.prod(k[i] for i in axes)


class GroupedQueryAttentionHandler(MultiHeadAttentionHandler):
    """``keras.layers.GroupQueryAttention``: a key/value head goes with its
    ``num_query_heads / num_key_value_heads`` query heads; the output has the
    query's width (its channels are the query's)."""

    base = keras.layers.GroupQueryAttention

    def heads(self, layer):
        return (layer.num_query_heads, layer.num_key_value_heads, layer.head_dim,
                layer.head_dim)

    def set_heads(self, layer, config, n_query):
        g = layer.num_query_heads // layer.num_key_value_heads
        config["num_query_heads"] = int(n_query)
        config["num_key_value_heads"] = int(n_query) // g

    def output_map(self, node, ctx, roles):
        ctx.producer(node, roles["query"])
        return roles["query"]

    def set_output(self, layer, config, n_query_in, n_out):
        """Nothing to set: the output's width follows the query's (one map)."""


register_handler(keras.layers.MultiHeadAttention, MultiHeadAttentionHandler())
register_handler(keras.layers.GroupQueryAttention, GroupedQueryAttentionHandler())
