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

__all__ = ["round_ratios", "prune_in_rounds", "fit_between_rounds"]


def round_ratios(ratio, rounds):
    """The fraction of the *current* channels each round removes.

    Args:
        ratio: the final fraction of the original channels removed, [0, 1).
        rounds: how many rounds (>= 1).

    Returns:
        ``rounds`` floats; their survivors multiply to ``1 - ratio``.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}.")
    if not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio!r}.")
    cumulative = [float(ratio) * i / rounds for i in range(rounds + 1)]
    return [1.0 - (1.0 - cumulative[i]) / (1.0 - cumulative[i - 1])
            for i in range(1, rounds + 1)]


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
            "params": int(count_params(model)), "macs": int(count_macs(model)),
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
    from remotetrimmer_tf.metrics import count_params
    from remotetrimmer_tf.pruner import Pruner
    ratios = round_ratios(ratio, rounds)
    target = None
    if rounds > 1:     # the one-shot model's size: where every schedule ends
        target = count_params(Pruner(model, importance=importance, ratio=ratio,
                                     **pruner_args).prune(data))
    history, current = [], model
    for i, r in enumerate(ratios, start=1):
        crit = "slim" if importance == "cap" and i > 1 else importance
        last = i == rounds and target is not None
        pruner = Pruner(current, importance=crit, ratio=None if last else r,
                        target_params=target if last else None, **pruner_args)
        current = pruner.prune(data)
        if finetune is not None:
            finetune(current, i)
        history.append(_record(i, ratio * i / rounds, current, pruner, evaluate))
    return current, history
