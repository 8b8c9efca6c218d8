"""Plans in whole units: a group with ``ChannelGroup.units`` (attention heads)
keeps or drops each unit whole, at least one.

Issue 28 made the current ``Pruner`` (local / global scope, MAC / parameter
budgets) and the latency search honour units through these two helpers; the
planners of ``planning/`` (issue 26) read ``units`` themselves.

Example:
    >>> from remotetrimmer_tf.graph import ChannelGroup
    >>> g = ChannelGroup(index=0, size=4, units=np.arange(4).reshape(2, 2))
    >>> unit_scores(g, np.array([1.0, 3.0, 0.0, 1.0]), "mean").tolist()
    [2.0, 2.0, 0.5, 0.5]
"""

import numpy as np

from remotetrimmer_tf.importance.reductions import reduce_scores

__all__ = ["unit_scores", "whole_units"]


def unit_scores(group, scores, reduction):
    """Every channel of a unit (attention head) gets its unit's ``reduction``
    of their scores: a head scores by its q/k/v/o slices together."""
    if group.units is None:
        return scores
    out = np.array(scores, dtype=np.float64)
    out[group.units] = reduce_scores(list(out[group.units].T), reduction)[:, None]
    return out


def whole_units(graph, keep, scores):
    """``keep`` with each unit group's kept count rounded to whole units (at
    least one), its best-scored units kept."""
    snapped = {}
    for gi, idx in keep.items():
        units = graph.groups[gi].units
        if units is not None:
            n = min(len(units), max(1, int(round(len(idx) / units.shape[1]))))
            order = np.argsort(-scores[gi][units[:, 0]], kind="stable")
            idx = np.sort(units[order[:n]].reshape(-1))
        snapped[gi] = idx
    return snapped
