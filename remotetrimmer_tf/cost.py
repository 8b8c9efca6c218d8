"""What a model, or a pruning plan of it, costs: multiply-accumulates and parameters.

:func:`count_macs` / :func:`count_params` count a built model. MACs are read
from each layer handler's ``weight_axes`` declaration (see
``graph.handlers.weight_axes``), so a custom layer registered with one
handler is counted like a built-in one; a handler whose layer costs more than
its kernels say (attention: the projections plus QKᵀ and AV over the tokens;
EinsumDense) counts it with its ``macs`` hook (``call_macs``).

:class:`PlanCost` reads a ``DependencyGraph`` once and then counts, for any
``keep`` plan (``{group: kept indices}``), the MACs and trainable parameters
the pruned model would have -- the numbers ``count_macs`` / ``count_params``
give on the model the surgeon builds, without building it:

- MACs: every conv / dense call is counted with :func:`layer_macs` on its
  original shapes, with the number of kept positions of its input and output
  channel maps.
- Parameters: each layer's handler is asked once (``handler.prune`` on
  zero-cost placeholder weights) how its weight shapes shrink when one
  channel of an input or output goes (every position of that channel: a
  grouped convolution carries each channel once per group); the axes are
  affine in the kept positions, so a weight's size is the product of them.
"""

from __future__ import annotations

import copy
import math
import warnings

import keras
import numpy as np

from .errors import PruningError

__all__ = ["count_macs", "count_params", "layer_macs", "layer_calls", "PlanCost",
           "channels_follow_groups", "call_macs", "layer_nodes", "call_view", "channels_of"]


def _prod(xs, what):
    p = 1
    for x in xs:
        if x is None:
            raise PruningError(
                f"count_macs needs fixed shapes, but {what} has an unknown "
                "dimension; build the model with a fixed input shape.")
        p *= int(x)
    return p


def _positions(layer, shape, what):
    """Spatial positions of a tensor of ``shape`` (batch and channel axes out)."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return _prod(shape[2:], what)
    return _prod(shape[1:-1], what)


def channels_of(layer, shape) -> int:
    """The channel count of a tensor of ``shape`` that ``layer`` reads or
    writes (axis 1 for a channels_first layer, else the last axis)."""
    first = getattr(layer, "data_format", None) == "channels_first" and len(shape) >= 3
    return int(shape[1] if first else shape[-1])


def layer_macs(layer, in_shape, out_shape, in_kept=None, out_kept=None) -> int:
    """Multiply-accumulates of one call of ``layer`` (batch of one).

    Read from the layer handler's ``weight_axes``: every weight declared
    ``per="output"`` (``"input"``) is applied once at each output (input)
    position, so it costs its size times that many positions. With
    ``in_kept`` / ``out_kept`` the cost is that of the same call with only
    that many input / output channels (last axis) kept: each channel axis of
    those weights shrinks in proportion (:class:`PlanCost`).

    Args:
        layer: the layer (a layer without a declared kernel costs 0).
        in_shape / out_shape: shapes of its first input / output, batch first.
        in_kept / out_kept: kept channel counts (default: all).

    Example:
        >>> conv = keras.layers.Conv2D(4, 3, padding="same")
        >>> _ = conv(keras.Input((8, 8, 3)))
        >>> layer_macs(conv, (None, 8, 8, 3), (None, 8, 8, 4))     # 8*8 * 3*3*3 * 4
        6912
        >>> layer_macs(conv, (None, 8, 8, 3), (None, 8, 8, 4), out_kept=2)
        3456
    """
    from .graph.handlers.registry import weight_axes_of
    total = 0
    weights = layer.weights
    for i, ax in weight_axes_of(layer).items():
        if ax.per is None:
            continue
        shape = [int(d) for d in weights[i].shape]
        cuts = [(ax.out_axis, out_kept, out_shape)]
        if ax.in_axis != ax.out_axis:       # else a per-channel axis: once
            cuts.append((ax.in_axis, in_kept, in_shape))
        for axis, kept, full in cuts:
            if axis is not None and kept is not None:
                shape[axis] = shape[axis] * int(kept) // channels_of(layer, full)
        where = in_shape if ax.per == "input" else out_shape
        total += _positions(layer, where, layer.name) * math.prod(shape)
    return total


def _uncounted(layer):
    """A layer whose MACs this module cannot know: no handler, and a kernel
    (a weight of rank >= 2) it multiplies with in ways only its call knows."""
    from .graph.handlers.registry import get_handler
    if get_handler(layer) is not None:
        return False
    return any(len(w.shape) >= 2 for w in layer.weights)


def count_macs(model) -> int:
    """Conv + dense multiply-accumulates for one input at the model's input shape.

    Args:
        model: a functional or Sequential-with-Input Keras model, a keras-hub
            Backbone / task or any functional subclass (nested sub-models are
            counted once per call; composite layers through the layers they
            are made of). A layer it cannot count (no handler, but a kernel)
            raises instead of counting 0.

    Returns:
        int: MACs for a batch of one.

    Example:
        >>> inp = keras.Input((8, 8, 3))
        >>> m = keras.Model(inp, keras.layers.Conv2D(4, 3, padding="same")(inp))
        >>> count_macs(m)   # 8*8 * 3*3*3 * 4
        6912
    """
    from .graph.functional_view import functional_view, graph_of
    total = 0
    for op, name, node in layer_nodes(graph_of(functional_view(model, check=False)),
                                      ops=True):
        if isinstance(op, keras.layers.Layer) and _uncounted(op):
            raise PruningError(
                f"count_macs: layer '{op.name}' ({type(op).__name__}) has a "
                "kernel but no handler, so its multiply-accumulates are unknown. "
                "Way out: register a handler for it (docs/custom_layers.md).")
        total += call_macs(op, call_view(op, name, node))
    return int(total)


def call_view(op, name, node):
    """A ``graph.NodeView`` of one Keras node (shapes, args; no channel maps)."""
    from .graph.builder import NodeView
    return NodeView(op, name, None, [tuple(t.shape) for t in node.arguments.keras_tensors],
                    [tuple(t.shape) for t in node.outputs], node.arguments.args,
                    node.arguments.kwargs, [], 0)


def call_macs(layer, call, kept=None) -> int:
    """Multiply-accumulates of one call (``call``: a ``NodeView``): the layer
    handler's ``macs`` hook when it has one, else ``layer_macs`` of the first
    input / output. ``kept``: None or ``(in_kept, out_kept)`` per map of the
    call's ``LayerNode`` (``budget.PlanCost``)."""
    from .graph.handlers.registry import get_handler
    handler = get_handler(layer)
    n = handler.macs(layer, call, kept) if handler is not None else None
    if n is not None:
        return int(n)
    if not isinstance(layer, keras.layers.Layer):
        return 0          # a keras.ops node whose handler counts nothing
    in_kept, out_kept = (None, None) if kept is None else (kept[0][0], kept[1][0])
    return layer_macs(layer, call.in_shapes[0], call.out_shapes[0], in_kept, out_kept)


def layer_nodes(fn, prefix="", ops=False):
    """``(layer, name, keras node)`` of every layer call of the functional
    graph ``fn`` with tensor inputs and outputs, nested models walked (names
    ``"outer/inner"``); with ``ops``, the keras.ops nodes too (a matmul of
    hand-written attention costs MACs)."""
    from .graph.functional_view import graph_of
    for depth in fn._nodes_by_depth:
        for node in fn._nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            if isinstance(op, keras.Model):
                yield from layer_nodes(graph_of(op), prefix + op.name + "/", ops)
                continue
            if not ops and not isinstance(op, keras.layers.Layer):
                continue
            if not node.arguments.keras_tensors or not node.outputs:
                continue
            yield op, prefix + op.name, node


def layer_calls(fn, prefix=""):
    """``(layer, name, in_shape, out_shape)`` of every layer call of the
    functional graph ``fn``, nested models walked (names ``"outer/inner"``)."""
    for op, name, node in layer_nodes(fn, prefix):
        yield (op, name, tuple(node.arguments.keras_tensors[0].shape),
               tuple(node.outputs[0].shape))


def count_params(model, trainable_only=None) -> int:
    """Number of parameters: trainable ones with ``trainable_only=True``
    (what pruning reduces and ``target_params`` budgets), all weights
    (``keras.Model.count_params()``, BN moving statistics included) with
    ``False``.

    Pass ``trainable_only`` explicitly: without it, trainable weights are
    counted as before, with a ``DeprecationWarning`` (Keras' namesake counts
    all weights; the keyword will become required).

    Example:
        >>> inp = keras.Input((4,))
        >>> m = keras.Model(inp, keras.layers.BatchNormalization()(keras.layers.Dense(2)(inp)))
        >>> count_params(m, trainable_only=True), count_params(m, trainable_only=False)
        (14, 18)
        >>> m.count_params()
        18
    """
    if trainable_only is None:
        warnings.warn(
            "count_params(model) counts trainable weights only, unlike "
            "keras.Model.count_params() (all weights); pass trainable_only=True "
            "(or False) explicitly: the keyword will become required.",
            DeprecationWarning, stacklevel=2)
        trainable_only = True
    ws = model.trainable_weights if trainable_only else model.weights
    return int(sum(math.prod(w.shape) for w in ws))


def channels_follow_groups(layer, in_shape):
    """A ``Conv(groups=C)`` with one input channel per group (its groups follow C)."""
    groups = int(getattr(layer, "groups", 1) or 1)
    return groups > 1 and in_shape[-1] is not None and groups == int(in_shape[-1])


class PlanCost:
    """MACs and trainable parameters of a pruning plan, counted analytically.

    Args:
        graph: a ``DependencyGraph`` of the model that will be pruned.

    Attributes:
        mac_records: ``(layer, in_shape, out_shape, in map id, out map id,
            full MACs)`` of every counted call (map ids index :meth:`kept`;
            None: that side never shrinks).
        map_spread: per counted map, the positions each of its channels takes
            (a grouped convolution's ``groups``; 1 for most maps).

    Example:

    ```python
    g = DependencyGraph(model)
    cost = PlanCost(g)
    cost.macs({})          # == count_macs(model)
    cost.macs(keep)        # == count_macs(prune_channels(model, keep, graph=g))
    ```
    """

    def __init__(self, graph):
        self.graph = graph
        self.model = graph.model
        self._maps, self._index = [], {}   # channel-id arrays of every map counted on
        self._hook_records = _hook_records(self.model, graph.nodes, self._map_id)
        self.mac_records = self._mac_calls({r[1] for r in self._hook_records})
        self._param_const, self._param_terms = self._param_axes()

    def _map_id(self, m):
        key = id(m)
        if key not in self._index:
            self._index[key] = len(self._maps)
            self._maps.append(self.graph.channel_ids(m))
        return self._index[key]

    @property
    def map_spread(self):
        out = []
        for ids in self._maps:
            counts = np.unique(ids, return_counts=True)[1]
            out.append(int(counts[0]) if counts.size and (counts == counts[0]).all() else 1)
        return out

    def _mac_calls(self, hooked):
        """One record per conv / dense call (see ``mac_records``); the calls in
        ``hooked`` count their MACs with their handler's hook instead."""
        from .graph.functional_view import graph_of
        records = []
        for layer, name, in_shape, out_shape in layer_calls(graph_of(self.model)):
            if name in hooked:
                continue
            full = layer_macs(layer, in_shape, out_shape)
            if not full:
                continue
            info = self.graph.nodes.get(name)
            if info is None or not info.in_maps or not info.out_maps:
                records.append((layer, in_shape, out_shape, None, None, full))
                continue
            mi, mo = info.in_maps[0], info.out_maps[0]
            ii = self._map_id(mi) if len(mi) == channels_of(layer, in_shape) else None
            oo = self._map_id(mo) if len(mo) == channels_of(layer, out_shape) else None
            records.append((layer, in_shape, out_shape, ii, oo, full))
        return records

    def _param_axes(self):
        """``(constant, terms)``: per trainable weight whose shape follows a
        map, ``(base shape, [(map id, positions, shrink per position)])``."""
        trainable = {id(w) for w in self.model.trainable_weights}
        seen, const, terms_all = set(), 0, []
        for info in self.graph.nodes.values():
            weights = [] if info.nested else list(getattr(info.layer, "weights", None) or [])
            flags = []
            for w in weights:
                flags.append(id(w) not in seen and id(w) in trainable)
                seen.add(id(w))
            if not any(flags):
                continue
            shapes = [tuple(int(d) for d in w.shape) for w in weights]
            maps = list(info.in_maps) + list(info.out_maps)
            probes = self._probe(info, shapes)
            for k, (shape, flag) in enumerate(zip(shapes, flags)):
                terms = [(self._map_id(m), len(m), slope[k]) for m, slope in zip(maps, probes)
                         if slope is not None and np.any(slope[k])] if flag else None
                if terms:
                    terms_all.append((np.asarray(shape, np.float64), terms))
                elif flag:
                    const += math.prod(shape)
        return const, terms_all

    def _probe(self, info, shapes):
        """Per input / output map, per weight: how much each axis shrinks per
        position removed (one channel removed: every position it takes)."""
        layer, handler, n_in = info.layer, info.handler, len(info.in_maps)
        maps = list(info.in_maps) + list(info.out_maps)
        try:
            base_cfg = layer.get_config()
        except Exception:  # noqa: BLE001 - some layers have no config; handlers may not need it
            base_cfg = {}
        out = []
        for j, m in enumerate(maps):
            if handler is None or len(m) < 2:
                out.append(None)
                continue
            masks = [np.ones(len(x), bool) for x in maps]
            ids = self.graph.channel_ids(m)
            drop = _first_unit(self.graph, m)      # a whole attention head, or one channel
            masks[j] = ~np.isin(ids, ids[drop])
            ws = [np.broadcast_to(np.zeros((), np.float32), s) for s in shapes]
            _, new = handler.prune(layer, copy.deepcopy(base_cfg), ws,
                                   masks[:n_in], masks[n_in:])
            if len(new) != len(shapes):
                raise PruningError(
                    f"PlanCost: the handler of layer '{layer.name}' returned "
                    f"{len(new)} weights for {len(shapes)}; parameters cannot be "
                    "counted without surgery.")
            gone = len(m) - int(masks[j].sum())
            out.append([(np.asarray(s, np.float64) - np.shape(w)) / gone
                        for s, w in zip(shapes, new)])
        return out

    # ------------------------------------------------------------- counting
    def kept(self, keep):
        """Kept positions of every counted channel map (list of ints)."""
        mask = self.graph.channel_mask(keep)
        return [int(mask[c].sum()) for c in self._maps]

    def macs(self, keep):
        """MACs (batch 1) the model pruned by ``keep`` would have."""
        kept = self.kept(keep)
        total = 0
        for layer, in_shape, out_shape, ii, oo, full in self.mac_records:
            if ii is None and oo is None:
                total += full
                continue
            n_out = kept[oo] if oo is not None else channels_of(layer, out_shape)
            if channels_follow_groups(layer, in_shape):   # its groups follow the channels
                total += full // channels_of(layer, out_shape) * n_out
                continue
            n_in = kept[ii] if ii is not None else channels_of(layer, in_shape)
            total += layer_macs(layer, in_shape, out_shape, n_in, n_out)
        for layer, _, view, ins, outs in self._hook_records:
            counts = None if ins is None else ([kept[i] for i in ins], [kept[o] for o in outs])
            total += call_macs(layer, view, counts)
        return int(total)

    def params(self, keep):
        """Trainable parameters the model pruned by ``keep`` would have."""
        kept = self.kept(keep)
        total = self._param_const
        for base, terms in self._param_terms:
            dims = base.copy()
            for mid, n, slope in terms:
                dims = dims - slope * (n - kept[mid])
            total += int(np.prod(np.rint(dims).astype(np.int64)))
        return int(total)

    def count(self, kind, keep):
        """``macs`` or ``params`` of ``keep``."""
        if kind == "macs":
            return self.macs(keep)
        if kind == "params":
            return self.params(keep)
        raise PruningError(f"PlanCost: unknown budget kind {kind!r}; use 'macs' or 'params'.")


def _first_unit(graph, m):
    """Positions of map ``m`` holding the unit of its position 0 (a whole
    attention head where its group has ``units``; else position 0)."""
    gid = graph.group_ids(m)
    units = graph.groups[int(gid[0])].units
    if units is None:
        return np.array([0])
    pos = graph.positions(m)
    unit = units[np.nonzero((units == pos[0]).any(axis=1))[0][0]]
    return np.nonzero(np.isin(pos, unit) & (gid == gid[0]))[0]


def _hook_records(model, nodes, map_id):
    """``(layer, name, call view, in map ids, out map ids)`` of the calls whose
    handler counts their MACs itself (``LayerHandler.macs``: attention...)."""
    from .graph.functional_view import graph_of
    from .graph.handlers.registry import get_handler
    out = []
    for layer, name, node in layer_nodes(graph_of(model), ops=True):
        handler = get_handler(layer)
        view = call_view(layer, name, node)
        if handler is None or handler.macs(layer, view) is None:
            continue
        info = nodes.get(name)
        if info is None:
            out.append((layer, name, view, None, None))
        else:
            out.append((layer, name, view, [map_id(m) for m in info.in_maps],
                        [map_id(m) for m in info.out_maps]))
    return out
