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

__all__ = ["PruningError", "PruningTypeError", "first_line", "error_text"]


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


def error_text(err, limit: int = 200) -> str:
    """The informative line of an exception from Keras / TensorFlow: Keras
    wraps a layer's error as "Exception encountered when calling X.call()."
    followed by the real message; that message is taken."""
    lines = [l.strip() for l in str(err).strip().splitlines() if l.strip()]
    skip = ("Exception encountered", "Arguments received", "\u2022")
    useful = [l for l in lines if not l.startswith(skip)]
    return first_line(useful[0] if useful else (lines[0] if lines else repr(err)), limit)
