"""Prune to a latency budget: the latency model and the measurement
(``latency``) handed to the search (``planning.LatencySearch``).

:func:`solve_latency` is what ``Pruner(target_latency_ms=...)`` /
``target_latency_of=`` runs after scoring: a ``LatencyModel`` (LiteRT, or
your timing functions), a ``PlanLatency`` of the scored groups, the target
and the margin aimed under it, then the search's rounds (search, build and
measure, refit, search again) and the report.
"""

import time

from remotetrimmer_tf.choices import DEFAULT_OBJECTIVE
from remotetrimmer_tf.latency import (MAX_MARGIN, LatencyModel, PlanLatency, Timing,
                                      comparison_noise)
from remotetrimmer_tf.planning import LatencySearch, candidates, keep_of

__all__ = ["solve_latency", "width_latency"]


def _aim(budget, timing, lm):
    """``(target, margin, noise, aim)``: with a reference, the target is its
    latency and the margin by default twice the measured noise of one
    side-by-side comparison (measured: +-2.5 % at 0.1 ms on a 2-core VM), so a
    fresh comparison of the result with the reference also finds it no slower."""
    reference = budget.get("reference")
    target = timing.ref0 if reference is not None else float(budget["target"])
    margin, noise = budget.get("margin"), None
    if margin is None and reference is not None:
        noise = comparison_noise(lm, reference)
        margin = min(MAX_MARGIN, 2.0 * noise["sigma"])
    margin = float(margin or 0.0)
    return target, margin, noise, target * (1.0 - margin)


def _target_name(budget, target):
    """How a latency target reads in a message."""
    if budget.get("reference") is not None:
        return (f"target_latency_of='{budget['reference'].name}' "
                f"({target:.4g} ms measured)")
    return f"target_latency_ms={target:g}"


def _check_reachable(search, pl, timing, budget, target, aim):
    """When the narrowest plan's prediction is over ``aim``, measure it; a
    target below it is refused (the message names the fastest reachable)."""
    narrowest = {gi: c[0] for gi, c in search.cands.items()}
    if aim >= search.predicted(narrowest):
        return
    fastest, _ = timing(search.plan(narrowest))   # the fit may be off: measure it
    pl.add_point(search.plan(narrowest), fastest)
    if target < fastest:
        lm, sg = pl.lm, search.scored
        lm.save()
        raise ValueError(
            f"Pruner: {_target_name(budget, target)} is below the fastest reachable "
            f"{fastest:.4g} ms (measured, {lm.runtime} {lm.dtype} {lm.threads} "
            f"thread(s); unpruned {pl.unpruned_ms:.4g} ms; widths multiples of {pl.block}, "
            f"min_channels={sg.min_channels}, max_ratio={sg.max_ratio}); "
            "give a larger target.")


def solve_latency(graph, scored, budget, round_to=1):
    """The plan of ``scored`` that keeps the most value within
    ``budget["target"]`` ms on the runtime (``Pruner.plan`` calls this).

    Args:
        graph: the ``DependencyGraph`` (its ``source_model`` is built and timed).
        scored: the ``planning.ScoredGroups``.
        budget: ``planning.check_target``'s dict (+ ``latency_model``,
            ``tolerance``, ``max_rounds``).
        round_to: widths move in multiples of this (16 when 1).

    Returns:
        ``(keep, info)`` with ``info`` = ``{"kind": "latency_ms", "target",
        "predicted_ms", "measured_ms", "unpruned_ms", "achieved", "macs",
        "unpruned_macs", "widths", "block", "rounds", "layer_measurements",
        "cache", "search_s", ...}`` (``achieved`` is the measured latency).
    """
    t0 = time.perf_counter()
    lm = budget.get("latency_model") or LatencyModel(
        budget["runtime"], budget["threads"], budget["dtype"])
    pl, search = width_latency(graph, scored, lm, round_to if round_to > 1 else 16,
                               budget.get("objective", DEFAULT_OBJECTIVE))
    timing = Timing(pl, budget.get("reference"))
    target, margin, noise, aim = _aim(budget, timing, lm)
    pl.target_ms = target
    pl.fit()   # the first guess for this target (see PlanLatency.fit)
    _check_reachable(search, pl, timing, budget, target, aim)
    # 8 rounds: with a reference every plan under it is measured twice, and a
    # burst of load on a shared machine can spoil a round (seen: 2x)
    widths, cur, measured, met, margin_met, history = search.rounds(
        timing, pl.add_point, aim, target, float(budget.get("tolerance", 0.03)),
        int(budget.get("max_rounds", 8)), confirm=timing.reference is not None,
        state=pl.fit_state)
    lm.save()
    info = _latency_report(pl, timing, search, widths, cur, measured, history)
    info.update(target=target, met=met, margin=margin, aim_ms=float(aim),
                margin_met=margin_met, comparison_noise=noise,
                search_s=time.perf_counter() - t0)
    _warn_unmet(budget, info)
    return search.plan(widths), info


def width_latency(graph, scored, lm, block=16, objective=DEFAULT_OBJECTIVE):
    """``(PlanLatency, LatencySearch)`` of scored groups: the search's widths
    (``search.cands``, ``search.plan(widths)``, ``search.predicted(widths)``)
    over the latency model of ``graph`` (tables timed for every width the
    search can try).

    Example:

    ```python
    p = Pruner(model, importance="l1", ratio=0.0); p.plan()
    pl, search = width_latency(p.graph, p.scored_groups, LatencyModel(dtype="int8"))
    widths = {gi: c[0] for gi, c in search.cands.items()}
    search.predicted(widths), pl.build(search.plan(widths))
    ```
    """
    cands = {gi: candidates(scored, gi, block) for gi in scored.groups}
    narrowest = keep_of(scored, {gi: c[0] for gi, c in cands.items()})
    pl = PlanLatency(graph, lm, block, narrowest=narrowest)
    return pl, LatencySearch(scored, cands, pl.predict, objective, macs=pl.macs)


def _latency_report(pl, timing, search, widths, cur, measured, history):
    """The ``budget_report`` of a latency search (what it found and how)."""
    lm, keep = pl.lm, search.plan(widths)
    return {"kind": "latency_ms", "predicted_ms": float(cur),
            "measured_ms": float(measured), "achieved": float(measured),
            "unpruned_ms": float(pl.unpruned_ms), "macs": pl.cost.macs(keep),
            "unpruned_macs": pl.cost.macs({}),
            "widths": {int(gi): int(n) for gi, n in widths.items()},
            "block": int(pl.block), "objective": search.objective, "rounds": len(history),
            "history": history,
            "uniform_ratio": search.uniform_ratio.get(tuple(sorted(widths.items()))),
            "runtime": lm.runtime, "threads": lm.threads, "dtype": lm.dtype,
            "layer_measurements": lm.measured, "cache": lm.cache_path,
            "fit": {"alpha": pl.alpha, "beta": pl.beta,
                    "points": [list(map(float, q)) for q in pl.points]},
            "reference": None if timing.reference is None else {
                "name": timing.reference.name, "ms": float(timing.ref0),
                "side_by_side_ms": timing.reference_ms}}


def _warn_unmet(budget, info):
    """Say when no result measured under the target (or not by the margin)."""
    import warnings
    name = _target_name(budget, info["target"])
    if info["met"] and not info["margin_met"]:
        warnings.warn(f"Pruner: the result measured under {name} but not by the "
                      f"{100 * info['margin']:.1f} % noise margin ({info['measured_ms']:.4g} ms "
                      f"measured, aim {info['aim_ms']:.4g} ms): a fresh comparison may find it "
                      "slower. budget_report['margin_met'] is False.", stacklevel=4)
    if not info["met"]:
        warnings.warn(f"Pruner: no plan measured under {name} in {info['rounds']} rounds "
                      f"(last: {info['measured_ms']:.4g} ms measured); the machine may be "
                      "loaded. budget_report['met'] is False.", stacklevel=4)
