"""Channel groups: sets of channels that must be removed together."""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np


@dataclasses.dataclass
class Member:
    """One layer's view of a channel group.

    Args:
        layer: Name of the layer (``"outer/inner"`` inside nested models).
        indices: ``indices[j]`` is the channel index inside that layer for the
            group's channel ``j``; shape ``(size,)``, or ``(size, k)`` when a
            channel maps to ``k`` positions (e.g. the ``k`` kernel rows of a
            Dense layer after a Flatten). An entry is ``-1`` where the layer
            does not see that channel (e.g. one input of a Concatenate that
            was later added to a wider tensor).
        slot: None when ``indices`` are positions of the layer's first input
            (consumer, channel-wise) or output (producer), the layout its
            handler's ``weight_axes`` declare; else the name of the channels
            inside the layer its handler knows (``"heads"`` of an attention
            layer, its ``"query"`` / ``"value"`` / ``"key"`` input...), read
            through the handler's ``slot_filters`` / ``silence`` hooks.

    Example:
        >>> Member("conv1", np.arange(4)).indices.tolist()
        [0, 1, 2, 3]
    """

    layer: str
    indices: np.ndarray
    slot: Optional[str] = None

    def __repr__(self):  # compact
        slot = f", slot={self.slot!r}" if self.slot else ""
        return f"Member({self.layer!r}, shape={tuple(self.indices.shape)}{slot})"


@dataclasses.dataclass
class ChannelGroup:
    """A set of coupled channels across layers.

    Args:
        index: Position in ``DependencyGraph.groups``.
        size: Number of channels in the group.
        layers: Names of all layers that read or write these channels.
        prunable: False when the channels cannot shrink (model input/output,
            depthwise multiplier > 1, a Reshape that mixes the channel axis...).
        reason: Why the group is not prunable (None when prunable).
        producers: Layers whose kernel output axis creates the channels.
        channelwise: Layers with per-channel parameters passing them through.
        consumers: Layers whose kernel input axis reads the channels.
        approximate: None when removing the group's channels is exact; else
            why it is only approximate (e.g. a LayerNormalization over the
            channels, allowed with ``approximate=("layernorm",)``).
        units: None when any channel may go alone; else an int array
            ``(n_units, unit_size)`` of the group's channel indices that are
            kept or dropped whole (e.g. the ``key_dim`` channels of one
            attention head). Every planner moves the group's width in whole
            units and keeps at least one.

    Example:
        >>> g = ChannelGroup(index=0, size=8)
        >>> g.prunable
        True
    """

    index: int
    size: int
    layers: List[str] = dataclasses.field(default_factory=list)
    prunable: bool = True
    reason: Optional[str] = None
    producers: List[Member] = dataclasses.field(default_factory=list)
    channelwise: List[Member] = dataclasses.field(default_factory=list)
    consumers: List[Member] = dataclasses.field(default_factory=list)
    approximate: Optional[str] = None
    units: Optional[np.ndarray] = None

    @property
    def members(self) -> List[Member]:
        """All members: producers, then channel-wise layers, then consumers."""
        return list(self.producers) + list(self.channelwise) + list(self.consumers)

    def __repr__(self):
        state = "prunable" if self.prunable else f"frozen: {self.reason}"
        if self.prunable and self.approximate:
            state += f" (approximate: {self.approximate})"
        if self.units is not None:
            state += f", units={tuple(self.units.shape)}"
        return (f"ChannelGroup(index={self.index}, size={self.size}, "
                f"producers={[m.layer for m in self.producers]}, {state})")
