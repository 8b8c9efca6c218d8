"""Prune to a latency measured on the runtime: a per-layer latency model and a search.

:class:`LatencyModel` predicts the latency of a pruning plan from per-layer
lookup tables: every conv / dense call of the model is timed alone on the
runtime (LiteRT / XNNPACK, ``threads``, ``dtype``) at a few input and output
widths (a 1-D sweep of each, the full width of the other fixed), and

    t(n_in, n_out) ≈ t(n_in, C_out) · t(C_in, n_out) / t(C_in, C_out)

with linear interpolation between swept widths (depthwise layers: one
sweep of their single width). A model's latency is predicted as
``alpha · Σ t + beta · params`` (:class:`PlanLatency`): ``alpha`` folds in the
ops the tables do not time (adds, pooling, quantise ops), ``beta`` the
weights that stop fitting in cache as a model grows; both are fitted on the
whole models measured during the search (the unpruned one first). Measurements are cached on
disk per machine and runtime version (CPU model, ``ai_edge_litert`` version,
threads, dtype) under ``~/.cache/remotetrimmer_tf/latency/`` (or
``$RT_LATENCY_CACHE`` / ``cache_dir``), so a second search costs no timing.

``latency_budget.solve_latency`` (``Pruner(target_latency_ms=...)``) builds
the prediction and the measurement (:class:`Timing`) and hands them to
``planning.LatencySearch`` (one method per move), which chooses one width per
group among the runtime's efficient multiples (``block``, 16 by default;
``round_to`` when given): starting from the full model it repeatedly narrows
the group that loses the least normalised importance (``objective=
"importance"``, each group's scores divided by their mean) or the fewest MACs
(``objective="macs"``) per predicted millisecond saved, until the prediction
fits; then it widens back groups while the prediction still fits.
``objective="uniform"`` (the default) keeps the shape of a ratio-pruned model
instead: one ratio for every group, each width rounded up to an allowed
multiple, the least ratio whose prediction fits, then groups widened back
(most MACs per ms) while it still fits. The result is built and measured;
unless it measures within 3 % under the aim, it joins the fit and the search runs
again (at most 8 rounds); the best result measured under the aim is returned
(``met`` False, with a warning, if none was under the target).

The aim is the target less ``latency_margin``. With ``target_latency_of``
(a reference model, timed side by side with every candidate) the margin is by
default twice the machine's measured noise of one such comparison
(:func:`comparison_noise`: the reference against itself), so that a fresh
comparison of the result with the reference also finds it no slower; with a
plain ``target_latency_ms`` it is 0 unless given.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import weakref

import numpy as np

from remotetrimmer_tf.cost import PlanCost, channels_follow_groups

__all__ = ["LatencyModel", "PlanLatency", "Timing", "comparison_noise", "layer_spec",
           "default_cache_dir", "MAX_MARGIN"]


_TABLE_FORMAT = "2"   # bump when what a table cell means changes
NOISE_PAIRS = 6       # reference-vs-itself comparisons that measure the timing noise
MAX_MARGIN = 0.10     # the most the search aims under a reference for noise


def default_cache_dir():
    """``$RT_LATENCY_CACHE`` or ``~/.cache/remotetrimmer_tf/latency``."""
    return os.environ.get("RT_LATENCY_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "remotetrimmer_tf", "latency")


def layer_spec(layer, in_shape, out_shape):
    """What a layer's latency depends on, apart from its two widths (JSON-able)."""
    import keras

    cfg = layer.get_config()
    cfg.pop("name", None)
    for k in ("dtype", "trainable"):
        cfg.pop(k, None)
    ser = keras.saving.serialize_keras_object(layer)
    spec = {"module": ser.get("module"), "class_name": ser.get("class_name"),
            "registered_name": ser.get("registered_name"), "config": cfg,
            "in_shape": [int(d) for d in in_shape[1:-1]],
            "full": [int(in_shape[-1]), int(out_shape[-1])]}
    spec["key"] = _spec_key(spec)
    return spec


def _spec_key(spec):
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _grid(full, floor, block, points):
    """``points`` widths in ``[floor, full]`` (multiples of ``block``) plus ``full``."""
    lo = max(1, int(floor))
    mults = [w for w in range(block, full, block) if w >= lo] or [lo]
    if len(mults) > points - 1:
        idx = np.linspace(0, len(mults) - 1, points - 1).round().astype(int)
        mults = [mults[i] for i in sorted(set(idx.tolist()))]
    return sorted(set(mults + [full]))


def _pair(block):
    """``(input step, output step)`` of a sweep step given as one int or a pair."""
    return (int(block), int(block)) if np.ndim(block) == 0 else (int(block[0]), int(block[1]))


def _interp(table, n):
    """Linear interpolation over the swept widths, made non-decreasing in the
    width (a wider layer is never faster; a noisy cell is lifted to its
    narrower neighbour's time)."""
    xs = sorted(table)
    ys = np.maximum.accumulate([table[x] for x in xs])
    return float(np.interp(n, xs, ys))


# how whole models are timed (40 rounds spread over ~1 s: the minimum survives
# short bursts of load); tools/bench_budget.py times its table the same way
MODEL_TIMING = {"runs": 10, "rounds": 40, "gap_s": 0.025}


class LatencyModel:
    """Per-layer latency lookup tables for one runtime setting, cached on disk.

    Args:
        runtime: ``"litert"`` (the ai_edge_litert interpreter, XNNPACK).
        threads: interpreter threads.
        dtype: ``"float32"`` or ``"int8"`` (full-integer; calibrated on random
            inputs, or ``representative_data``).
        cache_dir: where the tables are kept (default :func:`default_cache_dir`).
        layer_timer: ``fn(spec, n_in, n_out) -> ms`` (default: LiteRT,
            ``export.litert_timing.time_layer``); pass your own to model
            another runtime, or a fake in tests.
        model_timer: ``fn(keras_model) -> ms`` (default: LiteRT
            ``export.litert_timing.time_model``).
        key: the cache key (default: CPU model, runtime version, threads,
            dtype; with custom timers give your own).
        points: swept widths per axis of each layer (plus the full width).
        representative_data: int8 calibration images for whole-model timing.

    Example:

    ```python
    lm = LatencyModel(threads=1, dtype="int8")
    pruner = Pruner(model, importance="l1", target_latency_ms=0.2, latency_model=lm)
    small = pruner.prune()
    pruner.budget_report["measured_ms"], pruner.budget_report["predicted_ms"]
    ```
    """

    def __init__(self, runtime="litert", threads=1, dtype="float32", cache_dir=None,
                 layer_timer=None, model_timer=None, key=None, points=4,
                 representative_data=None):
        if runtime != "litert" and (layer_timer is None or model_timer is None):
            raise ValueError(f"LatencyModel: runtime {runtime!r} needs layer_timer and "
                             "model_timer; only 'litert' is built in.")
        self.runtime, self.threads, self.dtype = runtime, int(threads), dtype
        self.points = int(points)
        self.representative_data = representative_data
        self._layer_timer = layer_timer
        self._model_timer = model_timer
        if key is None:
            if layer_timer is not None:
                raise ValueError("LatencyModel: with a custom layer_timer, give key= "
                                 "(what its measurements depend on).")
            from remotetrimmer_tf.export.litert_timing import machine_key
            key = machine_key(runtime, threads, dtype)
        self.key = dict(key, tables=_TABLE_FORMAT)
        self.cache_dir = cache_dir or default_cache_dir()
        name = hashlib.sha1(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.cache_path = os.path.join(self.cache_dir, f"{runtime}-{dtype}-t{threads}-{name}.json")
        self.measured = 0          # layer measurements taken (not from the cache)
        self._converted = weakref.WeakKeyDictionary()   # model -> .tflite (models_ms)
        self.table = self._load()

    # ------------------------------------------------------------ cache
    def _load(self):
        try:
            with open(self.cache_path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        if data.get("key") != self.key:
            return {}
        return data.get("layers", {})

    def save(self):
        """Write the tables to the cache file (atomically)."""
        from remotetrimmer_tf.utils.files import write_text_atomic

        os.makedirs(self.cache_dir, exist_ok=True)
        write_text_atomic(self.cache_path,
                          json.dumps({"key": self.key, "layers": self.table}, sort_keys=True))

    # ------------------------------------------------------------ timing
    def layer_ms(self, spec, n_in, n_out):
        """Latency of ``spec``'s layer at ``n_in`` -> ``n_out`` (measured once, cached)."""
        key = spec.get("key") or _spec_key(spec)
        entry = self.table.setdefault(key, {"class_name": spec["class_name"], "ms": {}})
        cell = f"{int(n_in)}x{int(n_out)}"
        if cell not in entry["ms"]:
            if self._layer_timer is None:
                from remotetrimmer_tf.export.litert_timing import time_layer
                ms = max(0.0, time_layer(spec, n_in, n_out, self.threads, self.dtype)
                         - self.overhead_ms())
            else:
                ms = self._layer_timer(spec, int(n_in), int(n_out))
            entry["ms"][cell] = float(ms)
            self.measured += 1
            if self.measured % 16 == 0:   # an interrupted search keeps its timings
                self.save()
        return entry["ms"][cell]

    def prefetch(self, cells):
        """Measure every ``(spec, n_in, n_out)`` cell not yet in the table, all
        at once: the built-in LiteRT timer converts them together into
        multi-signature ``.tflite`` files (one conversion per ``chunk`` layers
        instead of one per cell -- what makes a cold search fast); a custom
        ``layer_timer`` is called per cell."""
        todo, seen = [], set()
        for spec, n_in, n_out in cells:
            key = spec.get("key") or _spec_key(spec)
            cell = f"{int(n_in)}x{int(n_out)}"
            entry = self.table.get(key)
            if (key, cell) in seen or (entry is not None and cell in entry["ms"]):
                continue
            seen.add((key, cell))
            todo.append((spec, int(n_in), int(n_out)))
        if not todo:
            return 0
        if self._layer_timer is not None:
            for spec, n_in, n_out in todo:
                self.layer_ms(spec, n_in, n_out)
            return len(todo)
        from remotetrimmer_tf.export.litert_timing import time_layers
        ms = time_layers(todo, self.threads, self.dtype)
        for (spec, n_in, n_out), t in zip(todo, ms):
            key = spec.get("key") or _spec_key(spec)
            entry = self.table.setdefault(key, {"class_name": spec["class_name"], "ms": {}})
            entry["ms"][f"{n_in}x{n_out}"] = float(t)
        self.measured += len(todo)
        self.save()
        return len(todo)

    def sweep_cells(self, spec, channelwise, floors, block):
        """The cells :meth:`layer_predict` may read for ``spec``: the full
        width and the two 1-D sweeps (one sweep for a channel-wise layer).
        ``block``: the sweeps' step, or ``(input step, output step)``."""
        c_in, c_out = spec["full"]
        b_in, b_out = _pair(block)
        if channelwise:
            return [(spec, w, w) for w in _grid(c_out, floors[1], b_out, self.points)]
        return ([(spec, c_in, c_out)]
                + [(spec, w, c_out) for w in _grid(c_in, floors[0], b_in, self.points)]
                + [(spec, c_in, w) for w in _grid(c_out, floors[1], b_out, self.points)])

    def model_ms(self, model):
        """Measured latency of a whole Keras model (not cached)."""
        if self._model_timer is not None:
            return float(self._model_timer(model))
        from remotetrimmer_tf.export.litert_timing import time_model
        return time_model(model, self.threads, self.dtype, self.representative_data,
                          **MODEL_TIMING)

    def models_ms(self, models):
        """Measured latencies of several whole models side by side (their
        ratios survive the machine's drift; not cached). With a custom
        ``model_timer`` it is called on each model in turn."""
        if self._model_timer is not None:
            return [float(self._model_timer(m)) for m in models]
        from remotetrimmer_tf.export.litert_timing import convert, time_interleaved
        items = []
        for m in models:   # a model timed again (a search's reference) is converted once
            if m not in self._converted:
                self._converted[m] = convert(m, self.dtype, self.representative_data)
            items.append(self._converted[m])
        return time_interleaved(items, self.threads, self.dtype, **MODEL_TIMING)

    def overhead_ms(self):
        """The fixed cost of one invoke, subtracted from every layer timing
        (0 with a custom ``layer_timer``; measured once, cached)."""
        if self._layer_timer is not None:
            return 0.0
        if "__invoke__" not in self.table:
            from remotetrimmer_tf.export.litert_timing import time_invoke_overhead
            self.table["__invoke__"] = {"class_name": "invoke",
                                        "ms": {"0x0": time_invoke_overhead(self.threads, self.dtype)}}
        return self.table["__invoke__"]["ms"]["0x0"]

    # ------------------------------------------------------------ prediction
    def layer_predict(self, spec, channelwise, n_in, n_out, floors, block):
        """Table prediction for one layer (sweeps measured on first use);
        ``block`` as in :meth:`sweep_cells`."""
        c_in, c_out = spec["full"]
        b_in, b_out = _pair(block)
        if channelwise:
            grid = _grid(c_out, floors[1], b_out, self.points)
            return _interp({w: self.layer_ms(spec, w, w) for w in grid}, n_out)
        full = max(self.layer_ms(spec, c_in, c_out), 1e-9)
        t_in = 1.0
        if n_in != c_in:   # ratios within one monotone sweep: 1 at the full width
            tab = {w: self.layer_ms(spec, w, c_out)
                   for w in _grid(c_in, floors[0], b_in, self.points)}
            t_in = _interp(tab, n_in) / max(_interp(tab, c_in), 1e-9)
        t_out = 1.0
        if n_out != c_out:
            tab = {w: self.layer_ms(spec, c_in, w)
                   for w in _grid(c_out, floors[1], b_out, self.points)}
            t_out = _interp(tab, n_out) / max(_interp(tab, c_out), 1e-9)
        return full * t_in * t_out


class PlanLatency:
    """Predicted latency of pruning plans (``{group: kept indices}``).

    ``predict = alpha · Σ layer tables + beta · trainable params``: ``alpha``
    folds in what the tables do not time (adds, pooling, quantise ops),
    ``beta`` the cost of streaming weights that no longer stay in cache as a
    model grows (a layer timed alone keeps its weights in cache). Calibrated
    on the measured unpruned model (``alpha`` only), and refitted by
    :meth:`fit` on every measured model (non-negative least squares on
    relative errors). Which plans are tried is the search's business
    (``planning.LatencySearch``; ``latency_budget.width_latency`` for plans
    given as widths).

    Args:
        graph: the ``DependencyGraph`` of the model to prune (its
            ``source_model`` is what :meth:`build` prunes and times).
        lm: the ``LatencyModel``.
        block: widths move in multiples of this many tensor positions.
        narrowest: the narrowest plan the search may try (the table sweeps
            start at its widths; default: the full model).

    Example:

    ```python
    pl = PlanLatency(graph, LatencyModel(threads=1, dtype="int8"), narrowest=keep_min)
    pl.predict(keep), pl.build(keep)
    ```
    """

    def __init__(self, graph, lm, block=16, narrowest=None):
        self.graph, self.lm, self.block = graph, lm, int(block)
        self.model = graph.source_model
        self.cost = PlanCost(graph)
        self.records = self._records()
        # the narrowest kept count of every counted map: the sweeps' lower end
        self.floors = dict(enumerate(self.cost.kept(narrowest or {})))
        self.lm.prefetch(self._cells())   # every table cell the search can read, timed at once
        self.unpruned_ms = lm.model_ms(self.model)
        self._layer_memo, self._plan_memo = {}, {}   # the tables are fixed from here on
        self.points = []              # (raw table sum, params, measured ms)
        self.alpha, self.beta = 1.0, 0.0
        self.add_point({}, self.unpruned_ms)

    def _records(self):
        """``(spec, channel-wise, in map, out map, (in block, out block))`` per
        counted call; a map whose channels take ``r`` positions each (a grouped
        convolution) is swept in multiples of ``lcm(block, r)``."""
        spread = self.cost.map_spread
        out = []
        for layer, in_shape, out_shape, ii, oo, _ in self.cost.mac_records:
            channelwise = (ii is not None and ii == oo) or \
                channels_follow_groups(layer, in_shape) or \
                type(layer).__name__.startswith("DepthwiseConv")
            blocks = tuple(self.block if m is None else math.lcm(self.block, spread[m])
                           for m in (ii, oo))
            out.append((layer_spec(layer, in_shape, out_shape), channelwise, ii, oo, blocks))
        return out

    def _floors(self, spec, ii, oo):
        c_in, c_out = spec["full"]
        return (self.floors.get(ii, c_in), self.floors.get(oo, c_out))

    def _cells(self):
        cells = []
        for spec, cw, ii, oo, blocks in self.records:
            c_in, c_out = spec["full"]
            fl = self._floors(spec, ii, oo)
            if ii is None:      # the input width never changes: no input sweep
                fl = (c_in, fl[1])
            if oo is None:
                fl = (fl[0], c_out)
            cells += self.lm.sweep_cells(spec, cw, fl, blocks)
        return cells

    def add_point(self, keep, measured_ms):
        """Add a measured model (its plan ``keep``) and refit ``alpha``, ``beta``."""
        self.points.append((self._raw(keep), float(self.cost.params(keep)), float(measured_ms)))
        self.fit()

    def fit_state(self):
        """``{"alpha", "beta"}`` of the current fit."""
        return {"alpha": self.alpha, "beta": self.beta}

    target_ms = None   # set by the search: the fit then uses models near the target

    def fit(self):
        """Non-negative least squares of measured = alpha·raw + beta·params,
        each point weighted by 1/measured (relative errors); with a
        ``target_ms``, only the models measured within 3x of it (when any)."""
        pts = np.asarray(self.points, np.float64)
        if self.target_ms:
            near = (pts[:, 2] <= 3 * self.target_ms) & (pts[:, 2] >= self.target_ms / 3)
            if not near.any():
                # only models far from the target measured (the unpruned one): its
                # ratio to the tables is set by weights streaming from memory, not
                # by what a model near the target pays; the tables as timed are
                # the better first guess (measured: ResNet-18 at 1/20 of the
                # unpruned latency, 1.06 vs the unpruned model's 1.73)
                self.alpha, self.beta = 1.0, 0.0
                return
            pts = pts[near]
        if len(pts) < 2:
            self.alpha, self.beta = float(pts[-1, 2] / max(pts[-1, 0], 1e-12)), 0.0
            return
        A = pts[:, :2] / pts[:, 2:3]
        b = np.ones(len(pts))
        best = None
        for cols in ((0, 1), (0,), (1,)):
            sol, *_ = np.linalg.lstsq(A[:, cols], b, rcond=None)
            if np.any(sol < 0):
                continue
            coef = np.zeros(2)
            coef[list(cols)] = sol
            err = float(np.sum((A @ coef - b) ** 2))
            if best is None or err < best[0]:
                best = (err, coef)
        self.alpha, self.beta = (float(best[1][0]), float(best[1][1])) if best else (
            float(pts[0, 2] / max(pts[0, 0], 1e-12)), 0.0)

    def _raw(self, keep):
        kept = self.cost.kept(keep)
        total = 0.0
        memo = self._layer_memo
        for r, (spec, cw, ii, oo, blocks) in enumerate(self.records):
            c_in, c_out = spec["full"]
            n_in = kept[ii] if ii is not None else c_in
            n_out = kept[oo] if oo is not None else c_out
            t = memo.get((r, n_in, n_out))
            if t is None:   # the tables do not change during a search: one lookup per cell
                t = memo[(r, n_in, n_out)] = self.lm.layer_predict(
                    spec, cw, n_in, n_out, self._floors(spec, ii, oo), blocks)
            total += t
        return total

    def _plan_terms(self, keep, key):
        """``(raw table sum, params)`` of a plan, memoised under ``key``."""
        terms = self._plan_memo.get(key) if key is not None else None
        if terms is None:
            terms = (self._raw(keep), float(self.cost.params(keep)))
            if key is not None:
                self._plan_memo[key] = terms
        return terms

    def predict(self, keep, key=None):
        """Predicted latency (ms) of a plan; ``key``: a hashable name of the
        plan under which its table terms are memoised (they never change)."""
        raw, params = self._plan_terms(keep, key)
        return self.alpha * raw + (self.beta * params if self.beta else 0.0)

    def macs(self, keep):
        """MACs of a plan."""
        return self.cost.macs(keep)

    def build(self, keep):
        """The pruned Keras model of a plan."""
        from remotetrimmer_tf.surgeon import prune_channels
        return prune_channels(self.model, keep, graph=self.graph)


def comparison_noise(lm, reference, pairs=NOISE_PAIRS):
    """The timing noise of one side-by-side comparison on this machine: the
    ``reference`` timed against itself ``pairs`` times (``lm.models_ms``).

    Returns:
        ``{"sigma": 1.4826 x the median |log(time_a / time_b)|, "ratios": [...]}``
        (the standard deviation for normal noise around 1, robust to a burst of
        other load spoiling one run: measured on this 2-core VM, 2 of 6 ratios
        at 0.92-0.94 among four within 1 %; 0 on a noise-free timer).
    """
    ratios = []
    for _ in range(int(pairs)):
        a, b = lm.models_ms([reference, reference])
        ratios.append(float(a) / max(float(b), 1e-12))
    sigma = float(1.4826 * np.median(np.abs(np.log(np.asarray(ratios))))) if ratios else 0.0
    return {"sigma": sigma, "ratios": ratios}


class Timing:
    """How a plan is measured: built and timed alone, or side by side
    with a reference model (its time rescaled by ref0 / the reference's time
    in the same run, so the machine's drift between measurements cancels)."""

    def __init__(self, pl, reference):
        self.pl, self.reference, self.reference_ms = pl, reference, []
        self.ref0 = pl.lm.models_ms([reference])[0] if reference is not None else None

    def __call__(self, keep):
        """``(ms, note)`` of a plan (``note``: the reference's time, if any)."""
        small = self.pl.build(keep)
        if self.reference is None:
            return self.pl.lm.model_ms(small), {}
        c, r = self.pl.lm.models_ms([small, self.reference])
        self.reference_ms.append(float(r))
        return c * self.ref0 / r, {"reference_ms": float(r)}
