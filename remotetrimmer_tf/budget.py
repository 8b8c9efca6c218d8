"""Prune to a budget: the MACs / parameters of a plan, counted without surgery.

:class:`PlanCost` reads a :class:`~remotetrimmer_tf.graph.DependencyGraph`
once and then counts, for any ``keep`` plan (``{group: kept indices}``), the
MACs and trainable parameters the pruned model would have -- the same
numbers :func:`~remotetrimmer_tf.metrics.count_macs` /
:func:`~remotetrimmer_tf.metrics.count_params` give on the model the surgeon
builds, without building it:

- MACs: every conv / dense call is counted with
  ``metrics.layer_macs`` on its original shapes, with the number of kept
  positions of its input and output channel maps.
- Parameters: each layer's handler is asked once (``handler.prune`` on
  zero-cost placeholder weights) how its weight shapes shrink when one
  channel of an input or output goes; the axes are affine in the kept
  counts, so a weight's size is the product of its affine axes.

:func:`solve_budget` finds the plan closest to a MACs or parameter budget
without exceeding it: one ratio for every group (local scope, bisection over
the exact ratios where some group's width changes) or a prefix of the global
ranking (global scope, bisection over the number of removed channels).
Rounding, ``min_channels`` and ``ignore`` apply as for a ratio, because the
pruner's own width rules are reused.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np

from remotetrimmer_tf.choices import (DEFAULT_OBJECTIVE, DTYPES, LATENCY_MARGIN_MAX,
                                      OBJECTIVES, RUNTIMES)
from remotetrimmer_tf.graph.functional_view import graph_of
from remotetrimmer_tf.metrics import (call_macs, call_view, channels_of, layer_calls, layer_macs,
                                      layer_nodes)

__all__ = ["PlanCost", "solve_budget", "BUDGET_KINDS"]

BUDGET_KINDS = ("macs", "params")


class PlanCost:
    """MACs and trainable parameters of a pruning plan, counted analytically.

    Args:
        graph: a ``DependencyGraph`` of the model that will be pruned.

    Example:

    ```python
    g = DependencyGraph(model)
    cost = PlanCost(g)
    cost.macs({})          # == count_macs(model)
    cost.macs(keep)        # == count_macs(prune_channels(model, keep, graph=g))
    ```
    """

    def __init__(self, graph):
        self.graph = graph
        self.model = graph.model
        nodes = graph.nodes
        self._maps = []          # atom-class arrays of every map we count on
        index = {}

        def map_id(m):
            key = id(m)
            if key not in index:
                index[key] = len(self._maps)
                self._maps.append(graph.channel_ids(m))
            return index[key]

        # ---- MACs: one record per conv / dense call; layers whose handler
        # counts its own MACs (attention, EinsumDense) get a hook record
        self._hook_records = _hook_records(self.model, nodes, map_id)
        hooked = {r[1] for r in self._hook_records}
        self._mac_records = []   # (layer, in_shape, out_shape, in_id, out_id, full)
        for layer, name, in_shape, out_shape in layer_calls(graph_of(self.model)):
            if name in hooked:
                continue
            full = layer_macs(layer, in_shape, out_shape)
            if not full:
                continue
            info = nodes.get(name)
            if info is None or not info.in_maps or not info.out_maps:
                self._mac_records.append((layer, in_shape, out_shape, None, None, full))
                continue
            mi, mo = info.in_maps[0], info.out_maps[0]
            ii = map_id(mi) if len(mi) == channels_of(layer, in_shape) else None
            oo = map_id(mo) if len(mo) == channels_of(layer, out_shape) else None
            self._mac_records.append((layer, in_shape, out_shape, ii, oo, full))
        # ---- parameters: per trainable weight, its affine axes
        trainable = {id(w) for w in self.model.trainable_weights}
        seen = set()
        self._param_const = 0
        self._param_terms = []   # (base (ndim,), [(map id, full len, slope (ndim,))])
        for name, info in nodes.items():
            if info.nested:
                continue
            layer = info.layer
            weights = list(getattr(layer, "weights", None) or [])
            if not weights:
                continue
            flags = []
            for w in weights:
                fresh = id(w) not in seen
                seen.add(id(w))
                flags.append(fresh and id(w) in trainable)
            if not any(flags):
                continue
            shapes = [tuple(int(d) for d in w.shape) for w in weights]
            maps = list(info.in_maps) + list(info.out_maps)
            probes = self._probe(layer, info, shapes)
            for k, (shape, flag) in enumerate(zip(shapes, flags)):
                if not flag:
                    continue
                terms = []
                for j, m in enumerate(maps):
                    p = probes[j]
                    if p is None:
                        continue
                    p, unit = p
                    slope = np.asarray(shape) - np.asarray(p[k])
                    if unit > 1:     # one unit (attention head) was removed
                        slope = slope / unit
                    if np.any(slope):
                        terms.append((map_id(m), len(m), slope))
                if terms:
                    self._param_terms.append((np.asarray(shape, np.int64), terms))
                else:
                    self._param_const += math.prod(shape)

    def _probe(self, layer, info, shapes):
        """``(weight shapes, unit size)`` after removing channel 0 of each input
        / output map (its whole unit where the group has ``units``)."""
        handler = info.handler
        n_in = len(info.in_maps)
        maps = list(info.in_maps) + list(info.out_maps)
        full = [np.ones(len(m), bool) for m in maps]
        zero = np.zeros((), np.float32)
        try:
            base_cfg = layer.get_config()
        except Exception:  # noqa: BLE001 - some layers have no config; handlers may not need it
            base_cfg = {}
        out = []
        for j, m in enumerate(maps):
            if handler is None or len(m) < 2:
                out.append(None)
                continue
            masks = [f.copy() for f in full]
            drop, unit = _first_unit(self.graph, m)
            masks[j][drop] = False
            ws = [np.broadcast_to(zero, s) for s in shapes]
            _, new = handler.prune(layer, copy.deepcopy(base_cfg), ws,
                                   masks[:n_in], masks[n_in:])
            if len(new) != len(shapes):
                raise ValueError(
                    f"PlanCost: the handler of layer '{layer.name}' returned "
                    f"{len(new)} weights for {len(shapes)}; parameters cannot be "
                    "counted without surgery.")
            out.append(([tuple(np.shape(w)) for w in new], unit))
        return out

    # ------------------------------------------------------------- counting
    def kept(self, keep):
        """Kept positions of every counted channel map (list of ints)."""
        mask = self.graph.channel_mask(keep)
        return [int(mask[c].sum()) for c in self._maps]

    def macs(self, keep):
        """MACs (batch 1) the model pruned by ``keep`` would have."""
        kept = self.kept(keep)
        total = 0
        for layer, in_shape, out_shape, ii, oo, full in self._mac_records:
            if ii is None and oo is None:
                total += full
                continue
            groups = int(getattr(layer, "groups", 1) or 1)
            n_out = kept[oo] if oo is not None else channels_of(layer, out_shape)
            if groups > 1:   # depthwise written as Conv(groups=C): groups follow C
                total += full // channels_of(layer, out_shape) * n_out
                continue
            n_in = kept[ii] if ii is not None else channels_of(layer, in_shape)
            total += layer_macs(layer, in_shape, out_shape, n_in, n_out)
        for layer, _, view, ins, outs in self._hook_records:
            counts = None if ins is None else ([kept[i] for i in ins], [kept[o] for o in outs])
            total += call_macs(layer, view, counts)
        return int(total)

    def params(self, keep):
        """Trainable parameters the model pruned by ``keep`` would have."""
        kept = self.kept(keep)
        total = self._param_const
        for base, terms in self._param_terms:
            dims = base.copy()
            for mid, n, slope in terms:
                dims = dims - slope * (n - kept[mid])
            total += int(round(float(np.prod(dims)))) if dims.dtype.kind == "f" \
                else int(np.prod(dims))
        return int(total)

    def count(self, kind, keep):
        """``macs`` or ``params`` of ``keep``."""
        if kind == "macs":
            return self.macs(keep)
        if kind == "params":
            return self.params(keep)
        raise ValueError(f"PlanCost: unknown budget kind {kind!r}; use one of {BUDGET_KINDS}.")


def _first_unit(graph, m):
    """Positions of map ``m`` holding the unit of its position 0 (a whole
    attention head where its group has ``units``), and the unit's size."""
    gid = graph.group_ids(m)
    units = graph.groups[int(gid[0])].units
    if units is None:
        return np.array([0]), 1
    pos = graph.positions(m)
    unit = units[np.nonzero((units == pos[0]).any(axis=1))[0][0]]
    return np.nonzero(np.isin(pos, unit) & (gid == gid[0]))[0], units.shape[1]


def _hook_records(model, nodes, map_id):
    """``(layer, name, call view, in map ids, out map ids)`` of the calls whose
    handler counts their MACs itself (``LayerHandler.macs``: attention...)."""
    from remotetrimmer_tf.graph.handlers.registry import get_handler
    out = []
    for layer, name, node in layer_nodes(graph_of(model), ops=True):
        handler = get_handler(layer)
        view = call_view(layer, name, node)
        if handler is None or handler.macs(layer, view) is None:
            continue
        info = nodes.get(name)
        if info is None:
            out.append((layer, name, view, None, None))
        else:
            out.append((layer, name, view, [map_id(m) for m in info.in_maps],
                        [map_id(m) for m in info.out_maps]))
    return out


# ---------------------------------------------------------------- search
def _local_ratios(sizes):
    """Every ratio in [0, 1) where some group's ``floor(C·(1 − r))`` changes."""
    rs = {0.0}
    for c in set(sizes):
        rs.update(1.0 - n / c for n in range(1, c + 1))
    return sorted(r for r in rs if 0.0 <= r < 1.0)


def _bisect_first(n, ok):
    """Smallest ``i`` in ``[0, n)`` with ``ok(i)`` (``ok`` monotone), else ``n``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def solve_budget(pruner, kind, target):
    """The plan of ``pruner`` closest to ``target`` MACs / params, not above it.

    Uses the pruner's scores and width rules (``round_to``, ``round_mode``,
    ``min_channels``, ``max_ratio`` in global scope); ``pruner.scores`` and
    ``pruner.graph`` must be set (``Pruner.plan`` calls this).

    Args:
        pruner: a ``Pruner`` whose importance scores are computed.
        kind: ``"macs"`` or ``"params"``.
        target: the budget (an int, > 0).

    Returns:
        ``(keep, info)``: the plan ``{group: kept indices}`` and
        ``{"kind", "target", "achieved", "unpruned", "min_reachable",
        "ratio", "evaluations", "search_s"}``.

    Raises:
        ValueError: the budget is below the smallest reachable value or
            above the unpruned model's (the message gives the range).
    """
    t0 = time.perf_counter()
    cost = PlanCost(pruner.graph)
    evals = [0]

    def count(keep):
        evals[0] += 1
        return cost.count(kind, keep)

    unpruned = count({})
    saved = pruner.ratio
    try:
        if pruner.scope == "local":
            ratios = _local_ratios([s.size for s in pruner.scores.values()])
            plan_at = lambda i: _plan(pruner, "local", ratios[i])  # noqa: E731
            n = len(ratios)
        else:
            total = sum(s.size for s in pruner.scores.values())
            plan_at = lambda i: _plan(pruner, "global", (i + 0.5) / total)  # noqa: E731
            n = total + 1
        lowest = count(plan_at(n - 1))
        what = "MACs" if kind == "macs" else "trainable parameters"
        if target < lowest or target > unpruned:
            raise ValueError(
                f"Pruner: target_{kind}={target:,} is outside the reachable range "
                f"[{lowest:,}, {unpruned:,}] {what} of model {pruner.model.name!r} "
                f"(scope={pruner.scope!r}, min_channels={pruner.min_channels}, "
                f"round_to={pruner.round_to}, max_ratio={pruner.max_ratio}); "
                f"give a target in that range.")
        i = _bisect_first(n, lambda j: count(plan_at(j)) <= target)
        keep = plan_at(i)
        if pruner.scope == "local":
            ratio = ratios[i]
        else:   # widen back what still fits (rounding makes the ranking's steps coarse)
            keep = _fill(pruner, keep, count, target)
            ratio = 1.0 - sum(len(v) for v in keep.values()) / max(1, n - 1)
        achieved = count(keep)
    finally:
        pruner.ratio = saved
    info = {"kind": kind, "target": int(target), "achieved": int(achieved),
            "unpruned": int(unpruned), "min_reachable": int(lowest),
            "ratio": float(ratio), "evaluations": evals[0],
            "search_s": time.perf_counter() - t0}
    return keep, info


def _fill(pruner, keep, count, target):
    """Global scope: widen groups (by ``round_to``, most important next channel
    first) while the plan stays within ``target``."""
    keep = {gi: np.asarray(v) for gi, v in keep.items()}
    step = max(1, pruner.round_to)
    for _ in range(4 * len(pruner.scores) + 8):
        order = []
        for gi, sc in pruner.scores.items():
            n = len(keep.get(gi, sc))
            if n >= sc.size:
                continue
            finite = sc[np.isfinite(sc)]
            mean = finite.mean() if finite.size and finite.mean() > 0 else 1.0
            nxt = np.sort(sc)[::-1][n] / mean
            order.append((-nxt, gi, min(sc.size, (n // step + 1) * step)))
        changed = False
        for _, gi, width in sorted(order):
            trial = dict(keep)
            trial[gi] = pruner._top(pruner.scores[gi], width)
            if count(trial) <= target:
                keep, changed = trial, True
                break
        if not changed:
            break
    return keep


def _plan(pruner, scope, ratio):
    """The pruner's own local / global plan at ``ratio``."""
    pruner.ratio = ratio
    if scope == "local":
        return pruner._keep_local()
    return pruner._keep_global()


# ---------------------------------------------------------------- the Pruner's hook


def _positive(name, value, integer):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or float(value) <= 0 \
            or (integer and float(value) != int(value)):
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"Pruner: {name} must be {kind}, got {value!r}.")
    return int(value) if integer else float(value)


def resolve_target(ratio, target_macs=None, target_params=None, target_latency_ms=None,
                   runtime="litert", threads=1, dtype="float32", latency_model=None,
                   objective=DEFAULT_OBJECTIVE, target_latency_of=None, latency_margin=None):
    """Validate the budget arguments of ``Pruner``; ``None`` when pruning by ratio.

    Returns:
        ``None`` or ``{"kind": "macs" | "params" | "latency_ms", "target",
        "runtime", "threads", "dtype", "latency_model", "objective",
        "reference", "margin"}`` (``target_latency_of``: kind ``"latency_ms"``, target
        ``None`` until the search measures the reference model).

    Raises:
        ValueError: more than one target, a ratio together with a target, a bad
            value, or a latency target without the runtime installed.
    """
    given = {k: v for k, v in (("target_macs", target_macs), ("target_params", target_params),
                               ("target_latency_ms", target_latency_ms),
                               ("target_latency_of", target_latency_of)) if v is not None}
    if not given:
        return None
    if len(given) > 1:
        raise ValueError(f"Pruner: give one budget, got {sorted(given)}.")
    if ratio is not None:
        name = next(iter(given))
        raise ValueError(f"Pruner: ratio={ratio!r} and {name} conflict: a budget decides "
                         "the widths itself; drop ratio (or the target).")
    name = next(iter(given))
    value = given[name]
    reference = None
    if name == "target_latency_of":
        import keras
        if not isinstance(value, keras.Model) or not value.built:
            raise ValueError("Pruner: target_latency_of must be a built keras.Model (the "
                             "model to be no slower than), got "
                             f"{type(value).__name__}.")
        name, reference, value = "target_latency_ms", value, None
    kind = name[len("target_"):]
    out = {"kind": kind, "target": None if reference is not None else
           _positive(name, value, integer=kind != "latency_ms"),
           "runtime": runtime, "threads": threads, "dtype": dtype,
           "latency_model": latency_model, "objective": objective, "reference": reference,
           "margin": latency_margin}
    if kind == "latency_ms":
        if runtime not in RUNTIMES:
            raise ValueError(f"Pruner: runtime must be one of {RUNTIMES}, got {runtime!r}.")
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"Pruner: threads must be an int >= 1, got {threads!r}.")
        if dtype not in DTYPES:
            raise ValueError(f"Pruner: dtype must be one of {DTYPES}, got {dtype!r}.")
        if objective not in OBJECTIVES:
            raise ValueError(f"Pruner: objective must be one of {OBJECTIVES}, got {objective!r}.")
        if latency_margin is not None and (
                isinstance(latency_margin, bool)
                or not isinstance(latency_margin, (int, float, np.integer, np.floating))
                or not 0.0 <= float(latency_margin) < LATENCY_MARGIN_MAX):
            raise ValueError(f"Pruner: latency_margin must be a fraction in [0, "
                             f"{LATENCY_MARGIN_MAX}) (or None: measured from the timing "
                             f"noise), got {latency_margin!r}.")
        if latency_model is None:
            import importlib.util
            if importlib.util.find_spec("ai_edge_litert") is None:
                raise ValueError(
                    "Pruner: target_latency_ms needs the LiteRT runtime on this machine, "
                    "but ai_edge_litert is not installed (pip install ai-edge-litert), "
                    "or pass latency_model= with your own timing function.")
    return out
