"""How much of a pruning request a plan really removed, and what held it back.

Frozen groups (a layer no handler follows, a channel-mixing activation, an
``ignore``...) keep all their channels, so a model can come out far less
pruned than asked with nothing said. ``Shortfall.of(graph, keep, asked)``
measures the share of channels the plan removes among those a plan could
touch at all (the channels that some layer of the model creates; the model's
own inputs and outputs never count), and ranks the reasons of the frozen
groups by the channels they hold. ``Pruner.prune()`` warns with its
``message()`` when much less was removed than asked, and ``Pruner.summary()``
and the CLI report show it.

Example:
    >>> from remotetrimmer_tf.graph import DependencyGraph
    >>> inp = keras.Input((4, 4, 3))
    >>> x = keras.layers.Conv2D(8, 1, name="c1")(inp)
    >>> out = keras.layers.Conv2D(2, 1, name="c2")(x)
    >>> g = DependencyGraph(keras.Model(inp, out), ignore=["c1"])
    >>> s = Shortfall.of(g, {}, 0.5)
    >>> s.removed, s.short
    (0.0, True)
    >>> s.reasons[0][0]
    "layer 'c1' is in ignore"
"""
from __future__ import annotations

import dataclasses
from typing import List, Tuple

__all__ = ["Shortfall", "Summary"]

# model inputs / outputs are never pruned by anyone: not a shortfall
_INHERENT = ("model input", "model output")


@dataclasses.dataclass(frozen=True)
class Shortfall:
    """Args:
        asked: the share of channels the request removes (a ratio, or the
            share implied by a budget; None when unknown).
        removed: the share of prunable-in-principle channels the plan removes.
        channels: how many such channels the model has.
        reasons: ``[(reason, layers, channels)]`` of the frozen groups, most
            channels first.
    """

    asked: float
    removed: float
    channels: int
    reasons: Tuple[Tuple[str, Tuple[str, ...], int], ...]

    @classmethod
    def of(cls, graph, keep, asked, skipped=None):
        """``keep``: the plan; ``skipped``: ``{group: reason}`` of prunable
        groups the planner left whole (ignored, unscored)."""
        skipped = skipped or {}
        total, kept, frozen = 0, 0, {}
        for g in graph.groups:
            if not g.producers:
                continue          # no layer creates these channels (inputs)
            if not g.prunable and g.reason and g.reason.startswith(_INHERENT):
                continue
            total += g.size
            kept += len(keep.get(g.index, range(g.size)))
            reason = g.reason if not g.prunable else skipped.get(g.index)
            if reason:
                layers, count = frozen.get(reason, ((), 0))
                frozen[reason] = (layers + tuple(g.layers[:3]), count + g.size)
        removed = (total - kept) / total if total else 0.0
        reasons = sorted(((r, tuple(dict.fromkeys(ls))[:4], c)
                          for r, (ls, c) in frozen.items()), key=lambda x: -x[2])
        return cls(asked, removed, total, tuple(reasons))

    @property
    def short(self) -> bool:
        """True when the plan removes clearly less than asked (by more than
        a tenth of the request and 5 points) for reasons in the model."""
        if self.asked is None or not self.reasons:
            return False
        return self.removed < self.asked - max(0.05, 0.1 * self.asked)

    def message(self, top: int = 3) -> str:
        """One line: asked vs removed and the top reasons with their layers."""
        parts = [f"{r} ({c} channels; layers {', '.join(ls)})"
                 for r, ls, c in self.reasons[:top]]
        return (f"pruned less than asked: {self.removed:.0%} of the model's "
                f"{self.channels} channels removed for a request of {self.asked:.0%}, "
                f"because groups are frozen: {'; '.join(parts)}. Way out: "
                "register a handler / activation for those layers, or drop them "
                "from ignore.")

    def as_dict(self):
        return {"asked": self.asked, "removed": round(self.removed, 4),
                "channels": self.channels, "short": self.short,
                "reasons": [{"reason": r, "layers": list(ls), "channels": c}
                            for r, ls, c in self.reasons]}


class Summary(list):
    """``Pruner.summary()``: one row per planned group, plus ``shortfall``."""

    def __init__(self, rows=(), shortfall=None):
        super().__init__(rows)
        self.shortfall = shortfall
