"""Width rules: how many channels a group keeps at a ratio, rounded.

:class:`WidthRules` holds the rules a ratio plan follows (ratio, scope,
``round_to``, ``round_mode``); :func:`round_width` and :func:`kept_count` are
the published local rule on one group. A group with units (blocks of
``u`` channels kept whole) is counted in units: ``round_to`` becomes the
fewest units whose channels are a multiple of it, ``min_channels`` the
fewest units holding that many (:func:`unit_rules`).

Example:
    >>> kept_count(64, 0.7, 1, 8)          # floor(64 · 0.3) = 19 -> up to 24
    24
    >>> round_width(19, 64, 8, "down")
    16
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from remotetrimmer_tf.choices import ROUND_MODES, SCOPES

__all__ = ["WidthRules", "round_width", "kept_count", "unit_rules", "check_ratio"]


def check_ratio(ratio, name="ratio"):
    """``ratio`` as a float in [0, 1), else ValueError (the one ratio check)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
            or not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"{name} must be a fraction of channels to remove in [0, 1), "
                         f"got {ratio!r} (ratio >= 1 would remove every channel).")
    return float(ratio)


@dataclasses.dataclass(frozen=True)
class WidthRules:
    """The rules of a ratio plan.

    Args:
        ratio: fraction of channels to remove, ``0 <= ratio < 1``.
        scope: ``"local"`` (every group loses ``ratio``) or ``"global"`` (the
            lowest normalised scores across groups).
        round_to: kept widths are multiples of this (never above a group's size).
        round_mode: ``"up"``, ``"down"`` or ``"nearest"`` (:func:`round_width`).
    """

    ratio: float = 0.0
    scope: str = "local"
    round_to: int = 1
    round_mode: str = "up"

    def __post_init__(self):
        object.__setattr__(self, "ratio", check_ratio(self.ratio))
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}.")
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, numbers.Integral) \
                or self.round_to < 1:
            raise ValueError(f"round_to must be an int >= 1, got {self.round_to!r}.")
        object.__setattr__(self, "round_to", int(self.round_to))
        if self.round_mode not in ROUND_MODES:
            raise ValueError(f"round_mode must be one of {ROUND_MODES}, "
                             f"got {self.round_mode!r}.")

    def at(self, ratio):
        """The same rules at another ratio."""
        return dataclasses.replace(self, ratio=float(ratio))


def round_width(n, size, round_to, mode="up", floor=1):
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


def kept_count(size, ratio, min_channels, round_to, round_mode="up"):
    """Published local rule: ``floor(C·(1 − ratio))``, floored at ``min_channels``
    and rounded to a multiple of ``round_to`` (:func:`round_width`)."""
    n = max(min_channels, int(math.floor(size * (1.0 - ratio) + 1e-9)))
    return round_width(n, size, round_to, round_mode, floor=min_channels)


def unit_rules(unit, round_to, min_channels):
    """``(round_to, min_channels)`` counted in units of ``unit`` channels: the
    fewest units whose width is a multiple of ``round_to``, and the fewest
    units holding ``min_channels`` (both unchanged for single channels)."""
    if unit == 1:
        return round_to, min_channels
    return round_to // math.gcd(round_to, unit), max(1, -(-min_channels // unit))
