"""ScoredGroups: what every planner reads, built once after scoring.

One immutable value per plan: each prunable group's importance scores (raw,
and normalised once: divided by the group's mean so groups compare), its
floor (``min_channels``, ``max_ratio``), its sections (parts a tensor carries
alone: a plan keeps at least one channel of each) and its units (blocks of
channels kept or dropped whole, e.g. attention heads; ``None``: single
channels). Planners never see a Pruner or a graph: they take this value plus
rules and return ``{group: kept indices}``.

Example:
    >>> import numpy as np
    >>> sg = ScoredGroups.build({3: np.array([0.1, 0.9, 0.5, 0.2])}, min_channels=1,
    ...                         max_ratio=0.9)
    >>> sg.top(3, 2).tolist(), np.round(sg.norm[3], 2).tolist()
    ([1, 2], [0.24, 2.12, 1.18, 0.47])
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType
from typing import Mapping, Optional, Tuple

import numpy as np

__all__ = ["ScoredGroups", "normalised"]


def normalised(scores):
    """``scores`` divided by their finite mean (a group's scores then average
    1, so differently scaled groups compare); ``+inf`` (a channel no member
    could score) stays ``+inf``; a group without a positive mean is uniform (1)."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    mean = scores[finite].mean() if finite.any() else 0.0
    return scores / mean if mean > 0 else np.where(finite, 1.0, np.inf)


def _read_only(a, dtype):
    a = np.array(a, dtype=dtype)
    a.setflags(write=False)
    return a


def _check_units(gi, units, size):
    """``units`` as a read-only ``(n_units, unit_size)`` partition of ``range(size)``."""
    units = np.asarray(units, dtype=np.int64)
    if units.ndim != 2 or units.size != size or \
            not np.array_equal(np.sort(units.ravel()), np.arange(size)):
        raise ValueError(f"group {gi}: units must split its {size} channels into equal "
                         f"blocks (an (n_units, unit_size) array), got shape {units.shape}.")
    return _read_only(units, np.int64)


@dataclasses.dataclass(frozen=True)
class ScoredGroups:
    """The scored groups of one model (immutable; build with :meth:`build`).

    Attributes:
        scores: ``{group: raw scores (size,)}`` in group order (read-only).
        norm: ``{group: scores / the group's finite mean}`` (:func:`normalised`).
        floors: ``{group: fewest channels it may keep}``: ``min_channels`` and
            ``ceil(size · (1 − max_ratio))``, whole units, at most its size.
        min_channels, max_ratio: the rules the floors came from.
        sections: ``{group: (sorted channel arrays, ...)}``: parts a plan keeps
            at least one channel of.
        units: ``{group: (n_units, unit_size) channel indices or None}``.
        spread: ``{group: positions each channel takes in a tensor}`` (a grouped
            convolution's ``groups``; 1 otherwise): runtime blocks count those.
    """

    scores: Mapping[int, np.ndarray]
    norm: Mapping[int, np.ndarray]
    floors: Mapping[int, int]
    min_channels: int
    max_ratio: float
    sections: Mapping[int, Tuple[np.ndarray, ...]]
    units: Mapping[int, Optional[np.ndarray]]
    spread: Mapping[int, int]

    @classmethod
    def build(cls, scores, min_channels=1, max_ratio=0.9, sections=None, units=None,
              spread=None):
        """The value for ``scores`` (``{group: (size,) scores}``); ``sections``,
        ``units``, ``spread``: ``{group: ...}`` where a group has any."""
        sections, units, spread = sections or {}, units or {}, spread or {}
        raw, norm, floors, secs, unit_map = {}, {}, {}, {}, {}
        for gi, sc in scores.items():
            gi = int(gi)
            raw[gi] = _read_only(sc, np.float64)
            norm[gi] = _read_only(normalised(raw[gi]), np.float64)
            size = raw[gi].size
            u = units.get(gi)
            unit_map[gi] = None if u is None else _check_units(gi, u, size)
            step = 1 if unit_map[gi] is None else unit_map[gi].shape[1]
            floor = max(min_channels, int(math.ceil(size * (1 - max_ratio) - 1e-9)))
            floors[gi] = min(size, math.ceil(floor / step) * step)
            secs[gi] = tuple(_read_only(s, np.int64) for s in sections.get(gi, ()))
        return cls(MappingProxyType(raw), MappingProxyType(norm), MappingProxyType(floors),
                   int(min_channels), float(max_ratio), MappingProxyType(secs),
                   MappingProxyType(unit_map),
                   MappingProxyType({gi: int(spread.get(gi, 1)) for gi in raw}))

    # ------------------------------------------------------------ sizes
    @property
    def groups(self):
        """The scored group indices, in group order."""
        return tuple(self.scores)

    def size(self, gi):
        """Channels of group ``gi``."""
        return self.scores[gi].size

    def unit_size(self, gi):
        """Channels per unit of group ``gi`` (1: single channels)."""
        u = self.units[gi]
        return 1 if u is None else int(u.shape[1])

    def slots(self, gi):
        """The group's units as an ``(n_units, unit_size)`` array (single
        channels: ``(size, 1)``)."""
        u = self.units[gi]
        return np.arange(self.size(gi))[:, None] if u is None else u

    def slot_scores(self, gi, normalised_=False):
        """One score per unit: the channel score (single channels) or the sum
        over the unit (raw) / the mean over it (``normalised_``: compares
        with single channels of other groups)."""
        sc = self.norm[gi] if normalised_ else self.scores[gi]
        u = self.units[gi]
        if u is None:
            return sc
        return sc[u].mean(axis=1) if normalised_ else sc[u].sum(axis=1)

    # ------------------------------------------------------------ choosing
    def top(self, gi, n):
        """Sorted indices of the ``n`` best channels of group ``gi`` (ties:
        lower index first), whole units (rounded up to a unit)."""
        u = self.units[gi]
        if u is None:
            order = np.argsort(-self.scores[gi], kind="stable")
            return np.sort(order[:int(n)]).astype(np.int64)
        k = -(-int(n) // u.shape[1])
        order = np.argsort(-self.slot_scores(gi), kind="stable")[:k]
        return np.sort(u[order].ravel()).astype(np.int64)

    def cover(self, gi, kept):
        """``kept`` with at least one channel (unit) of every section of the
        group: each empty section's best unit swapped in for the lowest-scoring
        kept unit that no section needs."""
        sections = self.sections[gi]
        if not sections:
            return kept
        units = self.units[gi]
        if units is None:
            slot_of, secs, score = None, sections, self.scores[gi]
        else:
            slot_of = np.empty(self.size(gi), np.int64)
            slot_of[units] = np.arange(units.shape[0])[:, None]
            secs = [np.unique(slot_of[s]) for s in sections]
            score = self.slot_scores(gi)
        kept = np.asarray(kept, np.int64)
        slots = _cover_slots(set(int(i) for i in (kept if slot_of is None else slot_of[kept])),
                             secs, score)
        if slot_of is None:
            return np.array(sorted(slots), dtype=np.int64)
        return np.sort(units[sorted(slots)].ravel()).astype(np.int64)


def _cover_slots(kept, sections, score):
    """The section rule on slot indices (channels or units)."""
    for sec in sections:
        if kept.intersection(sec.tolist()):
            continue
        kept.add(int(sec[np.argmax(score[sec])]))
        needed = {int(next(iter(kept.intersection(x.tolist()))))
                  for x in sections if len(kept.intersection(x.tolist())) == 1}
        spare = [i for i in kept if i not in needed]
        if spare:
            kept.discard(min(spare, key=lambda i: (score[i], i)))
    return kept
