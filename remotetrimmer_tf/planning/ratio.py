"""Ratio planners: every group loses the same fraction (local), or the lowest
normalised scores across groups go (global).

Example:
    >>> import numpy as np
    >>> from remotetrimmer_tf.planning import ScoredGroups, WidthRules
    >>> sg = ScoredGroups.build({0: np.arange(1.0, 9.0)})
    >>> plan_ratio(sg, WidthRules(ratio=0.5))[0].tolist()
    [4, 5, 6, 7]
"""

from __future__ import annotations

import math

import numpy as np

from remotetrimmer_tf.planning.widths import kept_count, round_width, unit_rules

__all__ = ["plan_ratio", "plan_local", "plan_global"]


def plan_ratio(scored, rules, remove=None):
    """``{group: kept indices}`` of ``scored`` at ``rules`` (local or global
    scope), every section covered (``ScoredGroups.cover``); ``remove``
    (global scope): how many channels go, instead of ``floor(ratio · ΣC)``."""
    keep = plan_local(scored, rules) if rules.scope == "local" else \
        plan_global(scored, rules, remove)
    return {gi: scored.cover(gi, idx) for gi, idx in keep.items()}


def plan_local(scored, rules):
    """Every group keeps ``floor(C·(1 − ratio))`` (whole units), floored at
    ``min_channels`` and rounded to ``round_to``; its best channels."""
    keep = {}
    for gi in scored.groups:
        u = scored.unit_size(gi)
        step, least = unit_rules(u, rules.round_to, scored.min_channels)
        n = kept_count(scored.size(gi) // u, rules.ratio, least, step, rules.round_mode)
        keep[gi] = scored.top(gi, n * u)
    return keep


def plan_global(scored, rules, remove=None):
    """The lowest ``floor(ratio · ΣC)`` (or ``remove``) channels by normalised
    score go, each group keeping at least its floor; widths then rounded
    (``round_to``)."""
    entries, floors, slots, removed = [], {}, {}, {}
    for gi in scored.groups:
        u = scored.unit_size(gi)
        slots[gi] = scored.size(gi) // u
        floors[gi] = scored.floors[gi] // u
        removed[gi] = set()
        entries.extend((float(s), gi, c)
                       for c, s in enumerate(scored.slot_scores(gi, normalised_=True)))
    total = sum(scored.size(gi) for gi in scored.groups)
    target = int(math.floor(total * rules.ratio + 1e-9)) if remove is None else int(remove)
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    remaining, count = dict(slots), 0
    for _, gi, c in entries:
        if count >= target:
            break
        if remaining[gi] <= floors[gi]:
            continue
        removed[gi].add(c)
        remaining[gi] -= 1
        count += scored.unit_size(gi)
    return {gi: _kept_after_removal(scored, rules, gi, remaining[gi], slots[gi],
                                    floors[gi], removed[gi]) for gi in scored.groups}


def _kept_after_removal(scored, rules, gi, n, slots, floor, removed):
    """The channels group ``gi`` keeps: the ones not removed, or (when rounding
    changes the width) its best ``n`` rounded."""
    u = scored.unit_size(gi)
    if rules.round_to > 1:
        step, _ = unit_rules(u, rules.round_to, scored.min_channels)
        rounded = round_width(n, slots, step, rules.round_mode, floor=floor)
    else:
        rounded = n
    if rounded != n:   # rounded: keep the best by this group's own ranking
        return scored.top(gi, rounded * u)
    left = sorted(set(range(slots)) - removed)
    return np.sort(scored.slots(gi)[left].ravel()).astype(np.int64)
