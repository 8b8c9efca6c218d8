"""Which axes of a layer's weights carry its channels: one declaration, read
by slicing (surgeon), importance (filters per output channel), MAC counting
and dead channels.

A handler declares ``weight_axes(layer) -> {weight index: WeightAxes}``
(index into ``layer.weights``, the order of ``get_weights()``):

- ``out_axis``: the axis indexed by the layer's output channels (a kernel's
  filters, a bias);
- ``in_axis``: the axis indexed by the layer's input channels (a kernel's
  rows); ``out_axis == in_axis`` marks a per-channel weight of a channel-wise
  layer (the channel passes through, to itself only);
- ``per``: ``"output"`` (``"input"``) for a kernel applied once at every
  output (input) position: its multiply-accumulates are its size times the
  number of those positions (``metrics.count_macs``).

An axis carries ``n`` channels of a tensor with ``n`` entries, with ``n / g``
entries (a grouped kernel: channel ``c`` is entry ``c mod (n / g)``, the
groups keep the same local channels) or with ``r * n`` entries (channel ``c``
owns the ``r`` consecutive entries ``c*r ... c*r + r - 1``, e.g. the
pointwise rows of a SeparableConv with depth multiplier ``r``).

Example:
    >>> WeightAxes(out_axis=-1, in_axis=-2, per="output")   # a Conv2D kernel
    WeightAxes(out_axis=-1, in_axis=-2, per='output')
    >>> axis_mask(np.array([True, False]), 4).tolist()     # r = 2
    [True, True, False, False]
"""

from __future__ import annotations

from ...errors import PruningError
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

__all__ = ["WeightAxes", "axis_mask", "slice_weights", "output_major", "weight_index"]

PER = (None, "output", "input")


class WeightAxes(NamedTuple):
    """The channel axes of one weight (see the module docstring)."""

    out_axis: Optional[int] = None
    in_axis: Optional[int] = None
    per: Optional[str] = None


def weight_index(layer, attribute: str) -> Optional[int]:
    """Position of ``getattr(layer, attribute)`` in ``layer.weights``, or None.

    Keras keeps the variable itself as ``_<attribute>`` when the public
    attribute is computed (a LoRA-enabled kernel is ``_kernel + a @ b``):
    that variable is the one found then.
    """
    for name in (attribute, "_" + attribute):
        var = getattr(layer, name, None)
        if var is None:
            continue
        for i, w in enumerate(layer.weights):
            if w is var:
                return i
    return None


def axis_mask(mask, length: int, where: Optional[str] = None) -> np.ndarray:
    """A boolean mask over a tensor's ``n`` channels, laid out on an axis of ``length``.

    Args:
        mask: ``(n,)`` booleans (kept or dropped channels).
        length: the axis' size: ``n``, ``n / g`` (grouped) or ``r * n``.
        where: for slicing, the layer name: then the groups of a grouped axis
            must agree (else ValueError); without it an entry is True when any
            group's channel on it is (dead channels).
    """
    mask = np.asarray(mask, dtype=bool)
    n = mask.shape[0]
    if length == n:
        return mask
    if n and length > n and length % n == 0:
        return np.repeat(mask, length // n)
    if length and length < n and n % length == 0:
        local = mask.reshape(n // length, length)
        if where is None:
            return local.any(axis=0)
        if not (local == local[:1]).all():
            raise PruningError(
                f"layer '{where}': its {n // length} channel groups keep different "
                "channels; a grouped kernel needs the same local channels in every group.")
        return local[0]
    raise PruningError(f"layer '{where}': a weight axis of {length} entries cannot carry "
                     f"{n} channels.")


def slice_weights(axes: Dict[int, WeightAxes], weights: Sequence[np.ndarray],
                  in_mask, out_mask, where: str) -> List[np.ndarray]:
    """``weights`` with every declared axis cut to the kept channels.

    ``in_mask`` / ``out_mask`` are the kept positions of the layer's first
    input / output tensor (None: that side is not sliced).
    """
    new = list(weights)
    for i, ax in axes.items():
        w = new[i]
        cuts = [(ax.out_axis, out_mask)]
        if ax.in_axis != ax.out_axis:       # else a per-channel weight: cut once
            cuts.append((ax.in_axis, in_mask))
        for axis, mask in cuts:
            if axis is not None and mask is not None:
                w = np.compress(axis_mask(mask, w.shape[axis], where), w, axis=axis)
        new[i] = w
    return new


def output_major(value, axes: WeightAxes) -> np.ndarray:
    """``value`` (a weight, or its gradient) as ``(output channels, fan)``."""
    value = np.moveaxis(np.asarray(value), axes.out_axis, 0)
    return value.reshape(value.shape[0], -1)
