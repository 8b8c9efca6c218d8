"""Reducing per-member channel scores to one score per group channel."""
import numpy as np

__all__ = ["REDUCTIONS", "reduce_scores", "NoScoreError", "get_layer", "to_numpy"]


class NoScoreError(ValueError):
    """A criterion cannot score this group (e.g. ``slim`` on a group without BN).

    The :class:`~remotetrimmer_tf.pruner.Pruner` leaves such groups whole and
    records why in ``Pruner.skipped``.
    """


REDUCTIONS = {
    "mean": lambda s: s.mean(axis=0),
    "max": lambda s: s.max(axis=0),
    "sum": lambda s: s.sum(axis=0),
    "prod": lambda s: s.prod(axis=0),
    "first": lambda s: s[0],
}


def reduce_scores(scores, reduction="mean"):
    """Reduce a list of ``(size,)`` member scores to one ``(size,)`` array.

    Args:
        scores: Non-empty list of equally long 1-D arrays (one per member).
        reduction: ``"mean"`` (published), ``"max"``, ``"sum"``, ``"prod"``,
            ``"first"`` or a callable ``(k, size) array -> (size,)``.

    Example:
        >>> reduce_scores([np.array([1., 3.]), np.array([3., 1.])]).tolist()
        [2.0, 2.0]
    """
    if not scores:
        raise ValueError("reduce_scores: no member scores to reduce.")
    stack = np.stack([np.asarray(s, dtype=np.float64) for s in scores])
    if callable(reduction):
        out = np.asarray(reduction(stack), dtype=np.float64)
    elif reduction in REDUCTIONS:
        out = REDUCTIONS[reduction](stack)
    else:
        raise ValueError(
            f"Unknown reduction {reduction!r}; use one of {sorted(REDUCTIONS)} "
            "or a callable.")
    if out.shape != stack.shape[1:]:
        raise ValueError(
            f"reduction returned shape {out.shape}, expected {stack.shape[1:]}.")
    return out


def get_layer(model, name):
    """Layer ``name`` of ``model``; ``"outer/inner"`` looks inside nested models."""
    layer = model
    for part in name.split("/"):
        try:
            layer = layer.get_layer(part)
        except (ValueError, AttributeError):
            raise ValueError(
                f"Layer {name!r} (part {part!r}) not found in model {model.name!r}."
            ) from None
    return layer


def to_numpy(value):
    """A variable's or tensor's value as a numpy array (any backend, no copy warning)."""
    import keras
    if isinstance(value, keras.Variable):
        value = value.value
    if keras.backend.backend() == "tensorflow" and callable(getattr(value, "numpy", None)):
        return np.asarray(value.numpy())
    return np.asarray(keras.ops.convert_to_numpy(value))
