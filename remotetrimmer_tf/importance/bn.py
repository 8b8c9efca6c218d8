"""BatchNorm-gamma criteria: network slimming (``slim``) and CAP (``cap``)."""
import keras
import numpy as np

from remotetrimmer_tf.importance.reductions import NoScoreError, get_layer, reduce_scores, \
    take_channels, to_numpy

__all__ = ["slim", "cap", "bn_members"]


def bn_members(group, model):
    """``[(layer, indices)]`` for the group's BatchNormalization layers with a γ."""
    found = []
    for member in group.channelwise:
        layer = get_layer(model, member.layer)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.gamma is not None:
            found.append((layer, np.asarray(member.indices).reshape(group.size, -1)[:, 0]))
    return found


def _gamma(layer):
    return np.abs(to_numpy(layer.gamma).astype(np.float64))


def slim(group, model, reduction="mean", **ctx):
    """Network slimming (Liu et al., 2017): ``|γ|`` of the group's BNs.

    Channels coupled by a residual add touch several BNs; their scores are
    reduced with ``reduction`` (``"mean"`` as published).

    Args:
        group: A ``ChannelGroup`` of ``DependencyGraph(model)``.
        model: The model the graph was built from.
        reduction: How to combine the BNs of one group.

    Returns:
        ``(group.size,)`` float64 scores, higher = more important.

    Raises:
        NoScoreError: the group has no BatchNormalization with a γ.

    Example:
        >>> scores = slim(graph.groups[3], model)   # doctest: +SKIP
    """
    members = bn_members(group, model)
    if not members:
        raise NoScoreError(
            f"slim: group {group.index} (layers {group.layers[:4]}...) has no "
            "BatchNormalization with a scale (gamma) to score.")
    return reduce_scores([take_channels(_gamma(layer), idx) for layer, idx in members],
                         reduction)


def cap(group, model, attention=None, reduction="mean", **ctx):
    """Channel Attention Pruning: ``|γ|·s̄`` (= ``|γ'|`` after folding).

    For an SE model (gates still in place) each BN that feeds a gate scores
    ``|γ_c|·s̄_c`` with ``s̄`` the gate's mean attention; BNs without a gate
    (e.g. ResNet shortcut BNs) score ``|γ_c|``. The group's score is the
    ``reduction`` (mean) over its BNs — exactly ``slim`` on the folded model.

    Args:
        group: A ``ChannelGroup`` of ``DependencyGraph(model)``.
        model: A model with :class:`SqueezeExcite` gates.
        attention: ``{se_name: (C,) array}`` from ``collect_attention``.
        reduction: How to combine the BNs of one group.

    Raises:
        ValueError: the model has no SE gates or ``attention`` is missing.
        NoScoreError: the group has no BatchNormalization.

    Example:
        >>> att = collect_attention(model, data)              # doctest: +SKIP
        >>> scores = cap(graph.groups[3], model, attention=att)  # doctest: +SKIP
    """
    from remotetrimmer_tf.attention import _check_attention, _se_layers, \
        find_gated_batchnorms

    cache = ctx.get("cache")
    key = ("cap_bn_scale", id(model))
    if cache is not None and key in cache:
        bn_scale = cache[key]
    else:
        gates = _se_layers(model)
        if not gates:
            raise ValueError(
                f"cap: model {model.name!r} has no SqueezeExcite gates. CAP needs a "
                "model trained with SE gates (e.g. resnet18(se=True)); use "
                "importance='slim' for a plain model.")
        if attention is None:
            raise ValueError(
                "cap: pass attention=collect_attention(model, data) (the mean "
                "gate outputs).")
        scales = _check_attention(gates, attention)
        bn_scale = {bn: scales[se] for se, bn in find_gated_batchnorms(model).items()}
        if cache is not None:
            cache[key] = bn_scale
    members = bn_members(group, model)
    if not members:
        raise NoScoreError(
            f"cap: group {group.index} (layers {group.layers[:4]}...) has no "
            "BatchNormalization with a scale (gamma) to score.")
    scores = []
    for layer, idx in members:
        g = _gamma(layer)
        if layer.name in bn_scale:
            g = g * bn_scale[layer.name]
        scores.append(take_channels(g, idx))
    return reduce_scores(scores, reduction)
