"""Filter pruning via geometric median (He et al., CVPR 2019)."""
import numpy as np

from remotetrimmer_tf.importance.magnitude import producer_filters
from remotetrimmer_tf.importance.reductions import reduce_scores

__all__ = ["fpgm"]


def fpgm(group, model, reduction="mean", **ctx):
    """Sum of Euclidean distances from each filter to the layer's other filters.

    Filters near the geometric median are the most replaceable by the others,
    so they score lowest. Computed per producer (over the group's channels)
    and reduced across producers.

    Args:
        group: A ``ChannelGroup``.
        model: The model the graph was built from.
        reduction: How to combine several producers.

    Returns:
        ``(group.size,)`` scores, higher = more important.

    Example:
        >>> fpgm(graph.groups[0], model).shape    # doctest: +SKIP
        (64,)
    """
    scores = []
    for _, filters in producer_filters(group, model):
        seen = ~np.isnan(filters).any(axis=1)  # channels this producer makes
        w = filters[seen]
        sq = (w ** 2).sum(axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (w @ w.T), 0.0)
        np.fill_diagonal(d2, 0.0)
        score = np.full(group.size, np.nan)
        score[seen] = np.sqrt(d2).sum(axis=1)
        scores.append(score)
    return reduce_scores(scores, reduction)
