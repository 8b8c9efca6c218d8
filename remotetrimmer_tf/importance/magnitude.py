"""Filter-norm criteria: ``l1`` and ``l2`` of the producers' output filters."""
import keras
import numpy as np

from remotetrimmer_tf.importance.reductions import NoScoreError, get_layer, reduce_scores, \
    take_channels, to_numpy

__all__ = ["l1", "l2", "producer_filters"]


def _np(v):
    return to_numpy(v).astype(np.float64)


def _output_major(layer):
    """The layer's kernel as ``(out_channels, fan)``, or None if it has none."""
    if isinstance(layer, keras.layers.SeparableConv1D) or \
            isinstance(layer, keras.layers.SeparableConv2D):
        kernel = _np(layer.pointwise_kernel)
        return np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        kernel = _np(layer.kernel)                       # (..., in, multiplier)
        spatial = kernel.shape[:-2]
        kernel = kernel.reshape(spatial + (-1,))         # (..., in * multiplier)
        return np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
    transpose = tuple(getattr(keras.layers, n) for n in
                      ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
                      if hasattr(keras.layers, n))
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return None
    kernel = _np(kernel)
    axis = -2 if isinstance(layer, transpose) else -1
    kernel = np.moveaxis(kernel, axis, 0)
    return kernel.reshape(kernel.shape[0], -1)


def producer_filters(group, model):
    """``[(layer_name, (size, fan) array)]``: each producer's filter per channel."""
    out = []
    for member in group.producers:
        layer = get_layer(model, member.layer)
        w = _output_major(layer)
        if w is None:
            continue
        idx = np.asarray(member.indices)
        out.append((member.layer, take_channels(w, idx).reshape(group.size, -1)))
    if not out:
        raise NoScoreError(
            f"group {group.index} (layers {group.layers[:4]}...) has no producer "
            "kernel (Conv/Dense) to score.")
    return out


def l1(group, model, reduction="mean", **ctx):
    """L1 norm of each channel's output filter in every producer (Li et al., 2017).

    Args:
        group: A ``ChannelGroup``.
        model: The model the graph was built from.
        reduction: How to combine several producers (residual groups).

    Returns:
        ``(group.size,)`` scores, higher = more important.

    Example:
        >>> l1(graph.groups[0], model).shape    # doctest: +SKIP
        (64,)
    """
    return reduce_scores([np.abs(w).sum(axis=1) for _, w in
                          producer_filters(group, model)], reduction)


def l2(group, model, reduction="mean", **ctx):
    """L2 norm of each channel's output filter in every producer.

    Args:
        group: A ``ChannelGroup``.
        model: The model the graph was built from.
        reduction: How to combine several producers (residual groups).

    Returns:
        ``(group.size,)`` scores, higher = more important.

    Example:
        >>> l2(graph.groups[0], model).shape    # doctest: +SKIP
        (64,)
    """
    return reduce_scores([np.sqrt((w ** 2).sum(axis=1)) for _, w in
                          producer_filters(group, model)], reduction)
