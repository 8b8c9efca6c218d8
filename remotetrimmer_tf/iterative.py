"""Iterative pruning: k rounds to the final ratio, fine-tuning between rounds.

Torch-Pruning's ``iterative_steps``: after round ``i`` of ``k`` every group has
lost ``ratio * i / k`` of its original channels (a linear schedule; round
``i`` removes ``1 - (1 - ratio*i/k) / (1 - ratio*(i-1)/k)`` of what is left),
and the model is fine-tuned after each round. Widths are floored every round,
so k rounds could end a few channels below the one-shot model: the last
round therefore prunes to the trainable-parameter count of the one-shot
model (``Pruner(target_params=...)``), and every schedule ends at the same
size. ``importance="cap"`` folds the SE gates in the first round; the later
rounds score the folded BN scales (``"slim"``, which CAP is on a folded model).

No Pruner or pipeline state is kept between rounds: each round is a fresh
``Pruner`` on the model the previous one returned.

Example:
    >>> [round(r, 4) for r in round_ratios(0.5, 2)]
    [0.25, 0.3333]
"""

from __future__ import annotations

from typing import Callable, Optional

from remotetrimmer_tf.errors import PruningError

__all__ = ["round_ratios", "round_widths", "schedule_of", "final_widths", "epoch_shares",
           "prune_in_rounds", "fit_between_rounds"]


def round_ratios(ratio, rounds):
    """The fraction of the *current* channels each round removes.

    Args:
        ratio: the final fraction of the original channels removed, [0, 1).
        rounds: how many rounds (>= 1).

    Returns:
        ``rounds`` floats; their survivors multiply to ``1 - ratio``.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise PruningError(f"rounds must be an int >= 1, got {rounds!r}.")
    if not 0.0 <= float(ratio) < 1.0:
        raise PruningError(f"ratio must be in [0, 1), got {ratio!r}.")
    cumulative = [float(ratio) * i / rounds for i in range(rounds + 1)]
    return [1.0 - (1.0 - cumulative[i]) / (1.0 - cumulative[i - 1])
            for i in range(1, rounds + 1)]


def round_widths(ratio, rounds, final=None):
    """The width arguments of ``Pruner`` for every round of the schedule.

    Args:
        ratio: the final fraction of the original channels removed, [0, 1).
        rounds: how many rounds (>= 1).
        final: what the last round prunes to instead of its ratio, e.g.
            ``{"target_params": n}`` (the one-shot model's size) or a MACs /
            params budget; None: the last round prunes by its ratio too.

    Returns:
        ``rounds`` dicts: ``{"ratio": r}`` (:func:`round_ratios`) for each
        round, the last one ``{"ratio": None, **final}`` when ``final`` is given.

    Example:
        >>> round_widths(0.5, 2, {"target_params": 100})[1]
        {'ratio': None, 'target_params': 100}
    """
    out = [{"ratio": r} for r in round_ratios(ratio, rounds)]
    if final:
        out[-1] = {"ratio": None, **final}
    return out


def schedule_of(pruner, pruned, rounds):
    """The width arguments of every round, ending where one-shot pruning ended.

    Args:
        pruner: the one-shot ``Pruner`` (planned) of the model to prune.
        pruned: the model it returned.
        rounds: how many rounds (>= 1).

    Returns:
        :func:`round_widths`: by a ratio, the rounds follow
        :func:`round_ratios` of it and the last one prunes to ``pruned``'s
        trainable-parameter count; by a MACs / params target, they follow the
        ratio the target's search reached and the last one prunes to the
        target. One round: the one-shot arguments.

    Raises:
        PruningError: a latency target with ``rounds > 1`` (each round would
            need its own latency search).
    """
    from remotetrimmer_tf.cost import count_params
    budget = pruner.budget
    if not budget:
        final = {"target_params": count_params(pruned, trainable_only=True)}
        return round_widths(pruner.ratio, rounds, final if rounds > 1 else None)
    if budget["kind"] not in ("macs", "params"):
        if rounds > 1:
            raise PruningError(f"rounds={rounds}: a latency target prunes in one round; "
                             "prune in rounds to a ratio, target_macs or target_params.")
        return [{"ratio": None, "target_latency_ms": budget["target"]}]
    reached = float((pruner.budget_report or {}).get("ratio", 0.0))
    return round_widths(min(max(reached, 0.0), 0.99), rounds,
                        {f"target_{budget['kind']}": int(budget["target"])})


def final_widths(model, widths):
    """``widths`` for the last round, or ``{"ratio": 0.0}`` (nothing to
    remove) when ``model`` already meets its ``target_params`` /
    ``target_macs`` (flooring in earlier rounds can get there first; a budget
    above the model's own count is out of the planner's range)."""
    from remotetrimmer_tf.cost import count_macs, count_params
    if widths.get("target_params") is not None:
        now = count_params(model, trainable_only=True)
        target = widths["target_params"]
    elif widths.get("target_macs") is not None:
        now, target = count_macs(model), widths["target_macs"]
    else:
        return widths
    return {"ratio": 0.0} if now <= target else widths


def epoch_shares(epochs, rounds):
    """Fine-tuning epochs of each round: ``epochs`` split as evenly as
    possible, the remainder to the last rounds (the total stays ``epochs``).

    Example:
        >>> epoch_shares(10, 3), epoch_shares(2, 3)
        ([3, 3, 4], [0, 1, 1])
    """
    base, extra = divmod(int(epochs), int(rounds))
    return [base + (1 if i >= rounds - extra else 0) for i in range(rounds)]


def fit_between_rounds(train, recipe, teacher=None, val=None, verbose=0):
    """A ``finetune`` for :func:`prune_in_rounds`: ``training.fit`` with our
    recipe (AML, KD from ``teacher`` when ``recipe.distill_weight > 0``)."""
    def finetune(model, index):
        from remotetrimmer_tf.training import fit
        return fit(model, train, val=val, recipe=recipe, teacher=teacher, verbose=verbose)
    return finetune


def _record(index, ratio, model, pruner, evaluate):
    from remotetrimmer_tf.metrics import count_macs, count_params
    widths = {str(g["layers"][0]): int(g["kept"]) for g in pruner.summary()}
    return {"round": index, "ratio": round(float(ratio), 6), "widths": widths,
            "params": int(count_params(model, trainable_only=True)), "macs": int(count_macs(model)),
            "accuracy": None if evaluate is None else float(evaluate(model))}


def prune_in_rounds(model, rounds=3, *, ratio=0.7, importance="l1", data=None,
                    finetune: Optional[Callable] = None,
                    evaluate: Optional[Callable] = None, **pruner_args):
    """Prune ``model`` in ``rounds`` rounds to ``ratio``, fine-tuning between.

    Args:
        model: any model ``Pruner`` takes (never modified).
        rounds: number of rounds (1: one-shot).
        ratio: the final fraction of channels removed (local scope).
        importance: the criterion (``"cap"`` becomes ``"slim"`` after the
            first round, on the folded model).
        data: batches for ``cap`` attention / ``taylor`` gradients.
        finetune: ``fn(model, round_index)`` training the model in place after
            each round (e.g. :func:`fit_between_rounds`); None: no training.
        evaluate: ``fn(model) -> accuracy`` recorded after each round.
        **pruner_args: other ``Pruner`` arguments (``round_to``, ``ignore``...).

    Returns:
        ``(pruned model, rounds)``: ``rounds`` is a list of
        ``{"round", "ratio", "widths", "params", "macs", "accuracy"}``.
    """
    from remotetrimmer_tf.pruner import Pruner
    schedule = round_widths(ratio, rounds)
    if rounds > 1:     # the one-shot model's size: where every schedule ends
        one_shot = Pruner(model, importance=importance, ratio=ratio, **pruner_args)
        schedule = schedule_of(one_shot, one_shot.prune(data), rounds)
    history, current = [], model
    for i, widths in enumerate(schedule, start=1):
        crit = "slim" if importance == "cap" and i > 1 else importance
        if i == rounds:
            widths = final_widths(current, widths)
        pruner = Pruner(current, importance=crit, **widths, **pruner_args)
        current = pruner.prune(data)
        if finetune is not None:
            finetune(current, i)
        history.append(_record(i, ratio * i / rounds, current, pruner, evaluate))
    return current, history
