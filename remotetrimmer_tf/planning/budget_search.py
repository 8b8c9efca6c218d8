"""MAC / parameter budgets: the ratio plan closest to a budget, not above it.

Local scope: one ratio for every group, bisection over the exact ratios
where some group's width (in units) changes. Global scope: bisection over
the number of channels removed from the global ranking, then groups widened
back (most important next unit first) while the budget allows. Every plan
evaluated is the one that would be built: the same width rules, units and
sections as a ratio plan (:func:`~remotetrimmer_tf.planning.ratio.plan_ratio`).
The cost is an input: any ``count(keep) -> int`` (``cost.PlanCost``).

Example:
    >>> import numpy as np
    >>> from remotetrimmer_tf.planning import ScoredGroups, WidthRules
    >>> sg = ScoredGroups.build({0: np.arange(1.0, 9.0), 1: np.ones(4)})
    >>> count = lambda keep: sum(len(keep.get(g, range(n))) for g, n in ((0, 8), (1, 4)))
    >>> keep, info = solve_budget(sg, WidthRules(), count, 7, "params")
    >>> info["achieved"], len(keep[0]), len(keep[1])
    (7, 5, 2)
"""

from __future__ import annotations

import time

import numpy as np

from remotetrimmer_tf.planning.ratio import plan_ratio
from remotetrimmer_tf.planning.widths import unit_rules

__all__ = ["solve_budget", "local_ratios", "BUDGET_KINDS", "BudgetOutOfRange"]

BUDGET_KINDS = ("macs", "params")


class BudgetOutOfRange(ValueError):
    """The budget is outside ``[lowest, unpruned]`` (the message gives the range)."""

    def __init__(self, message, lowest, unpruned):
        super().__init__(message)
        self.lowest, self.unpruned = lowest, unpruned


def local_ratios(slot_counts):
    """Every ratio in [0, 1) where some group's ``floor(n·(1 − r))`` changes
    (``n``: a group's channels, or units)."""
    rs = {0.0}
    for c in set(slot_counts):
        rs.update(1.0 - n / c for n in range(1, c + 1))
    return sorted(r for r in rs if 0.0 <= r < 1.0)


def bisect_first(n, ok):
    """Smallest ``i`` in ``[0, n)`` with ``ok(i)`` (``ok`` monotone), else ``n``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def solve_budget(scored, rules, count, target, kind, subject="the model"):
    """The plan closest to ``target`` (``count(plan) <= target``).

    Args:
        scored: the ``ScoredGroups``.
        rules: ``WidthRules`` (its ``ratio`` is ignored: the search sets it).
        count: ``fn(keep) -> int``, the cost of a plan (``{}``: unpruned).
        target: the budget (int > 0).
        kind: ``"macs"`` or ``"params"`` (for the report and messages).
        subject: how messages name the model (``"model 'resnet18'"``).

    Returns:
        ``(keep, info)``: the plan and ``{"kind", "target", "achieved",
        "unpruned", "min_reachable", "ratio", "evaluations", "search_s"}``.

    Raises:
        BudgetOutOfRange: the budget is below the smallest reachable value or
            above the unpruned model's (the message gives the range).
    """
    t0 = time.perf_counter()
    evals = [0]

    def counted(keep):
        evals[0] += 1
        return count(keep)

    unpruned = counted({})
    if rules.scope == "local":
        ratios = local_ratios([scored.size(gi) // scored.unit_size(gi) for gi in scored.groups])
        n = len(ratios)
        plan_at = lambda i: plan_ratio(scored, rules.at(ratios[i]))  # noqa: E731
    else:
        total = sum(scored.size(gi) for gi in scored.groups)
        n = total + 1
        plan_at = lambda i: plan_ratio(scored, rules, remove=i)  # noqa: E731
    lowest = counted(plan_at(n - 1))
    if target < lowest or target > unpruned:
        what = "MACs" if kind == "macs" else "trainable parameters"
        raise BudgetOutOfRange(
            f"target_{kind}={target:,} is outside the reachable range [{lowest:,}, "
            f"{unpruned:,}] {what} of {subject} (scope={rules.scope!r}, "
            f"min_channels={scored.min_channels}, round_to={rules.round_to}, "
            f"max_ratio={scored.max_ratio}); give a target in that range.", lowest, unpruned)
    i = bisect_first(n, lambda j: counted(plan_at(j)) <= target)
    keep = plan_at(i)
    if rules.scope == "local":
        ratio = ratios[i]
    else:   # widen back what still fits (rounding makes the ranking's steps coarse)
        keep = widen_within(scored, rules, keep, counted, target)
        ratio = 1.0 - sum(len(v) for v in keep.values()) / max(1, n - 1)
    info = {"kind": kind, "target": int(target), "achieved": int(counted(keep)),
            "unpruned": int(unpruned), "min_reachable": int(lowest), "ratio": float(ratio),
            "evaluations": evals[0], "search_s": time.perf_counter() - t0}
    return keep, info


def widen_within(scored, rules, keep, count, target):
    """Widen groups one rounding step at a time (``round_to``, whole units),
    the group whose next unit scores highest first, while ``count(keep)``
    stays within ``target``."""
    keep = {gi: np.asarray(v) for gi, v in keep.items()}
    for _ in range(4 * len(scored.groups) + 8):
        order = []
        for gi in scored.groups:
            size, u = scored.size(gi), scored.unit_size(gi)
            n = len(keep.get(gi, scored.scores[gi]))
            if n >= size:
                continue
            step = u * unit_rules(u, max(1, rules.round_to), scored.min_channels)[0]
            nxt = np.sort(scored.slot_scores(gi, normalised_=True))[::-1][n // u]
            order.append((-nxt, gi, min(size, (n // step + 1) * step)))
        changed = False
        for _, gi, width in sorted(order):
            trial = dict(keep)
            trial[gi] = scored.cover(gi, scored.top(gi, width))
            if count(trial) <= target:
                keep, changed = trial, True
                break
        if not changed:
            break
    return keep
