"""Channel importance criteria: ``group → (group.size,)`` scores, higher = keep.

Every criterion has the signature ``fn(group, model, **ctx) -> np.ndarray``
where ``group`` is a :class:`~remotetrimmer_tf.graph.ChannelGroup` of
``DependencyGraph(model)``. Context keys the built-ins understand:
``reduction`` (combine a group's members: ``mean`` as published, ``max``,
``sum``, ``prod``, ``first``), ``attention`` (``cap``), ``data``, ``steps``,
``loss`` (``taylor``), ``seed`` (``random``), ``cache`` (a dict shared by
all groups of one run). Unknown keys are ignored.

Built-ins: ``cap`` (|γ|·s̄), ``slim`` (|γ|), ``l1``, ``l2`` (filter norms),
``fpgm`` (geometric median), ``taylor`` (first order), ``random``.
"""
from remotetrimmer_tf.importance.bn import cap, slim
from remotetrimmer_tf.importance.fpgm import fpgm
from remotetrimmer_tf.importance.magnitude import l1, l2
from remotetrimmer_tf.importance.random import random
from remotetrimmer_tf.importance.reductions import REDUCTIONS, NoScoreError, reduce_scores
from remotetrimmer_tf.importance.taylor import taylor

__all__ = ["get_importance", "register_importance", "available", "is_cap",
           "criterion_on_folded", "cap", "slim",
           "l1", "l2", "fpgm", "taylor", "random", "reduce_scores", "REDUCTIONS",
           "NoScoreError"]

_REGISTRY = {"cap": cap, "slim": slim, "l1": l1, "l2": l2, "fpgm": fpgm,
             "taylor": taylor, "random": random}


def available():
    """Sorted names of the registered criteria."""
    return sorted(_REGISTRY)


def register_importance(name, fn, override=False):
    """Register criterion ``fn(group, model, **ctx) -> scores`` under ``name``.

    Example:
        >>> register_importance("ones", lambda g, m, **c: np.ones(g.size))  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_importance: name must be a non-empty str, got {name!r}.")
    if not callable(fn):
        raise TypeError(f"register_importance: fn must be callable, got {fn!r}.")
    if name in _REGISTRY and not override:
        raise ValueError(f"Importance {name!r} is already registered; pass override=True.")
    _REGISTRY[name] = fn
    return fn


def get_importance(name):
    """The criterion registered as ``name`` (a callable is returned unchanged).

    Example:
        >>> scores = get_importance("slim")(group, model)   # doctest: +SKIP
    """
    if callable(name):
        return name
    if isinstance(name, str) and name.lower() in _REGISTRY:
        return _REGISTRY[name.lower()]
    raise ValueError(f"Unknown importance {name!r}; choose one of {available()} "
                     "or pass a callable fn(group, model, **ctx).")


def is_cap(importance):
    """True for CAP, given by name or as the registered criterion."""
    if isinstance(importance, str):
        return importance.lower() == "cap"
    return importance is _REGISTRY.get("cap")


def criterion_on_folded(importance):
    """The criterion that scores a model whose SE attention is folded into its
    BatchNormalizations: CAP is network slimming there (``|γ'| = |γ|·s̄``);
    any other criterion is itself.

    Example:
        >>> criterion_on_folded("cap"), criterion_on_folded("l1")
        ('slim', 'l1')
    """
    return "slim" if is_cap(importance) else importance
