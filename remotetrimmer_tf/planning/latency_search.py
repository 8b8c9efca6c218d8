"""The latency search: per-group widths in the runtime's blocks that keep the
most value within a predicted latency, then measured and searched again.

:class:`LatencySearch` holds the moves, one method each: :meth:`uniform`
(one ratio for every group, each width rounded up to an allowed width, then
:meth:`widen`), :meth:`greedy` (:meth:`narrow` from the full model, then
:meth:`widen` and :meth:`swaps`) and :meth:`rounds` (search, measure, refit
the prediction, search again). The prediction and the measurement are
inputs (``latency.PlanLatency`` and ``latency.Timing``) that read plans
``{group: kept indices}``; the search moves widths ``{group: kept channels}``
and turns them into plans itself (:func:`keep_of`).

Example:
    >>> import numpy as np
    >>> from remotetrimmer_tf.planning import ScoredGroups
    >>> sg = ScoredGroups.build({0: np.arange(1.0, 33.0), 1: np.ones(32)})
    >>> cands = {0: candidates(sg, 0, 16), 1: candidates(sg, 1, 16)}
    >>> ms = lambda keep, key=None: float(sum(len(keep.get(g, range(32))) for g in (0, 1)))
    >>> s = LatencySearch(sg, cands, predict=ms, objective="importance")
    >>> s.greedy(48.0)[0]
    {0: 16, 1: 32}
"""

from __future__ import annotations

import math

import numpy as np

from remotetrimmer_tf.choices import DEFAULT_OBJECTIVE

__all__ = ["LatencySearch", "candidates", "keep_of", "LOOKAHEAD", "MAX_SWAPS"]

LOOKAHEAD = 4         # candidates one narrowing step may skip
MAX_SWAPS = 50        # pair moves after the greedy search


def candidates(scored, gi, block):
    """Allowed widths of group ``gi``: multiples of ``block`` positions in
    ``[floor, size]``, whole units, and the full size.

    A channel that takes ``r`` positions in a tensor (a grouped convolution)
    needs ``block / gcd(block, r)`` channels per block; a unit of ``u``
    channels steps by the fewest units filling a block (one unit when the
    group is narrower than that).
    """
    size, u = scored.size(gi), scored.unit_size(gi)
    step = block // math.gcd(block, scored.spread[gi])
    if u > 1:
        step = u * step // math.gcd(u, step)
        if step >= size:
            step = u
    if size <= step:
        return [size]
    lo = max(scored.floors[gi], 1)
    return [w for w in range(step, size, step) if w >= lo] + [size]


def keep_of(scored, widths):
    """``{group: kept indices}`` of a width plan: each group's best channels
    (whole units, every section covered); full widths left out."""
    return {gi: scored.cover(gi, scored.top(gi, int(n)))
            for gi, n in widths.items() if n < scored.size(gi)}


class LatencySearch:
    """Widths that keep the most value within a predicted latency.

    Args:
        scored: the ``ScoredGroups``.
        cands: ``{group: allowed widths, ascending}`` (:func:`candidates`).
        predict: ``fn(keep, key) -> predicted ms`` of a plan (``key``: a
            hashable name of the plan, for the predictor's memo).
        objective: ``"importance"`` (normalised scores kept), ``"macs"`` or
            ``"uniform"`` (MACs kept: ``macs(keep)``).
        macs: ``fn(keep) -> MACs`` (objectives ``"macs"`` / ``"uniform"``).
    """

    def __init__(self, scored, cands, predict, objective=DEFAULT_OBJECTIVE, macs=None):
        self.scored, self.cands, self.predict = scored, cands, predict
        self.objective, self._macs = objective, macs
        self.groups = list(scored.groups)
        self._gain = {}
        for gi in self.groups:   # normalised importance kept by the best k units
            order = np.argsort(-scored.slot_scores(gi), kind="stable")
            per = scored.slot_scores(gi, normalised_=True)[order] * scored.unit_size(gi)
            per = np.where(np.isfinite(per), per, 1e6)   # unscorable: kept first
            if scored.units[gi] is None:   # single channels: by their own order
                per = np.where(np.isfinite(scored.norm[gi]), scored.norm[gi], 1e6)
                per = -np.sort(-per)
            self._gain[gi] = np.concatenate([[0.0], np.cumsum(per)])
        self._macs_memo, self._plans = {}, {}
        self.uniform_ratio = {}   # plan -> the ratio it was widened from (the report)
        self.breaks = sorted({round(1.0 - w / scored.size(gi), 12)
                              for gi, c in cands.items() for w in c})

    # ------------------------------------------------------------ value
    @staticmethod
    def _key(widths):
        return tuple(sorted((int(g), int(n)) for g, n in widths.items()))

    def plan(self, widths):
        """The plan ``{group: kept indices}`` of a width plan (memoised)."""
        key = self._key(widths)
        keep = self._plans.get(key)
        if keep is None:
            keep = self._plans[key] = keep_of(self.scored, widths)
        return keep

    def predicted(self, widths):
        """Predicted ms of a width plan."""
        return self.predict(self.plan(widths), key=self._key(widths))

    def value(self, widths):
        """What the search keeps most of: normalised importance, or MACs."""
        if self.objective in ("macs", "uniform"):   # uniform: its widening keeps MACs
            key = tuple(sorted(widths.items()))
            if key not in self._macs_memo:
                self._macs_memo[key] = float(self._macs(self.plan(widths)))
            return self._macs_memo[key]
        return float(sum(self._gain[gi][n // self.scored.unit_size(gi)]
                         for gi, n in widths.items()))

    def search(self, goal):
        """``(widths, predicted ms)`` for ``goal`` by the objective's moves."""
        return self.uniform(goal) if self.objective == "uniform" else self.greedy(goal)

    # ------------------------------------------------------------ moves
    def uniform(self, goal):
        """The least ratio (widest uniform plan) whose prediction fits
        ``goal``; then groups widened back (most value per ms) while it fits."""
        w = {gi: c[0] for gi, c in self.cands.items()}
        ratio = self.breaks[-1] if self.breaks else 0.0
        for r in self.breaks:
            if self.predicted(self.uniform_widths(r)) <= goal:
                w, ratio = self.uniform_widths(r), r
                break
        pos = {gi: self.cands[gi].index(n) for gi, n in w.items()}
        w, _, p = self.widen(w, pos, self.predicted(w), goal)
        self.uniform_ratio[tuple(sorted(w.items()))] = ratio
        return w, p

    def uniform_widths(self, ratio):
        """Every group at ``ratio``, rounded up to an allowed width."""
        sizes = self.scored.size
        return {gi: next((w for w in c if w >= sizes(gi) * (1.0 - ratio) - 1e-9), c[-1])
                for gi, c in self.cands.items()}

    def greedy(self, goal):
        """:meth:`narrow`, then :meth:`widen` and :meth:`swaps`."""
        widths, pos, cur = self.narrow(goal)
        return self.swaps(*self.widen(widths, pos, cur, goal), goal)

    def narrow(self, goal):
        """From the full model, narrow the group losing the least value per
        predicted ms saved until the prediction fits ``goal``."""
        pos = {gi: len(c) - 1 for gi, c in self.cands.items()}
        widths = {gi: self.scored.size(gi) for gi in self.groups}
        cur = self.predicted(widths)
        while cur > goal:
            best = None
            for gi in self.groups:
                # look a few candidates down: noisy tables have small plateaus
                for k in range(max(0, pos[gi] - LOOKAHEAD), pos[gi]):
                    w = dict(widths)
                    w[gi] = self.cands[gi][k]
                    p = self.predicted(w)
                    if cur - p <= 0:
                        continue
                    score = (self.value(widths) - self.value(w)) / (cur - p)
                    if best is None or score < best[0]:
                        best = (score, gi, p, k)
            if best is None:
                break
            _, gi, cur, k = best
            pos[gi] = k
            widths[gi] = self.cands[gi][k]
        return widths, pos, cur

    def widen(self, widths, pos, cur, goal):
        """Widen groups one candidate at a time, the most value per predicted
        ms first, while the prediction still fits."""
        while True:
            best = None
            for gi in self.groups:
                if pos[gi] == len(self.cands[gi]) - 1:
                    continue
                w = dict(widths)
                w[gi] = self.cands[gi][pos[gi] + 1]
                p = self.predicted(w)
                if p > goal:
                    continue
                score = (self.value(w) - self.value(widths)) / max(p - cur, 1e-12)
                if best is None or score > best[0]:
                    best = (score, gi, p)
            if best is None:
                return widths, pos, cur
            _, gi, cur = best
            pos[gi] += 1
            widths[gi] = self.cands[gi][pos[gi]]

    def swaps(self, widths, pos, cur, goal):
        """Pair moves: narrow one group by up to LOOKAHEAD candidates and widen
        another while the prediction still fits, as long as one raises the
        value (the greedy's ratio rule misses trades between a cheap-per-ms
        and an expensive-per-ms group)."""
        for _ in range(MAX_SWAPS):
            best = self._best_swap(widths, pos, goal)
            if best is None:
                break
            _, gi, k, gj, kk, cur = best
            pos[gi], pos[gj] = k, kk
            widths[gi], widths[gj] = self.cands[gi][k], self.cands[gj][kk]
        return widths, cur

    def _best_swap(self, widths, pos, goal):
        """``(value, gi, k, gj, kk, predicted)`` of the best pair move, or None."""
        base, best, cands = self.value(widths), None, self.cands
        for gi in self.groups:
            for k in range(max(0, pos[gi] - LOOKAHEAD), pos[gi]):
                w = dict(widths)
                w[gi] = cands[gi][k]
                for gj in self.groups:
                    top = min(len(cands[gj]), pos[gj] + 1 + LOOKAHEAD)
                    for kk in range(pos[gj] + 1, top) if gj != gi else ():
                        w2 = dict(w)
                        w2[gj] = cands[gj][kk]
                        p = self.predicted(w2)
                        if p > goal:
                            break
                        v = self.value(w2)
                        if v > base * (1 + 1e-9) and (best is None or v > best[0]):
                            best = (v, gi, k, gj, kk, p)
        return best

    # ------------------------------------------------------------ rounds
    def rounds(self, measure, refit, aim, target, tolerance=0.03, max_rounds=8,
               confirm=False, state=dict):
        """Search, measure, refit, search again until a result measures within
        ``tolerance`` under ``aim`` (at most ``max_rounds``).

        Args:
            measure: ``fn(keep) -> (ms, note)``: the built plan timed (``note``:
                extra fields for its history entry).
            refit: ``fn(keep, ms)``: the prediction refitted on a measured plan.
            aim / target: the latency aimed at, and the one not to exceed.
            confirm: measure a result under ``aim`` twice (the slower counts):
                one side-by-side run can be lucky by a few %.
            state: ``fn() -> dict``: the prediction's fit, kept in the history.

        Returns:
            ``(widths, predicted, measured, met, margin_met, history)``.
        """
        history, best, loose, goal = [], None, None, aim
        for _ in range(int(max_rounds)):
            widths, cur = self.search(goal)
            measured, note = measure(self.plan(widths))
            history.append({"predicted_ms": float(cur), "measured_ms": float(measured),
                            **state(), **note})
            if confirm and measured <= aim:
                again, _ = measure(self.plan(widths))
                history[-1]["confirm_ms"] = float(again)
                measured = max(measured, again)
            if measured <= aim and (best is None or measured > best[2]):
                best = (widths, cur, measured)
            elif measured <= target and (loose is None or measured > loose[2]):
                loose = (widths, cur, measured)   # under the target, not by the margin
            if aim * (1 - tolerance) <= measured <= aim:
                break
            refit(self.plan(widths), measured)   # refit on this result, search again
            # What the refit still gets wrong about this plan moves the goal by
            # as much: the next plan aims at aim x refitted prediction / measured.
            goal = aim * min(1.05, max(0.5, self.predicted(widths) / measured))
            history[-1]["next_goal_ms"] = float(goal)
        widths, cur, measured = best or loose or (widths, cur, measured)
        return widths, cur, measured, best is not None or loose is not None, \
            best is not None, history
