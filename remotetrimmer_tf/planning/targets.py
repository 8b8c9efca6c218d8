"""The one check of a pruning target (ratio or budget), read by the Pruner
and the CLI alike: a :class:`TargetError` names the argument(s) and the fix;
the Pruner shows it as is, the CLI rewords each argument as its flag
(``--config.prune.<name>``).

Example:
    >>> check_target({"target_macs": 10**6})["kind"]
    'macs'
    >>> try:
    ...     check_target({"target_macs": 2.5})
    ... except TargetError as e:
    ...     print(e, "|", e.worded(lambda f: "--config.prune." + f))
    target_macs=2.5 must be a positive integer (a whole number, e.g. 15e6) | --config.prune.target_macs=2.5 must be a positive integer (a whole number, e.g. 15e6)
"""

from __future__ import annotations

import math

import numpy as np

from remotetrimmer_tf.choices import (DEFAULT_OBJECTIVE, DTYPES, LATENCY_MARGIN_MAX,
                                      OBJECTIVES, RUNTIMES)

__all__ = ["TargetError", "check_target", "TARGETS", "LATENCY_TARGETS"]

TARGETS = ("target_macs", "target_params", "target_latency_ms", "target_latency_of")
LATENCY_TARGETS = ("target_latency_ms", "target_latency_of")
_NONE = object()


class TargetError(ValueError):
    """A bad target: ``fields`` (argument names), the ``value`` given and what
    it must be (``fix``). ``worded(name)`` is the message with each argument
    called ``name(field)``."""

    def __init__(self, fields, fix, value=_NONE, runtime_missing=False):
        self.fields = (fields,) if isinstance(fields, str) else tuple(fields)
        self.value, self.fix, self.runtime_missing = value, fix, runtime_missing
        super().__init__(self.worded(str))

    def worded(self, name):
        """The message, each argument named ``name(field)``."""
        if len(self.fields) > 1:
            return f"{' and '.join(name(f) for f in self.fields)} {self.fix}"
        shown = "" if self.value is _NONE else f"={self.value!r}"
        return f"{name(self.fields[0])}{shown} {self.fix}"


def _number(name, value, integer):
    """``value`` as a positive int / float, else TargetError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or float(value) <= 0 \
            or (integer and float(value) != int(value)):
        fix = ("must be a positive integer (a whole number, e.g. 15e6)" if integer
               else "must be a positive number of milliseconds")
        raise TargetError(name, fix, value)
    return int(value) if integer else float(value)


def _one_of(name, value, choices):
    if value not in choices:
        raise TargetError(name, f"must be one of {', '.join(choices)}", value)


def check_latency_options(runtime="litert", threads=1, dtype="float32",
                          objective=DEFAULT_OBJECTIVE, latency_margin=None):
    """The runtime settings of a latency target, else TargetError."""
    _one_of("runtime", runtime, RUNTIMES)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise TargetError("threads", "must be an integer >= 1", threads)
    _one_of("dtype", dtype, DTYPES)
    _one_of("objective", objective, OBJECTIVES)
    if latency_margin is not None and (
            isinstance(latency_margin, bool)
            or not isinstance(latency_margin, (int, float, np.integer, np.floating))
            or not 0.0 <= float(latency_margin) < LATENCY_MARGIN_MAX):
        raise TargetError("latency_margin", f"must be a fraction in [0, {LATENCY_MARGIN_MAX}) "
                          "(or None: measured from the timing noise)", latency_margin)


def check_target(given, ratio_given=False, own_timer=False, runtime="litert", threads=1,
                 dtype="float32", objective=DEFAULT_OBJECTIVE, latency_margin=None):
    """Validate a budget; ``None`` when pruning by ratio.

    Args:
        given: ``{name: value}`` of the targets given (names of ``TARGETS``;
            ``None`` values are left out). ``target_latency_of`` is passed
            through (a model for the Pruner, a file for the CLI: each
            checks its own).
        ratio_given: a ratio was given too (a conflict).
        own_timer: latency is timed by the caller's function (no LiteRT needed).

    Returns:
        ``None`` or ``{"kind": "macs" | "params" | "latency_ms", "target",
        "runtime", "threads", "dtype", "objective", "margin", "reference"}``
        (``target_latency_of``: the target is ``None``, the reference its value).

    Raises:
        TargetError: several targets, a ratio with a target, a bad value or
            setting, or LiteRT missing for a latency target.
    """
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    if len(given) > 1:
        raise TargetError(sorted(given, key=TARGETS.index), "conflict; give one budget")
    (name, value), = given.items()
    if ratio_given:
        raise TargetError(("ratio", name), "conflict: a budget decides the widths itself; "
                          "drop the ratio (or the target)")
    kind = "latency_ms" if name in LATENCY_TARGETS else name[len("target_"):]
    out = {"kind": kind, "target": None, "reference": None, "runtime": runtime,
           "threads": threads, "dtype": dtype, "objective": objective,
           "margin": latency_margin}
    if name == "target_latency_of":
        out["reference"] = value
    else:
        out["target"] = _number(name, value, integer=kind != "latency_ms")
    if kind == "latency_ms":
        check_latency_options(runtime, threads, dtype, objective, latency_margin)
        import importlib.util
        if not own_timer and importlib.util.find_spec("ai_edge_litert") is None:
            raise TargetError(name, "needs the LiteRT runtime on this machine: pip install "
                              "ai-edge-litert", runtime_missing=True)
    return out
