"""What a handler sees and calls while the dependency graph is built.

``NodeView`` is one call of a layer or operation; ``GraphBuilder`` is the
``ctx`` every ``LayerHandler.propagate(node, ctx)`` receives. A handler only
uses the public methods documented here; the union-find and the records
behind them belong to the graph (``DependencyGraph`` reads them once, when
it forms the groups).

Channel maps: every symbolic tensor carries an int array ``m`` over its last
axis; ``m[c]`` is the id of the *channel atom* at position ``c``. Atoms that
are coupled are always kept or removed together.
"""

from __future__ import annotations

from ..errors import PruningError
import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["NodeView", "GraphBuilder", "LayerNode"]


class NodeView:
    """What a handler sees of one call of a layer/operation.

    Attributes:
        layer: the layer or operation object.
        name: its name (``"outer/inner"`` inside nested models).
        in_maps: channel maps of the tensor inputs (flattened order).
        in_shapes / out_shapes: shapes (batch axis included) of inputs/outputs.
        args / kwargs: the call's arguments; ``constants`` the non-tensor ones.
        node_index: how many calls of this layer came before this one.
        channel_axis: where the first input holds its channels in the real
            tensor (-1, or 1 for channels_first); the shapes above are
            always channels-last (``graph.layout``).
    """

    __slots__ = ("layer", "name", "in_maps", "in_shapes", "out_shapes",
                 "args", "kwargs", "constants", "node_index", "channel_axis")

    def __init__(self, layer, name, in_maps, in_shapes, out_shapes, args,
                 kwargs, constants, node_index, channel_axis=-1):
        self.channel_axis = channel_axis
        self.layer = layer
        self.name = name
        self.in_maps = in_maps
        self.in_shapes = in_shapes
        self.out_shapes = out_shapes
        self.args = args
        self.kwargs = kwargs
        self.constants = constants
        self.node_index = node_index

    def axis(self, raw_axis):
        """A layer's ``axis`` argument as an axis of the channels-last shapes."""
        from .layout import view_axis
        rank = len(self.in_shapes[0]) if self.in_shapes else 0
        return view_axis(raw_axis, rank, self.channel_axis)

    def replace(self, **changes) -> "NodeView":
        """A copy with some attributes replaced (a handler that delegates to
        another layer's handler: ``node.replace(layer=inner)``)."""
        values = {k: getattr(self, k) for k in self.__slots__}
        values.update(changes)
        return NodeView(**values)

    def out_channels(self, i=0) -> int:
        """Channels (last-axis size) of output ``i``; 0 when unknown."""
        shape = self.out_shapes[i]
        if not shape or shape[-1] is None:
            return 0
        return int(shape[-1])


@dataclasses.dataclass
class LayerNode:
    """One analysed layer of ``DependencyGraph.nodes``.

    Attributes:
        layer: the layer object of ``graph.model``.
        handler: its ``LayerHandler`` (what the surgeon calls), or None for a
            nested model (``nested=True``: its own layers are listed as
            ``"outer/inner"``).
        in_maps / out_maps: channel maps of its input / output tensors (first
            call of a shared layer); ``in_maps`` ends with the layer's inner
            maps (``GraphBuilder.inner``: attention heads...), if any.
        nested: True for a nested functional model.
    """

    layer: Any
    handler: Any
    in_maps: List[np.ndarray]
    out_maps: List[np.ndarray]
    nested: bool = False


class GraphBuilder:
    """The ``ctx`` of ``LayerHandler.propagate``: creates, couples and freezes channels.

    Methods for handlers:

    - ``fresh(node, n)``: ``n`` new channels for an output (a producer);
    - ``couple(a, b)``: two maps pruned identically, position by position;
    - ``freeze(m, why)``: channels that must not be pruned;
    - ``opaque(node, why)``: the layer cannot be followed: freeze its inputs,
      return frozen fresh outputs (the usual way out of a handler);
    - ``producer`` / ``channelwise`` / ``consumer(node, m)``: record the
      layer as a member of the groups of ``m`` (importance finds weights so);
    - ``allows(kind)`` / ``approximate(m, why)``: approximate pruning the user
      opted in to (``approximate=("layernorm",)``);
    - ``inner(node, maps)``: channels a layer uses inside itself (attention
      heads, its query / value / key inputs in a fixed order): its ``prune``
      receives their masks after the input masks;
    - ``units(m, size)``: the channels of ``m`` go in whole blocks of ``size``
      consecutive positions (an attention head).

    Example:
        >>> class Scale(LayerHandler):                  # doctest: +SKIP
        ...     def propagate(self, node, ctx):
        ...         if node.in_shapes[0][-1] is None:
        ...             return ctx.opaque(node, "unknown width")
        ...         ctx.channelwise(node, node.in_maps[0])
        ...         return [node.in_maps[0]]
    """

    def __init__(self, unknown: str = "error", ignore: Sequence[str] = (),
                 approximate: Sequence[str] = ()):
        self.unknown = unknown
        self.ignore = set(ignore)
        self.approx_allowed = frozenset(approximate)
        # read by DependencyGraph when it forms the groups
        self.approx: List[tuple] = []        # (atoms, reason)
        self.parent: List[int] = []
        self.source: List[int] = []          # source id per atom
        self.source_kind: List[str] = []     # "producer" | "input" | "opaque"
        self.source_name: List[str] = []
        self.frozen: List[tuple] = []        # (atoms, reason)
        self.records: List[tuple] = []       # (role, layer name, map, slot)
        self.nodes: Dict[str, LayerNode] = {}
        self.touch: List[tuple] = []         # (layer name, [maps])
        self.calls: Dict[str, int] = {}      # layer name -> calls seen
        self.inner_maps: Dict[str, list] = {}  # layer name -> its inner maps
        self.unit_decls: List[tuple] = []    # (map, unit size, layer name)
        self._fresh_cache: Dict[tuple, np.ndarray] = {}
        self.current = None                  # name of the layer being handled

    # ----------------------------------------------------------- atoms
    def new_source(self, n: int, kind: str, name: str) -> np.ndarray:
        """``n`` new atoms of one source (``"producer"``, ``"input"``, ``"opaque"``)."""
        sid = len(self.source_kind)
        self.source_kind.append(kind)
        self.source_name.append(name)
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        self.source.extend([sid] * n)
        return np.arange(start, start + n, dtype=np.int64)

    def fresh(self, node, n, frozen: Optional[str] = None, out_index: int = 0):
        """New channels for output ``out_index`` of ``node``'s layer.

        Args:
            node: the ``NodeView``.
            n: how many channels.
            frozen: a reason when these channels must not be pruned.
            out_index: which output (a shared layer gets the same atoms back).
        """
        key = (id(node.layer), node.name, out_index)
        cached = self._fresh_cache.get(key)
        if cached is not None:
            if cached.shape[0] != n:
                raise PruningError(
                    f"Layer '{node.name}' is shared and used at different widths "
                    f"({cached.shape[0]} vs {n} output channels); a shared layer "
                    "must keep one width. Way out: use separate layers, or "
                    "exclude it from pruning.")
            return cached
        atoms = self.new_source(int(n), "opaque" if frozen else "producer", node.name)
        if frozen:
            self.frozen.append((atoms, frozen))
        elif node.name in self.ignore:
            self.frozen.append((atoms, f"layer '{node.name}' is in ignore"))
        self._fresh_cache[key] = atoms
        return atoms

    def find(self, a: int) -> int:
        """The root atom of ``a`` (union-find with path compression)."""
        parent = self.parent
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    def couple(self, a, b):
        """Couple two channel maps position by position."""
        a = np.asarray(a)
        b = np.asarray(b)
        if a.shape != b.shape:
            raise PruningError(
                f"Layer '{self.current}': cannot couple channel maps of "
                f"widths {a.shape[0]} and {b.shape[0]}.")
        if a is b or np.array_equal(a, b):
            return
        find = self.find
        parent = self.parent
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = find(x), find(y)
            if rx != ry:
                if rx < ry:
                    parent[ry] = rx
                else:
                    parent[rx] = ry

    def freeze(self, m, reason: str):
        """Mark the channels of map ``m`` as not prunable, with a reason."""
        if m is not None and len(m):
            self.frozen.append((np.asarray(m), reason))

    def opaque(self, node, why: str) -> List[np.ndarray]:
        """The layer's channels cannot be followed: freeze every input map and
        return fresh frozen maps for its outputs (``why`` is the reason)."""
        for m in node.in_maps:
            self.freeze(m, why)
        return [self.fresh(node, node.out_channels(i), frozen=why, out_index=i)
                for i in range(len(node.out_shapes))]

    def allows(self, kind: str) -> bool:
        """True when the user opted in to approximate pruning through ``kind``."""
        return kind in self.approx_allowed

    def approximate(self, m, reason: str):
        """Mark the channels of map ``m`` as prunable only approximately."""
        if m is not None and len(m):
            self.approx.append((np.asarray(m), reason))

    def inner(self, node, maps):
        """Channel maps ``node``'s layer uses inside itself, in an order its
        handler fixes (e.g. query, value, key, heads of an attention layer).

        The layer's ``LayerNode.in_maps`` lists them after its inputs' maps,
        so its handler's ``prune`` receives their masks last (``in_masks[-k:]``)
        and ``PlanCost`` counts them; their groups list the layer. A shared
        layer keeps the maps of its first call.
        """
        maps = [np.asarray(m, dtype=np.int64) for m in maps]
        self.inner_maps.setdefault(node.name, maps)
        self.touch.append((node.name, maps))

    def units(self, m, size: int):
        """The channels of map ``m`` are kept or dropped in whole blocks of
        ``size`` consecutive positions (an attention head of ``key_dim``
        channels); the group gets ``ChannelGroup.units``."""
        m = np.asarray(m, dtype=np.int64)
        if size < 1 or m.shape[0] % size:
            raise ValueError(f"Layer '{self.current}': {m.shape[0]} channels do not "
                             f"split into units of {size}.")
        self.unit_decls.append((m, int(size), self.current))

    # --------------------------------------------------------- members
    def producer(self, node, m, slot: Optional[str] = None):
        """``node``'s layer creates the channels of ``m`` (its kernel's output
        axis; ``slot`` names channels inside the layer, see ``Member.slot``)."""
        self.records.append(("producers", node.name, np.asarray(m), slot))

    def channelwise(self, node, m, slot: Optional[str] = None):
        """``node``'s layer holds per-channel weights of ``m`` and passes them on."""
        self.records.append(("channelwise", node.name, np.asarray(m), slot))

    def consumer(self, node, m, slot: Optional[str] = None):
        """``node``'s layer reads the channels of ``m`` (its kernel's input
        axis; ``slot`` names which of its inputs, see ``Member.slot``)."""
        self.records.append(("consumers", node.name, np.asarray(m), slot))
