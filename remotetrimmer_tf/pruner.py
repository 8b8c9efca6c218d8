"""Pruner: decide the kept channels of every group, then rebuild a thinner model.

Flow: (``cap`` only: collect attention → fold the SE gates into the BNs) →
``DependencyGraph`` → importance per group → kept channels (local or global)
→ ``prune_channels``. The input model is never modified.
"""
import math
import warnings

import keras
import numpy as np

from remotetrimmer_tf.importance import get_importance
from remotetrimmer_tf.importance.reductions import REDUCTIONS, NoScoreError
from remotetrimmer_tf.errors import PruningError
from remotetrimmer_tf.shortfall import Shortfall, Summary
from remotetrimmer_tf.units import unit_scores, whole_units

__all__ = ["Pruner"]


# the one list (issue 18) and the one default
from remotetrimmer_tf.choices import DEFAULT_OBJECTIVE, ROUND_MODES  # noqa: E402


def _round_width(n, size, round_to, mode="up", floor=1):
    """``n`` kept channels rounded to a multiple of ``round_to`` by ``mode``.

    ``"up"`` (Torch-Pruning / TAO): the next multiple; ``"down"``: the previous
    one, so the model is no larger than the unrounded plan; ``"nearest"``:
    the closer one (ties up). Never above ``size`` (a group narrower than
    ``round_to`` stays whole) and never below ``max(floor, 1)``; a width that
    would round to 0 keeps ``round_to`` channels (or ``size`` if smaller).
    """
    if round_to <= 1:
        return int(min(size, max(1, floor, n)))
    if mode == "up":
        r = math.ceil(n / round_to) * round_to
    elif mode == "down":
        r = math.floor(n / round_to) * round_to
    else:
        r = math.floor(n / round_to + 0.5) * round_to
    if r < max(1, floor):
        r = math.ceil(max(1, floor) / round_to) * round_to
    return int(min(size, r))


def _kept_count(size, ratio, min_channels, round_to, round_mode="up"):
    """Published local rule: ``floor(C·(1 − ratio))``, floored at ``min_channels``
    and rounded to a multiple of ``round_to`` (:func:`_round_width`)."""
    n = max(min_channels, int(math.floor(size * (1.0 - ratio) + 1e-9)))
    return _round_width(n, size, round_to, round_mode, floor=min_channels)


def _check_ignore(model, ignore):
    """``ignore`` as a tuple; on a plain functional model its names are checked
    now (others against their functional view in ``plan``)."""
    ignore = (ignore,) if isinstance(ignore, str) else tuple(ignore)
    from remotetrimmer_tf.graph.functional_view import is_plain_functional
    try:
        plain = is_plain_functional(model)
    except TypeError as err:
        raise TypeError(f"Pruner: {err}") from None
    if plain:
        names = {layer.name for layer in model.layers}
        missing = [n for n in ignore if n.split("/")[0] not in names]
        if missing:
            raise ValueError(f"Pruner: ignore names layers not in model "
                             f"{model.name!r}: {missing}.")
    return ignore


def _check_gated(model):
    """``cap`` needs SqueezeExcite gates."""
    from remotetrimmer_tf.attention import _se_layers
    if not _se_layers(model):
        raise ValueError(
            f"Pruner: importance='cap' needs a model with SqueezeExcite gates, "
            f"but {model.name!r} has none. Train it with se=True, or use "
            "importance='slim' (plain BN gamma) for a plain model.")


class Pruner:
    """Structured channel pruner (RemoteTrimmer CAP and other criteria).

    Args:
        model: A functional or Sequential ``keras.Model`` (ours, a
            ``keras.applications`` model or your own). Never modified.
        importance: Criterion name (``"cap"``, ``"slim"``, ``"l1"``, ``"l2"``,
            ``"fpgm"``, ``"taylor"``, ``"random"``) or a callable
            ``fn(group, model, **ctx) -> (group.size,) scores``.
        ratio: Fraction of channels to remove, ``0 <= ratio < 1`` (default
            0.7; leave it out when a target is given).
        scope: ``"local"``: every group keeps ``floor(C·(1 − ratio))`` channels
            (published). ``"global"``: scores are normalised per group (divided
            by the group's mean score, so each group's scores average 1 and
            differently scaled layers compare) and the lowest
            ``floor(ratio · ΣC)`` channels across all groups are removed,
            each group keeping at least ``ceil(C·(1 − max_ratio))`` and
            ``min_channels``.
        round_to: Round every kept width to a multiple of this (e.g. 8 or 16:
            XNNPACK / mobile kernels work in channel blocks, so odd widths
            waste compute), never above the group's size.
        round_mode: ``"up"`` (default, as Torch-Pruning and TAO: keeps at
            least the planned channels), ``"down"`` (keeps at most the planned
            channels: no larger and faster than the unrounded model, never
            fewer than ``round_to`` or ``min_channels``) or ``"nearest"``.
        min_channels: Minimum channels any group keeps.
        ignore: Layer names whose output channels are left whole (every group
            the layer writes or carries; the groups it only reads stay prunable).
        reduction: How a group's members' scores combine (``"mean"``
            published, ``"max"``, ``"sum"``, ``"prod"``, ``"first"``).
        seed: Seed for ``random`` importance.
        attention: For ``cap`` on an SE model: the mean gate outputs (from
            ``collect_attention``); otherwise ``prune(data)`` collects them.
        steps: Batches used to collect attention / Taylor gradients.
        max_ratio: Global scope: the most any group may lose
            (default ``max(0.9, ratio)``).
        loss: Loss for ``taylor`` (default sparse CE from logits).
        target_macs, target_params: Prune to a budget instead of a ratio: the
            widths whose MACs / trainable parameters come closest to the
            target without exceeding it (local: one ratio for all groups;
            global: a cut of the ranking, widened back where the budget
            allows). See ``remotetrimmer_tf.budget``.
        target_latency_ms: Prune to a latency measured on the runtime
            (``runtime="litert"``, ``threads``, ``dtype`` ``"float32"`` or
            ``"int8"``): per-group widths in the runtime's efficient multiples
            that keep the most importance within the budget. See
            ``remotetrimmer_tf.latency``. ``latency_model``: a ready
            ``LatencyModel`` (e.g. with your own timing function);
            ``objective``: ``"uniform"`` (default: one ratio for every group,
            rounded up to the runtime's multiples, then groups widened by
            MACs per ms while it fits; at equal latency it kept the accuracy
            of the published widths, where the others lost 1-2 points), or
            per-group widths keeping the most normalised ``"importance"`` or
            the most ``"macs"`` within the latency.
            ``target_latency_of``: instead of a number, a Keras model to be
            no slower than on the runtime: its latency is the target, and
            every candidate is timed side by side with it, so the machine's
            drift over the search cancels out (``budget_report["reference"]``).
            ``latency_margin``: the fraction under the target the search aims
            at; default ``None``: with ``target_latency_of`` twice the measured
            noise of one side-by-side comparison (at most 10 %), so a fresh
            comparison agrees the result is no slower; otherwise 0.
            After ``plan``, ``budget_report`` holds target, achieved value and
            search time.
        unknown: A layer type without a handler: ``"error"`` (default) raises
            naming it; ``"freeze"`` leaves the channels around it unpruned.
        approximate: Kinds of non-exact pruning the user allows, e.g.
            ``("layernorm",)`` to prune through LayerNormalization /
            RMSNormalization over the channels (their statistics change, so
            the pruned model is not equivalent even for dead channels). Such
            groups are listed in ``approximate_groups`` and marked in
            ``summary()``, and a warning says so. Default: none (those groups
            are frozen).

    Models: functional, Sequential, keras-hub ``Backbone`` / task models,
    functional subclasses, nested backbones and composite layers (see
    ``graph.functional_view``). A keras-hub model comes back as its class
    (preprocessor carried over; presets work: docs/ecosystem.md); any other
    model that is not plain functional as a plain functional ``keras.Model``.

    Attributes (after ``plan``): ``graph``, ``scores`` (``{group: scores}``),
    ``skipped`` (``{group: reason}`` for groups left whole), ``attention``,
    ``folded_model`` (``cap``: the model that is actually pruned).

    Example:

    ```python
    pruner = Pruner(se_model, importance="cap", ratio=0.7)
    small = pruner.prune(train_ds)        # collects attention, folds, prunes
    ```
    """

    def __init__(self, model, importance="cap", ratio=None, scope="local",
                 round_to=1, min_channels=1, ignore=(), reduction="mean", seed=0,
                 attention=None, steps=None, max_ratio=None, loss=None,
                 round_mode="up", unknown="error", approximate=(),
                 # --- budgets (remotetrimmer_tf/budget.py) ---
                 target_macs=None, target_params=None, target_latency_ms=None,
                 runtime="litert", threads=1, dtype="float32", latency_model=None,
                 objective=DEFAULT_OBJECTIVE, target_latency_of=None, latency_margin=None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"Pruner: model must be a keras.Model, got {type(model).__name__}.")
        # --- budgets: a target replaces the ratio (budget.resolve_target validates)
        from remotetrimmer_tf.budget import resolve_target
        self.budget = resolve_target(ratio, target_macs, target_params, target_latency_ms,
                                     runtime, threads, dtype, latency_model, objective,
                                     target_latency_of, latency_margin)
        self.budget_report = None
        if ratio is None:
            ratio = 0.0 if self.budget else 0.7
        # --- end budgets
        self.model = model
        self.importance_name = importance if isinstance(importance, str) else getattr(
            importance, "__name__", "custom")
        self.importance = get_importance(importance)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
                or not 0.0 <= float(ratio) < 1.0:
            raise ValueError(
                f"Pruner: ratio must be a fraction of channels to remove in [0, 1), "
                f"got {ratio!r} (ratio >= 1 would remove every channel).")
        self.ratio = float(ratio)
        if scope not in ("local", "global"):
            raise ValueError(f"Pruner: scope must be 'local' or 'global', got {scope!r}.")
        self.scope = scope
        for arg, val in (("round_to", round_to), ("min_channels", min_channels)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"Pruner: {arg} must be an int >= 1, got {val!r}.")
        self.round_to = int(round_to)
        self.min_channels = int(min_channels)
        if round_mode not in ROUND_MODES:
            raise ValueError(f"Pruner: round_mode must be one of {ROUND_MODES}, "
                             f"got {round_mode!r}.")
        self.round_mode = round_mode
        self.ignore = _check_ignore(model, ignore)
        if unknown not in ("error", "freeze"):
            raise ValueError(f"Pruner: unknown must be 'error' or 'freeze', got {unknown!r}.")
        self.unknown = unknown
        from remotetrimmer_tf.graph.dependency_graph import check_approximate
        try:
            self.approximate = check_approximate(approximate)
        except ValueError as err:
            raise ValueError(f"Pruner: {err}") from None
        self.approximate_groups = {}
        if not callable(reduction) and reduction not in REDUCTIONS:
            raise ValueError(f"Pruner: unknown reduction {reduction!r}; use one of "
                             f"{sorted(REDUCTIONS)} or a callable.")
        self.reduction = reduction
        self.seed = int(seed)
        if max_ratio is None:
            max_ratio = max(0.9, self.ratio)
        if not self.ratio <= max_ratio < 1.0:
            raise ValueError(f"Pruner: max_ratio must be in [ratio, 1), got {max_ratio!r}.")
        self.max_ratio = float(max_ratio)
        self.steps = steps
        self.loss = loss
        self.attention = attention
        self.graph = None
        self.scores = {}
        self.skipped = {}
        self.folded_model = None
        self._keep = None
        self.shortfall = None
        self._is_cap = importance == "cap" or self.importance is get_importance("cap")
        if self._is_cap:
            _check_gated(model)

    # ------------------------------------------------------------ deciding
    def _target(self, data):
        """The model that is scored and pruned (the folded one for ``cap``)."""
        if not self._is_cap:
            return self.model
        if self.folded_model is not None:   # attention already collected and folded
            return self.folded_model
        from remotetrimmer_tf.attention import collect_attention, fold_attention
        if self.attention is None:
            if data is None:
                raise ValueError(
                    "Pruner(importance='cap'): pass data to plan()/prune() so the "
                    "mean SE attention can be collected, or give attention=.")
            self.attention = collect_attention(self.model, data, steps=self.steps)
        self.folded_model = fold_attention(self.model, self.attention)
        return self.folded_model

    def plan(self, data=None):
        """Decide the kept channels: ``{group_index: sorted kept indices}``.

        Only groups that lose channels are listed. ``data`` feeds ``cap``
        (attention) and ``taylor`` (gradients).
        """
        from remotetrimmer_tf.graph import DependencyGraph

        target = self._target(data)
        graph = self.graph
        if graph is None or graph.source_model is not target:
            graph = DependencyGraph(target, unknown=self.unknown,
                                    approximate=self.approximate)
        else:     # planning again: a traced view re-reads the model's weights
            from remotetrimmer_tf.graph import functional_view
            functional_view(target)
        self.graph = graph
        target = graph.model          # the plain functional model analysed
        # after folding, CAP is |γ'| of the folded BNs (= |γ|·s̄)
        score_fn = get_importance("slim") if self._is_cap else self.importance
        ctx = {"reduction": self.reduction, "seed": self.seed, "data": data,
               "attention": self.attention, "loss": self.loss, "cache": {}}
        if self.steps is not None:
            ctx["steps"] = self.steps
        self.scores, self.skipped = {}, {}
        ignored = self._ignored_layers(graph)
        for group in graph.groups:
            if not group.prunable:
                continue
            # an ignored layer freezes the channels it writes or carries, not
            # the ones it only reads (a conv's input group stays prunable)
            owners = {m.layer for m in group.producers + group.channelwise}
            readers = {m.layer for m in group.consumers} - owners
            hit = ignored.intersection(set(group.layers) - readers)
            if hit:
                self.skipped[group.index] = f"ignored layer(s) {sorted(hit)}"
                continue
            try:
                scores = np.asarray(score_fn(group, target, **ctx), dtype=np.float64)
            except NoScoreError as err:
                self.skipped[group.index] = str(err)
                continue
            if scores.shape != (group.size,):
                raise ValueError(
                    f"Importance {self.importance_name!r} returned shape {scores.shape} "
                    f"for group {group.index} of size {group.size}.")
            if not np.all(np.isfinite(scores)):
                raise ValueError(
                    f"Importance {self.importance_name!r} gave non-finite scores for "
                    f"group {group.index} (layers {group.layers[:4]}).")
            self.scores[group.index] = unit_scores(group, scores, self.reduction)
        if not self.scores:
            raise PruningError(self._nothing_scored(graph, target))
        self.approximate_groups = {
            gi: graph.groups[gi].approximate for gi in self.scores
            if graph.groups[gi].approximate}
        if self.budget:   # --- budgets: widths from the target
            keep = self._plan_to_budget()
        else:
            keep = self._keep_local() if self.scope == "local" else self._keep_global()
        keep = {gi: self._cover_sections(graph, gi, idx) for gi, idx in keep.items()}
        sizes = {g.index: g.size for g in graph.groups}
        self._keep = {gi: idx for gi, idx in keep.items() if len(idx) < sizes[gi]}
        approx = sorted(gi for gi in self._keep if gi in self.approximate_groups)
        if approx:
            warnings.warn(
                f"Pruner: {len(approx)} group(s) are pruned only approximately "
                f"(approximate={self.approximate}): {self.approximate_groups[approx[0]]}"
                "; the pruned model is not equivalent to the original even for "
                "dead channels, so fine-tune it.", stacklevel=2)
        self.shortfall = Shortfall.of(graph, self._keep, None if self.budget else self.ratio,
                                      self.skipped)
        if self.shortfall.short:
            warnings.warn("Pruner: " + self.shortfall.message(), stacklevel=2)
        return dict(self._keep)

    def _cover_sections(self, graph, gi, kept):
        """Keep at least one channel of every section of the group (a split's
        outputs...), swapping in each empty section's best channel for the
        lowest-scoring kept channel that no section needs."""
        sections = graph.sections(gi)
        if not sections:
            return kept
        scores = self.scores[gi]
        kept = set(int(i) for i in kept)
        for sec in sections:
            if kept.intersection(sec.tolist()):
                continue
            kept.add(int(sec[np.argmax(scores[sec])]))
            needed = {int(next(iter(kept.intersection(x.tolist()))))
                      for x in sections if len(kept.intersection(x.tolist())) == 1}
            spare = [i for i in kept if i not in needed]
            if spare:
                kept.discard(min(spare, key=lambda i: (scores[i], i)))
        return np.array(sorted(kept), dtype=np.int64)

    def _ignored_layers(self, graph):
        """``ignore`` as analysed layer names (composites: their sub-layers)."""
        from remotetrimmer_tf.graph import inlined_layers
        names = set(graph.nodes)
        inlined = inlined_layers(graph.model)
        out, missing = set(), []
        for name in self.ignore:
            if name in names:
                out.add(name)
            elif name in inlined:
                out.update(inlined[name])
            else:
                missing.append(name)
        if missing:
            raise ValueError(
                f"Pruner: ignore names layers not in model {graph.model.name!r}: "
                f"{missing}. Use names from DependencyGraph(model).groups[i].layers "
                "(nested models as 'outer/inner').")
        return out

    def _plan_to_budget(self):
        """The plan for ``self.budget`` (MACs / params: ``budget.solve_budget``;
        latency: ``latency.solve_latency``); sets ``budget_report``."""
        b = self.budget
        if b["kind"] == "latency_ms":
            from remotetrimmer_tf.latency import solve_latency
            keep, info = solve_latency(self, b)
        else:
            from remotetrimmer_tf.budget import solve_budget
            keep, info = solve_budget(self, b["kind"], b["target"])
        self.budget_report = info
        return keep

    def _nothing_scored(self, graph, target):
        why = sorted(set(self.skipped.values()))[:3]
        frozen = sorted({g.reason for g in graph.groups if not g.prunable and g.reason
                         and not g.reason.startswith(("model input", "model output"))})
        if not why and frozen:
            why = frozen[:3]
        if not why:
            why = ["every group touches a model input or output"]
        hint = ""
        if self.importance_name in ("slim", "cap"):
            hint = (" For 'slim'/'cap' the channels need BatchNormalization layers; "
                    "use importance='l1' for a model without them.")
        return (f"Pruner: no channel group of model {target.name!r} could be scored "
                f"with importance {self.importance_name!r}: {'; '.join(why)}.{hint}")

    @staticmethod
    def _top(scores, n):
        """Indices of the ``n`` highest scores (ties: lower index first), sorted."""
        order = np.argsort(-scores, kind="stable")
        return np.sort(order[:n]).astype(np.int64)

    def _keep_local(self):
        keep = {}
        for gi, scores in self.scores.items():
            n = _kept_count(scores.size, self.ratio, self.min_channels, self.round_to,
                            self.round_mode)
            keep[gi] = self._top(scores, n)
        return whole_units(self.graph, keep, self.scores)

    def _keep_global(self):
        entries, floors, sizes = [], {}, {}
        for gi, scores in self.scores.items():
            finite = np.isfinite(scores)  # +inf: a channel no member could score
            mean = scores[finite].mean() if finite.any() else 0.0
            norm = scores / mean if mean > 0 else np.where(finite, 1.0, np.inf)
            sizes[gi] = scores.size
            floors[gi] = min(scores.size, max(
                self.min_channels, int(math.ceil(scores.size * (1 - self.max_ratio) - 1e-9))))
            entries.extend((float(s), gi, c) for c, s in enumerate(norm))
        total = sum(sizes.values())
        target = int(math.floor(total * self.ratio + 1e-9))
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        remaining = dict(sizes)
        removed = {gi: set() for gi in sizes}
        count = 0
        for score, gi, c in entries:
            if count >= target:
                break
            if remaining[gi] <= floors[gi]:
                continue
            removed[gi].add(c)
            remaining[gi] -= 1
            count += 1
        keep = {}
        for gi, scores in self.scores.items():
            n = remaining[gi]
            if self.round_to > 1:
                n = _round_width(n, sizes[gi], self.round_to, self.round_mode,
                                 floor=floors[gi])
            if n == remaining[gi]:
                keep[gi] = np.array(sorted(set(range(sizes[gi])) - removed[gi]), np.int64)
            else:   # rounded: keep the best n by this group's own ranking
                keep[gi] = self._top(scores, n)
        return whole_units(self.graph, keep, self.scores)

    # ------------------------------------------------------------ rebuilding
    def prune(self, data=None):
        """Plan (if needed) and return the pruned model (the input is untouched).

        For ``cap`` the returned model has no SE gates: it is the folded model,
        pruned.
        """
        keep = self.plan(data)
        from remotetrimmer_tf.surgeon import prune_channels
        return prune_channels(self.graph.model, keep, graph=self.graph)

    def summary(self):
        """``[{group, layers, size, kept}]`` of the last plan; its
        ``.shortfall`` (``remotetrimmer_tf.shortfall.Shortfall``) says how much
        was removed against the request and which frozen groups held it back."""
        if self.graph is None:
            raise ValueError("Pruner.summary(): call plan() or prune() first.")
        out = Summary(shortfall=self.shortfall)
        for g in self.graph.groups:
            if g.index in self.scores or g.index in self.skipped:
                kept = len(self._keep.get(g.index, range(g.size)))
                out.append({"group": g.index, "layers": list(g.layers), "size": g.size,
                            "kept": kept, "skipped": self.skipped.get(g.index),
                            "approximate": g.approximate})
        return out
