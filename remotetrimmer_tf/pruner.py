"""Pruner: validate → dependency graph → score → plan → rebuild (the façade).

Flow: (``cap`` only: collect attention → fold the SE gates into the BNs) →
``DependencyGraph`` → importance per group → one ``planning.ScoredGroups`` →
a planner (ratio, MAC / parameter budget, latency search) decides the kept
channels → ``prune_channels``. The input model is never modified.
"""
import functools
import warnings

import keras
import numpy as np

from remotetrimmer_tf.choices import DEFAULT_OBJECTIVE
from remotetrimmer_tf.importance import criterion_on_folded, get_importance, is_cap
from remotetrimmer_tf.errors import PruningError
from remotetrimmer_tf.importance.reductions import REDUCTIONS, NoScoreError, reduce_scores
from remotetrimmer_tf.shortfall import Shortfall, Summary
from remotetrimmer_tf.planning import (BudgetOutOfRange, ScoredGroups, TargetError,
                                       WidthRules, check_target, plan_ratio, solve_budget)

__all__ = ["Pruner"]


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
            raise PruningError(f"Pruner: ignore names layers not in model "
                             f"{model.name!r}: {missing}.")
    return ignore


def _check_gated(model):
    """``cap`` needs SqueezeExcite gates."""
    from remotetrimmer_tf.attention import se_gates
    if not se_gates(model):
        raise PruningError(
            f"Pruner: importance='cap' needs a model with SqueezeExcite gates, "
            f"but {model.name!r} has none. Train it with se=True, or use "
            "importance='slim' (plain BN gamma) for a plain model.")


def _check_budget(ratio, targets, latency_model, options):
    """``planning.check_target`` in the Pruner's words (+ the reference model
    and the timing function); None when pruning by ratio."""
    try:
        budget = check_target(targets, ratio_given=ratio is not None,
                              own_timer=latency_model is not None, **options)
    except TargetError as err:
        hint = (", or time it yourself: latency_model=LatencyModel(layer_timer=..., "
                "model_timer=...)" if err.runtime_missing else "")
        raise PruningError(f"Pruner: {err}{hint}.") from None
    if budget is None:
        return None
    ref = budget["reference"]
    if ref is not None and (not isinstance(ref, keras.Model) or not ref.built):
        raise PruningError("Pruner: target_latency_of must be a built keras.Model (the "
                         f"model to be no slower than), got {type(ref).__name__}.")
    budget["latency_model"] = latency_model
    return budget


def _check_rules(ratio, scope, round_to, round_mode, min_channels, max_ratio):
    """``(WidthRules, min_channels, max_ratio)``, each argument checked."""
    try:
        rules = WidthRules(ratio, scope, round_to, round_mode)
    except ValueError as err:
        raise PruningError(f"Pruner: {err}") from None
    if isinstance(min_channels, bool) or not isinstance(min_channels, (int, np.integer)) \
            or min_channels < 1:
        raise PruningError(f"Pruner: min_channels must be an int >= 1, got {min_channels!r}.")
    if max_ratio is None:
        max_ratio = max(0.9, rules.ratio)
    if not rules.ratio <= max_ratio < 1.0:
        raise PruningError(f"Pruner: max_ratio must be in [ratio, 1), got {max_ratio!r}.")
    return rules, int(min_channels), float(max_ratio)


def _check_options(unknown, approximate, reduction):
    """``unknown``, ``approximate`` (as a tuple) and ``reduction``, checked."""
    if unknown not in ("error", "freeze"):
        raise PruningError(f"Pruner: unknown must be 'error' or 'freeze', got {unknown!r}.")
    from remotetrimmer_tf.graph.dependency_graph import check_approximate
    try:
        approximate = check_approximate(approximate)
    except ValueError as err:
        raise PruningError(f"Pruner: {err}") from None
    if not callable(reduction) and reduction not in REDUCTIONS:
        raise PruningError(f"Pruner: unknown reduction {reduction!r}; use one of "
                         f"{sorted(REDUCTIONS)} or a callable.")
    return unknown, approximate, reduction


def _score_groups(graph, score_fn, ctx, ignored, name, reduction="mean"):
    """``({group: scores}, {group: why it was left whole})`` of every prunable
    group (an ignored layer freezes the channels it writes or carries, not the
    ones it only reads: a conv's input group stays prunable)."""
    scores, skipped = {}, {}
    for group in graph.groups:
        if not group.prunable:
            continue
        owners = {m.layer for m in group.producers + group.channelwise}
        readers = {m.layer for m in group.consumers} - owners
        hit = ignored.intersection(set(group.layers) - readers)
        if hit:
            skipped[group.index] = f"ignored layer(s) {sorted(hit)}"
            continue
        try:
            sc = np.asarray(score_fn(group, graph.model, **ctx), dtype=np.float64)
        except NoScoreError as err:
            skipped[group.index] = str(err)
            continue
        if sc.shape != (group.size,):
            raise PruningError(f"Importance {name!r} returned shape {sc.shape} "
                             f"for group {group.index} of size {group.size}.")
        if not np.all(np.isfinite(sc)):
            raise PruningError(f"Importance {name!r} gave non-finite scores for "
                             f"group {group.index} (layers {group.layers[:4]}).")
        scores[group.index] = _per_unit(group, sc, reduction)
    return scores, skipped


def _per_unit(group, scores, reduction):
    """Every channel of a unit (an attention head) gets its unit's
    ``reduction`` of their scores: a head scores by its q/k/v/o slices."""
    if group.units is None:
        return scores
    out = np.array(scores, dtype=np.float64)
    out[group.units] = reduce_scores(list(out[group.units].T), reduction)[:, None]
    return out


def _spread(group):
    """Positions each channel of ``group`` takes in its tensors (a grouped
    convolution's ``groups``: its channels are coupled across the groups)."""
    shapes = [np.shape(m.indices) for m in group.producers + group.channelwise]
    return max([s[1] for s in shapes if len(s) == 2] or [1])


def scored_groups(graph, scores, min_channels, max_ratio):
    """The ``planning.ScoredGroups`` of ``scores`` on ``graph`` (sections,
    units and spread read from the graph)."""
    groups = graph.groups
    return ScoredGroups.build(
        scores, min_channels=min_channels, max_ratio=max_ratio,
        sections={gi: graph.sections(gi) for gi in scores},
        units={gi: groups[gi].units for gi in scores if groups[gi].units is not None},
        spread={gi: _spread(groups[gi]) for gi in scores})


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
            allows). See ``remotetrimmer_tf.planning.solve_budget``.
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

    Models: functional, Sequential, keras-hub ``Backbone`` / task models
    (``preprocessor=None``), functional subclasses, nested backbones and
    composite layers (see ``graph.functional_view``); a model that is not
    plain functional is pruned into a plain functional ``keras.Model``.

    Attributes (after ``plan``): ``graph``, ``scores`` (``{group: scores}``),
    ``scored_groups`` (the ``planning.ScoredGroups`` every planner read),
    ``skipped`` (``{group: reason}`` for groups left whole), ``attention``,
    ``folded_model`` (``cap``: the model that is actually pruned),
    ``budget_report`` (with a target).

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
                 target_macs=None, target_params=None, target_latency_ms=None,
                 runtime="litert", threads=1, dtype="float32", latency_model=None,
                 objective=DEFAULT_OBJECTIVE, target_latency_of=None, latency_margin=None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"Pruner: model must be a keras.Model, got {type(model).__name__}.")
        self.model = model
        self.budget = _check_budget(
            ratio, {"target_macs": target_macs, "target_params": target_params,
                    "target_latency_ms": target_latency_ms,
                    "target_latency_of": target_latency_of}, latency_model,
            {"runtime": runtime, "threads": threads, "dtype": dtype, "objective": objective,
             "latency_margin": latency_margin})
        self.budget_report = None
        if ratio is None:   # a target decides the widths; else the published 0.7
            ratio = 0.0 if self.budget else 0.7
        self.importance_name = importance if isinstance(importance, str) else getattr(
            importance, "__name__", "custom")
        self.importance = get_importance(importance)
        self.rules, self.min_channels, self.max_ratio = _check_rules(
            ratio, scope, round_to, round_mode, min_channels, max_ratio)
        self.ignore = _check_ignore(model, ignore)
        self.unknown, self.approximate, self.reduction = _check_options(
            unknown, approximate, reduction)
        self.seed, self.steps, self.loss, self.attention = int(seed), steps, loss, attention
        self._is_cap = is_cap(importance)
        if self._is_cap:
            _check_gated(model)
        self.graph, self.folded_model, self.scored_groups = None, None, None
        self.scores, self.skipped, self.approximate_groups = {}, {}, {}
        self._keep = None
        self.shortfall = None

    # the width rules, as the arguments were named
    ratio = property(lambda self: self.rules.ratio)
    scope = property(lambda self: self.rules.scope)
    round_to = property(lambda self: self.rules.round_to)
    round_mode = property(lambda self: self.rules.round_mode)

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
                raise PruningError(
                    "Pruner(importance='cap'): pass data to plan()/prune() so the "
                    "mean SE attention can be collected, or give attention=.")
            self.attention = collect_attention(self.model, data, steps=self.steps)
        self.folded_model = fold_attention(self.model, self.attention)
        return self.folded_model

    def _analyse(self, target):
        """The dependency graph of ``target`` (reused when planning again: a
        traced view then re-reads the model's weights)."""
        from remotetrimmer_tf.graph import DependencyGraph, functional_view
        if self.graph is None or self.graph.source_model is not target:
            self.graph = DependencyGraph(target, unknown=self.unknown,
                                         approximate=self.approximate)
        else:
            functional_view(target)
        return self.graph

    def plan(self, data=None):
        """Decide the kept channels: ``{group_index: sorted kept indices}``.

        Only groups that lose channels are listed. ``data`` feeds ``cap``
        (attention) and ``taylor`` (gradients).
        """
        graph = self._analyse(self._target(data))
        # after folding, CAP is |γ'| of the folded BNs (= |γ|·s̄)
        score_fn = get_importance(criterion_on_folded(self.importance)) if self._is_cap \
            else self.importance
        ctx = {"reduction": self.reduction, "seed": self.seed, "data": data,
               "attention": self.attention, "loss": self.loss, "cache": {},
               **({"steps": self.steps} if self.steps is not None else {})}
        self.scores, self.skipped = _score_groups(graph, score_fn, ctx,
                                                  self._ignored_layers(graph),
                                                  self.importance_name, self.reduction)
        if not self.scores:
            raise PruningError(self._nothing_scored(graph))
        self.approximate_groups = {gi: graph.groups[gi].approximate for gi in self.scores
                                   if graph.groups[gi].approximate}
        self.scored_groups = scored_groups(graph, self.scores, self.min_channels,
                                           self.max_ratio)
        keep = self._decide(graph, self.scored_groups)
        self._keep = {gi: idx for gi, idx in keep.items() if len(idx) < graph.groups[gi].size}
        self._warn_approximate()
        self._warn_shortfall(graph)
        return dict(self._keep)

    def _warn_shortfall(self, graph):
        """Say when frozen groups kept the model well above the requested ratio."""
        self.shortfall = Shortfall.of(graph, self._keep, None if self.budget else self.ratio,
                                      self.skipped)
        if self.shortfall.short:
            warnings.warn("Pruner: " + self.shortfall.message(), stacklevel=3)

    def _decide(self, graph, scored):
        """The planner's ``{group: kept indices}``: the ratio, or the budget's
        search (which also sets ``budget_report``)."""
        b = self.budget
        if not b:
            return plan_ratio(scored, self.rules)
        if b["kind"] == "latency_ms":
            from remotetrimmer_tf.latency_budget import solve_latency
            keep, self.budget_report = solve_latency(graph, scored, b, self.rules.round_to)
            return keep
        from remotetrimmer_tf.cost import PlanCost
        count = functools.partial(PlanCost(graph).count, b["kind"])
        try:
            keep, self.budget_report = solve_budget(scored, self.rules, count, b["target"],
                                                    b["kind"], f"model {self.model.name!r}")
        except BudgetOutOfRange as err:
            raise PruningError(f"Pruner: {err}") from None
        return keep

    def _warn_approximate(self):
        approx = sorted(gi for gi in self._keep if gi in self.approximate_groups)
        if approx:
            warnings.warn(
                f"Pruner: {len(approx)} group(s) are pruned only approximately "
                f"(approximate={self.approximate}): {self.approximate_groups[approx[0]]}"
                "; the pruned model is not equivalent to the original even for "
                "dead channels, so fine-tune it.", stacklevel=3)

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
            raise PruningError(
                f"Pruner: ignore names layers not in model {graph.model.name!r}: "
                f"{missing}. Use names from DependencyGraph(model).groups[i].layers "
                "(nested models as 'outer/inner').")
        return out

    def _nothing_scored(self, graph):
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
        return (f"Pruner: no channel group of model {graph.model.name!r} could be scored "
                f"with importance {self.importance_name!r}: {'; '.join(why)}.{hint}")

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
            raise PruningError("Pruner.summary(): call plan() or prune() first.")
        out = Summary(shortfall=self.shortfall)
        for g in self.graph.groups:
            if g.index in self.scores or g.index in self.skipped:
                kept = len(self._keep.get(g.index, range(g.size)))
                out.append({"group": g.index, "layers": list(g.layers), "size": g.size,
                            "kept": kept, "skipped": self.skipped.get(g.index),
                            "approximate": g.approximate})
        return out
