"""Reducing per-member channel scores to one score per group channel."""
import numpy as np

import warnings

__all__ = ["REDUCTIONS", "reduce_scores", "take_channels", "NoScoreError", "get_layer",
           "to_numpy"]


class NoScoreError(ValueError):
    """A criterion cannot score this group (e.g. ``slim`` on a group without BN).

    The :class:`~remotetrimmer_tf.pruner.Pruner` leaves such groups whole and
    records why in ``Pruner.skipped``.
    """


def _first_seen(stack):
    """Per channel, the first member's score that is not NaN."""
    seen = ~np.isnan(stack)
    first = np.argmax(seen, axis=0)
    return stack[first, np.arange(stack.shape[1])]


# NaN marks a channel a member does not see (see `take_channels`); every
# reduction ignores those entries.
REDUCTIONS = {
    "mean": lambda s: np.nanmean(s, axis=0),
    "max": lambda s: np.nanmax(s, axis=0),
    "sum": lambda s: np.nansum(s, axis=0),
    "prod": lambda s: np.nanprod(s, axis=0),
    "first": _first_seen,
}


def take_channels(values, indices):
    """``values[indices]`` along axis 0, NaN where ``indices`` is ``-1``.

    A ``Member`` holds ``-1`` for the group channels its layer does not see
    (e.g. one branch of a Concatenate later added to a wider tensor); such
    entries must not borrow another channel's value.

    Example:
        >>> take_channels(np.array([1., 2., 3.]), np.array([2, -1, 0])).tolist()
        [3.0, nan, 1.0]
    """
    values = np.asarray(values, dtype=np.float64)
    idx = np.asarray(indices)
    out = values[np.where(idx >= 0, idx, 0)]
    out[idx < 0] = np.nan
    return out


def reduce_scores(scores, reduction="mean"):
    """Reduce a list of ``(size,)`` member scores to one ``(size,)`` array.

    Args:
        scores: Non-empty list of equally long 1-D arrays (one per member);
            NaN entries (channels a member does not see) are ignored, and a
            channel with no score at all gets ``+inf`` (never pruned first).
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
        with warnings.catch_warnings():  # all-NaN channels are handled below
            warnings.simplefilter("ignore", RuntimeWarning)
            out = REDUCTIONS[reduction](stack)
    else:
        raise ValueError(
            f"Unknown reduction {reduction!r}; use one of {sorted(REDUCTIONS)} "
            "or a callable.")
    if out.shape != stack.shape[1:]:
        raise ValueError(
            f"reduction returned shape {out.shape}, expected {stack.shape[1:]}.")
    # A channel no member could score is kept: +inf ranks it above all others.
    return np.where(np.isnan(stack).all(axis=0), np.inf, out)


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
