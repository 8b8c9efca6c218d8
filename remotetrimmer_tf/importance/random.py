"""Random channel scores: the baseline every criterion must beat."""
import numpy as np

__all__ = ["random"]


def random(group, model, seed=0, **ctx):
    """Uniform random scores, reproducible per ``(seed, group.index)``.

    Args:
        group: A ``ChannelGroup``.
        model: Unused.
        seed: Random seed.

    Example:
        >>> random(graph.groups[0], model, seed=1).shape   # doctest: +SKIP
        (64,)
    """
    rng = np.random.default_rng([int(seed), int(group.index)])
    return rng.random(group.size)
