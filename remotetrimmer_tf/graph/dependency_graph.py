"""Dependency graph over a Keras 3 functional model.

Every symbolic tensor gets a *channel map*: an int array over its last axis
whose entries are channel-atom ids. Producers (Conv, Dense...) create fresh
atoms; channel-wise layers pass maps through; couplings (Add, Multiply...)
union atoms position by position; Concatenate joins maps; Flatten tiles them.
Afterwards atoms that were united form one *channel*, and the channels of
producers linked by any coupling form one ``ChannelGroup``. Channels that touch
the model's inputs/outputs, or pass a layer that cannot follow them, are
*frozen*; a group holding any frozen channel is not prunable.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import keras
import numpy as np

from ..errors import PruningError, PruningTypeError, first_line
from .builder import GraphBuilder, LayerNode, NodeView
from .channel_group import ChannelGroup, Member
from .functional_view import composite_reason, functional_view, graph_of
from .handlers.probed import refusal_reason
from .handlers.registry import get_handler
from .layout import LAST, input_axes, node_axes, to_last

__all__ = ["DependencyGraph", "APPROXIMATIONS", "check_approximate"]


def _shape(t):
    return tuple(t.shape)


def _is_functional(op) -> bool:
    return isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth") \
        and not isinstance(op, keras.Sequential)


APPROXIMATIONS = ("layernorm",)


def check_approximate(approximate):
    """``approximate`` as a tuple of known kinds (``APPROXIMATIONS``), else ValueError."""
    if isinstance(approximate, str):
        approximate = (approximate,)
    approximate = tuple(approximate or ())
    bad = [a for a in approximate if a not in APPROXIMATIONS]
    if bad:
        raise PruningError(f"approximate: unknown kind(s) {bad}; choose from "
                         f"{list(APPROXIMATIONS)}.")
    return approximate


class DependencyGraph:
    """Groups of channels that must be removed together in a functional model.

    Args:
        model: a built Keras 3 model with a functional graph: functional,
            Sequential with an Input, a keras-hub ``Backbone`` or task model
            (its preprocessor runs outside the graph), any ``keras.Model`` subclass built
            functionally, with nested models and composite layers (see
            ``functional_view``). Never modified.
        unknown: what to do with a layer type that has no handler: ``"error"``
            (default) raises; ``"freeze"`` leaves its input and output
            channels unpruned (safe, but those groups cannot shrink).
        ignore: layer names whose output channels must not be pruned.
        approximate: kinds of layers through which pruning is allowed although
            it is not exact: ``("layernorm",)`` lets groups pass
            LayerNormalization / RMSNormalization over the channel axis
            (removing channels changes their mean and variance). Such groups
            are marked (``ChannelGroup.approximate``); without the opt-in they
            are frozen with a reason.

    Attributes:
        model: the analysed plain functional model: ``model`` itself when it
            already is one, else its ``functional_view`` (group member names
            refer to this model's layers; nested models as ``"outer/inner"``).
        source_model: the model that was passed in.
        groups: list of ``ChannelGroup``.
        nodes: ``{layer name: LayerNode}``: every analysed layer with its
            handler and the channel maps of its inputs / outputs (what the
            surgeon and ``PlanCost`` walk).

    Public methods: ``groups_of(layer)``, ``channel_ids(m)``,
    ``group_ids(m)``, ``channel_mask(keep)``, ``mask_of(m, kept)``,
    ``sections(group)``.

    Example:
        >>> inp = keras.Input((8, 8, 3))
        >>> x = keras.layers.Conv2D(4, 3, name="c1")(inp)
        >>> out = keras.layers.Conv2D(2, 1, name="c2")(x)
        >>> g = DependencyGraph(keras.Model(inp, out))
        >>> [(x.size, x.prunable) for x in g.groups]
        [(3, False), (4, True), (2, False)]
        >>> g.groups_of("c2")
        [1, 2]
    """

    def __init__(self, model, unknown: str = "error", ignore: Sequence[str] = (),
                 approximate: Sequence[str] = ()):
        if unknown not in ("error", "freeze"):
            raise PruningError(f"unknown must be 'error' or 'freeze', got {unknown!r}.")
        approximate = check_approximate(approximate)
        refuse_quantized(model)
        self.source_model = model
        self.model = _view(model)
        fn = graph_of(self.model)
        b = GraphBuilder(unknown, ignore, approximate)
        in_maps = []
        axes = input_axes(fn)
        for t, ax in zip(keras.tree.flatten(fn.inputs), axes):
            c = to_last(_shape(t), ax)[-1] if len(_shape(t)) else 1
            if c is None:
                raise PruningError(
                    f"Model input '{t.name}' has an unknown channel (last) "
                    f"dimension {_shape(t)}; give the Input a fixed channel count.")
            atoms = b.new_source(int(c), "input", t.name)
            b.freeze(atoms, f"model input '{t.name}'")
            in_maps.append(atoms)
        out_maps = self._run(b, fn, in_maps, prefix="", in_axes=axes)
        for t, m in zip(keras.tree.flatten(fn.outputs), out_maps):
            b.freeze(m, f"model output '{getattr(t, 'name', t)}'")
        self.nodes: Dict[str, LayerNode] = b.nodes
        self._finish(b)

    # --------------------------------------------------------------- walk
    def _run(self, b, fn, in_maps, prefix, in_axes=None):
        tmap, taxis = {}, {}
        inputs = keras.tree.flatten(fn.inputs)
        if len(inputs) != len(in_maps):
            raise PruningError(f"Model '{fn.name}': expected {len(inputs)} inputs.")
        for t, m, ax in zip(inputs, in_maps, in_axes or [LAST] * len(inputs)):
            tmap[id(t)] = m
            taxis[id(t)] = ax
            layer = t._keras_history[0]
            if prefix:  # the InputLayer of a nested model: its shape may shrink
                b.nodes.setdefault(prefix + layer.name,
                                   LayerNode(layer, _INPUT_HANDLER, [m], [m]))
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                op = node.operation
                if isinstance(op, keras.layers.InputLayer):
                    continue
                name = prefix + op.name
                b.current = name
                ins = node.arguments.keras_tensors
                try:
                    maps = [tmap[id(t)] for t in ins]
                except KeyError:
                    raise PruningError(
                        f"Layer '{name}' reads a tensor that is not produced "
                        "inside the model.") from None
                axes = [taxis.get(id(t), LAST) for t in ins]
                if _is_functional(op) or isinstance(op, keras.Sequential):
                    outs = self._run(b, graph_of(op), maps, prefix=name + "/",
                                     in_axes=axes)
                    out_axes = self._nested_axes
                    b.nodes.setdefault(name, LayerNode(op, None, maps, outs, nested=True))
                else:
                    outs, out_axes = self._call_handler(b, op, node, name, maps, ins, axes)
                self._check_outs(name, node.outputs, outs, out_axes)
                for t, m, ax in zip(node.outputs, outs, out_axes):
                    tmap[id(t)] = m
                    taxis[id(t)] = ax
                b.touch.append((name, list(maps) + list(outs)))
        outputs = keras.tree.flatten(fn.outputs)
        self._nested_axes = [taxis.get(id(t), LAST) for t in outputs]
        return [tmap[id(t)] for t in outputs]

    @staticmethod
    def _check_outs(name, outputs, outs, out_axes):
        if len(outs) != len(outputs):
            raise PruningError(
                f"Handler for '{name}' returned {len(outs)} channel maps "
                f"for {len(outputs)} outputs.")
        for t, m, ax in zip(outputs, outs, out_axes):
            c = to_last(_shape(t), ax)[-1] if len(_shape(t)) else None
            if m is None or (c is not None and m.shape[0] != c):
                raise PruningError(
                    f"Handler for '{name}' returned a channel map of "
                    f"width {None if m is None else m.shape[0]} for an "
                    f"output with {c} channels.")

    def _call_handler(self, b, op, node, name, maps, ins, in_axes):
        handler = get_handler(op)
        args = node.arguments.args
        kwargs = node.arguments.kwargs
        consts = [a for a in keras.tree.flatten((args, kwargs))
                  if not isinstance(a, keras.KerasTensor)]
        out_axes, problem = node_axes(op, handler, in_axes, [len(_shape(t)) for t in ins],
                                      [len(_shape(t)) for t in node.outputs], name)
        view = NodeView(op, name, maps, [to_last(_shape(t), a) for t, a in zip(ins, in_axes)],
                        [to_last(_shape(t), a) for t, a in zip(node.outputs, out_axes)],
                        args, kwargs, consts, b.calls.get(name, 0),
                        channel_axis=in_axes[0] if in_axes else LAST)
        b.calls[name] = view.node_index + 1
        if problem is not None:
            return b.opaque(view, problem), out_axes
        if handler is None:
            outs = self._no_handler(b, op, view)
            handler = _FROZEN_HANDLER
        else:
            try:
                outs = handler.propagate(view, b)
            except PruningError:
                raise
            except Exception as err:     # a handler's bug: one line, the layer named
                raise PruningError(
                    f"layer '{name}' ({type(op).__name__}): its channel handler "
                    f"{type(handler).__name__} failed ({type(err).__name__}: "
                    f"{first_line(err, 160)}). Way out: unknown='freeze' does not help "
                    "here; ignore=[...] the layers before it, or fix/replace the handler "
                    "with register_handler (docs/custom_layers.md).") from None
            outs = [np.asarray(m, dtype=np.int64) for m in outs]
        info = b.nodes.get(name)
        if info is None:
            b.nodes[name] = LayerNode(op, handler, list(maps) + b.inner_maps.get(name, []),
                                      outs)
        elif getattr(op, "weights", None):
            # a shared layer: its weights force equal channels at every call
            for pa, pb in zip(info.in_maps, maps):
                if pa.shape != pb.shape:
                    raise PruningError(
                        f"Layer '{name}' is shared and used at different "
                        f"widths ({pa.shape[0]} vs {pb.shape[0]} input "
                        "channels). Way out: use separate layers, or exclude "
                        "it from pruning.")
                b.couple(pa, pb)
            for pa, pb in zip(info.out_maps, outs):
                if pa.shape == pb.shape:
                    b.couple(pa, pb)
        return outs, out_axes

    @staticmethod
    def _no_handler(b, op, view):
        """Raise (``unknown="error"``) or freeze the channels around ``op``."""
        name = view.name
        kind = "layer" if isinstance(op, keras.layers.Layer) else "operation"
        msg = (f"No channel handler for {kind} '{name}' of type "
               f"{type(op).__module__}.{type(op).__name__}")
        if isinstance(op, keras.layers.Lambda):
            msg += (" (a Lambda whose function cannot run on symbolic tensors: it "
                    "calls something other than keras.ops, so its channels cannot "
                    "be followed)")
        elif isinstance(op, keras.layers.Layer) and op._flatten_layers(
                include_self=False, recursive=False):
            msg += f" (a composite layer that cannot be inlined: {composite_reason(op)})"
        elif (reason := refusal_reason(op)) is not None:
            msg += f" ({reason})"
        if b.unknown == "error":
            lam = isinstance(op, keras.layers.Lambda)
            raise PruningError(
                msg + ". Way out: " + ("replace it by keras.ops calls, or " if lam else "")
                + "register a handler (remotetrimmer_tf.graph.register_handler, see "
                "docs/custom_layers.md), or pass unknown='freeze' to Pruner (or "
                "DependencyGraph) to leave the channels around it unpruned.")
        return b.opaque(view, f"{kind} '{name}' ({type(op).__name__}) has no handler")

    # ------------------------------------------------------------- groups
    def _finish(self, b):
        """Channels (united atoms) -> groups (channels of linked sources)."""
        n = len(b.parent)
        roots = np.fromiter((b.find(i) for i in range(n)), dtype=np.int64, count=n)
        # dense channel ids, numbered by smallest atom (roots are minimal atoms)
        uniq, cls = np.unique(roots, return_inverse=True)
        self._atom_class = cls.astype(np.int64)
        src = np.asarray(b.source, dtype=np.int64)
        cls_group = _number_groups(_source_roots(cls, src, uniq.shape[0],
                                                 len(b.source_kind)))
        n_cls = uniq.shape[0]
        n_groups = int(cls_group.max()) + 1 if n_cls else 0
        # position of each channel inside its group (by channel id order)
        sorter = np.lexsort((np.arange(n_cls), cls_group))
        counts = np.bincount(cls_group, minlength=n_groups)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        cls_pos = np.empty(n_cls, dtype=np.int64)
        cls_pos[sorter] = np.arange(n_cls) - np.repeat(starts, counts)
        self._cls_group = cls_group
        self._cls_pos = cls_pos
        self._group_classes = [sorter[starts[g]:starts[g] + counts[g]]
                               for g in range(n_groups)]
        groups = [ChannelGroup(index=g, size=int(counts[g])) for g in range(n_groups)]
        self._set_units(b, groups)
        self._mark_frozen(b, groups, src)
        for role, name, m, slot in b.records:
            for g, idx in self._member_indices(m, groups):
                getattr(groups[g], role).append(Member(name, idx, slot))
        layer_sets: List[dict] = [dict() for _ in range(n_groups)]
        for name, maps in b.touch:
            maps = [m for m in maps if m is not None and len(m)]
            if maps:
                for g in np.unique(self.group_ids(np.concatenate(maps))).tolist():
                    layer_sets[g][name] = None
        for g in range(n_groups):
            groups[g].layers = list(layer_sets[g])
        self.groups: List[ChannelGroup] = groups

    def _set_units(self, b, groups):
        """``ChannelGroup.units`` from the handlers' ``units`` declarations; a
        group whose declared units disagree or do not cover it is frozen."""
        bad = {}
        for m, size, name in b.unit_decls:
            gs = self.group_ids(m)
            for g in np.unique(gs).tolist():
                units = self.positions(m)[gs == g].reshape(-1, size)
                old = groups[g].units
                if np.array_equal(np.sort(units.reshape(-1)), np.arange(groups[g].size)) \
                        and (old is None or np.array_equal(old, units)):
                    groups[g].units = units
                else:
                    bad[g] = (f"layer '{name}' keeps these channels in units of {size} "
                              "(attention heads), which other layers split")
        for g, why in bad.items():
            groups[g].units = None
            b.frozen.append((self._group_atoms(g), why))

    def _group_atoms(self, g):
        """One atom of every channel of group ``g`` (for freezing it)."""
        cls = self._group_classes[g]
        first = np.full(self._cls_group.shape[0], -1, dtype=np.int64)
        first[self._atom_class[::-1]] = np.arange(self._atom_class.shape[0])[::-1]
        return first[cls]

    def _mark_frozen(self, b, groups, src):
        """Frozen / approximate reasons; groups without a producer or of one
        channel cannot shrink."""
        for atoms, reason in b.frozen:
            for g in np.unique(self.group_ids(atoms)).tolist():
                if groups[g].prunable:
                    groups[g].prunable = False
                    groups[g].reason = reason
        for atoms, reason in b.approx:
            for g in np.unique(self.group_ids(atoms)).tolist():
                if groups[g].approximate is None:
                    groups[g].approximate = reason
        has_prod = np.zeros(len(groups), dtype=bool)
        kinds = np.asarray([k == "producer" for k in b.source_kind], dtype=bool)
        has_prod[np.unique(self._cls_group[self._atom_class[kinds[src]]])] = True
        for g, group in enumerate(groups):
            if group.prunable and not has_prod[g]:
                group.prunable = False
                group.reason = "no layer produces these channels"
            elif group.prunable and group.size < 2:
                group.prunable = False
                group.reason = "a single channel cannot shrink"
            elif group.prunable and group.units is not None and len(group.units) < 2:
                group.prunable = False
                group.reason = "a single unit (one attention head) cannot shrink"

    def _member_indices(self, m, groups):
        """``(group, indices)`` of a member whose map is ``m``, per group it touches."""
        c = self._atom_class[m]
        gs = self._cls_group[c]
        for g in np.unique(gs).tolist():
            pos = np.nonzero(gs == g)[0]
            j = self._cls_pos[c[pos]]
            size = groups[g].size
            k = int(np.bincount(j, minlength=size).max())
            if k == 1:
                idx = np.full(size, -1, dtype=np.int64)
                idx[j] = pos
            else:   # k positions per channel (Flatten -> Dense); -1 unseen
                o = np.lexsort((pos, j))
                js, ps = j[o], pos[o]
                first = np.searchsorted(js, js, side="left")
                idx = np.full((size, k), -1, dtype=np.int64)
                idx[js, np.arange(js.shape[0]) - first] = ps
            yield g, idx

    # ------------------------------------------------------------ queries
    def channel_ids(self, m) -> np.ndarray:
        """The channel id of every position of channel map ``m`` (a
        ``LayerNode`` map); equal ids are kept or removed together."""
        return self._atom_class[np.asarray(m)]

    def positions(self, m) -> np.ndarray:
        """The index, inside its group, of the channel at every position of
        map ``m`` (what ``Member.indices`` and ``ChannelGroup.units`` hold)."""
        return self._cls_pos[self.channel_ids(m)]

    def group_ids(self, m) -> np.ndarray:
        """The group index of every position of channel map ``m``."""
        return self._cls_group[self.channel_ids(m)]

    def groups_of(self, layer: str) -> List[int]:
        """Sorted indices of the groups whose channels layer ``layer`` (a name
        of ``nodes``, ``"outer/inner"`` when nested) reads or writes."""
        node = self.nodes.get(layer)
        if node is None:
            raise PruningError(f"groups_of: no layer {layer!r} in the graph of "
                             f"{self.model.name!r}; names are those of graph.nodes.")
        maps = [m for m in list(node.in_maps) + list(node.out_maps)
                if m is not None and len(m)]
        if not maps:
            return []
        return sorted(np.unique(self.group_ids(np.concatenate(maps))).tolist())

    # ------------------------------------------------------------ helpers
    def channel_mask(self, keep: Dict[int, Sequence[int]]) -> np.ndarray:
        """Boolean array over channel ids: True where kept (validates ``keep``)."""
        kept = np.ones(self._cls_group.shape[0], dtype=bool)
        if not isinstance(keep, dict):
            raise TypeError(f"keep must be a dict {{group index: kept indices}}, "
                            f"got {type(keep).__name__}.")
        for gi, idx in keep.items():
            if isinstance(gi, (bool, np.bool_)) or not isinstance(gi, (int, np.integer)):
                raise TypeError(f"keep keys must be group indices (int), got {gi!r}.")
            if not 0 <= gi < len(self.groups):
                raise PruningError(f"keep names group {gi}, but the graph has "
                                 f"{len(self.groups)} groups (0..{len(self.groups) - 1}).")
            g = self.groups[gi]
            idx = np.asarray(idx)
            if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
                raise PruningError(f"keep[{gi}] must be a 1-D sequence of ints.")
            idx = idx.astype(np.int64)
            if idx.size == 0:
                raise PruningError(
                    f"keep[{gi}] is empty: it would remove every channel of group "
                    f"{gi} (layers {g.layers[:4]}...). Keep at least one channel.")
            if idx.min() < 0 or idx.max() >= g.size:
                raise PruningError(f"keep[{gi}] has indices out of range [0, {g.size}) "
                                 f"for group {gi} (layers {g.layers[:4]}).")
            if np.any(np.diff(idx) <= 0):
                raise PruningError(f"keep[{gi}] must be sorted and without duplicates.")
            if idx.size == g.size:
                continue
            if not g.prunable:
                raise PruningError(
                    f"Group {gi} (layers {g.layers[:4]}) is not prunable: "
                    f"{g.reason}. Leave it out of keep (or keep all its channels).")
            _check_units(gi, g, idx)
            drop = np.ones(g.size, dtype=bool)
            drop[idx] = False
            kept[self._group_classes[gi][drop]] = False
        return kept

    def sections(self, index: int) -> List[np.ndarray]:
        """Parts of group ``index`` that a tensor carries without the rest.

        A split along the channels, one input of a concatenation coupled to a
        wider tensor...: each part is a sorted array of the group's channel
        positions; a plan must keep at least one channel of every part (the
        surgeon refuses to empty a tensor).
        """
        if not hasattr(self, "_sections"):
            found: List[dict] = [dict() for _ in self.groups]
            for info in self.nodes.values():
                for m in list(info.in_maps) + list(info.out_maps):
                    if m is None or not len(m):
                        continue
                    c = self._atom_class[m]
                    gs = self._cls_group[c]
                    for g in np.unique(gs).tolist():
                        pos = np.unique(self._cls_pos[c[gs == g]])
                        if pos.shape[0] < self.groups[g].size:
                            found[g].setdefault(pos.tobytes(), pos)
            self._sections = [list(d.values()) for d in found]
        return list(self._sections[index])

    def mask_of(self, m, kept_channels) -> np.ndarray:
        """Kept positions of a tensor with channel map ``m``."""
        return kept_channels[self._atom_class[m]]

    def __repr__(self):
        n = sum(g.prunable for g in self.groups)
        return (f"DependencyGraph(model={self.model.name!r}, groups={len(self.groups)}, "
                f"prunable={n})")


def refuse_quantized(model):
    """A quantized layer (``model.quantize(...)``) cannot be sliced: say so
    before any work, with the way out."""
    layers = [model]
    if isinstance(model, keras.layers.Layer):
        layers += list(model._flatten_layers(include_self=False, recursive=True))
    for layer in layers:
        mode = getattr(layer, "quantization_mode", None)
        if mode:
            raise PruningError(
                f"layer '{layer.name}' ({type(layer).__name__}) is quantized "
                f"({mode}); its integer kernel and scales cannot be sliced. Way out: "
                "prune the float model first, then call model.quantize(...) on the "
                "pruned model.")


def _view(model):
    """``functional_view(model)``, every failure one ``PruningError`` line."""
    try:
        return functional_view(model)
    except PruningError:
        raise
    except TypeError as err:
        raise PruningTypeError(f"{first_line(err)}") from None
    except (ValueError, RuntimeError, AttributeError, NotImplementedError) as err:
        raise PruningError(f"model '{getattr(model, 'name', model)}': "
                           f"{first_line(err)}") from None


def _check_units(gi, group, idx):
    """A plan keeps whole units (attention heads) of a group with ``units``."""
    if group.units is None:
        return
    kept = np.isin(group.units, idx)
    split = np.nonzero(kept.any(axis=1) & ~kept.all(axis=1))[0]
    if split.size:
        raise PruningError(
            f"keep[{gi}] keeps part of unit {int(split[0])} of group {gi} (layers "
            f"{group.layers[:4]}): its channels {group.units[split[0]].tolist()[:8]} "
            "form one attention head; keep or drop them together.")


def _source_roots(cls, src, n_cls, n_src):
    """Per channel, the root of its source after uniting every two sources
    whose atoms share a channel."""
    sp = list(range(n_src))

    def sfind(x):
        while sp[x] != x:
            sp[x] = sp[sp[x]]
            x = sp[x]
        return x

    first_src = np.full(n_cls, -1, dtype=np.int64)
    first_src[cls[::-1]] = src[::-1]
    for a in np.nonzero(src != first_src[cls])[0].tolist():
        ra, rb = sfind(int(src[a])), sfind(int(first_src[cls[a]]))
        if ra != rb:
            sp[max(ra, rb)] = min(ra, rb)
    return np.fromiter((sfind(int(s)) for s in first_src.tolist()),
                       dtype=np.int64, count=n_cls)


def _number_groups(cls_src_root):
    """Group index per channel, groups ordered by their first channel
    (the topological order of creation)."""
    n_cls = cls_src_root.shape[0]
    groot, cls_group = np.unique(cls_src_root, return_inverse=True)
    first_cls = np.full(groot.shape[0], n_cls, dtype=np.int64)
    np.minimum.at(first_cls, cls_group, np.arange(n_cls))
    order = np.argsort(first_cls, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    return rank[cls_group].reshape(-1)


class _InputHandler:
    """A nested model's InputLayer: its batch_shape follows the channels."""

    def prune(self, layer, config, weights, in_masks, out_masks):
        shape = list(config.get("batch_shape") or config.get("batch_input_shape"))
        shape[-1] = int(out_masks[0].sum())
        key = "batch_shape" if "batch_shape" in config else "batch_input_shape"
        config[key] = shape
        return config, weights


class _FrozenHandler:
    def prune(self, layer, config, weights, in_masks, out_masks):
        return config, weights


_INPUT_HANDLER = _InputHandler()
_FROZEN_HANDLER = _FrozenHandler()
