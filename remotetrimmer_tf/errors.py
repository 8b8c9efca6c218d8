"""The library's own exceptions.

Every error that leaves ``Pruner``, ``prune_channels``, ``DependencyGraph``
or ``count_macs`` is a ``PruningError``: one line that names the layer and
an option the API really has. It subclasses ``ValueError`` so callers that
caught ``ValueError`` keep working.

Example:
    >>> str(PruningError("layer 'x' (Foo): why. Way out: unknown='freeze'."))
    "layer 'x' (Foo): why. Way out: unknown='freeze'."
"""
from __future__ import annotations

__all__ = ["PruningError", "PruningTypeError", "first_line"]


class PruningError(ValueError):
    """A model cannot be analysed, planned or rebuilt; the message is one line."""

    def __init__(self, message):
        super().__init__(first_line(message))


class PruningTypeError(PruningError, TypeError):
    """A ``PruningError`` about the kind of model given (a subclassed model
    without a functional graph...); also a ``TypeError``."""


def first_line(text, limit: int = 400) -> str:
    """``text`` on one line: the first non-empty line, at most ``limit`` chars."""
    lines = [l.strip() for l in str(text).strip().splitlines() if l.strip()]
    line = lines[0] if lines else str(text).strip()
    return line if len(line) <= limit else line[:limit - 3] + "..."
