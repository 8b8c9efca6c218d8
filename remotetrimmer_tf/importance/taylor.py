"""First-order Taylor criterion (Molchanov et al., 2017/2019)."""
import keras
import numpy as np

from remotetrimmer_tf.graph.handlers.registry import weight_axes_of
from remotetrimmer_tf.graph.handlers.weight_axes import output_major
from remotetrimmer_tf.importance.bn import bn_members
from remotetrimmer_tf.importance.magnitude import slot_filters
from remotetrimmer_tf.importance.reductions import NoScoreError, get_layer, reduce_scores, \
    take_channels, to_numpy

__all__ = ["taylor", "mean_gradients"]


def _loss_fn(loss):
    if loss is None:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if isinstance(loss, str):
        return keras.losses.get(loss)
    if callable(loss):
        return loss
    raise TypeError(f"taylor: loss must be None, a name or a callable, got {loss!r}.")


def _grads_tensorflow(model, loss_fn, x, y):
    import tensorflow as tf  # lazy: TF backend only

    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=False))
    return tape.gradient(loss, model.trainable_variables)


def _grads_jax(model, loss_fn, x, y):
    import jax  # lazy: JAX backend only

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def f(tv):
        logits, _ = model.stateless_call(tv, non_trainable, x, training=False)
        return loss_fn(y, logits)

    return jax.grad(f)(trainable)


def mean_gradients(model, data, steps=4, loss=None, batch_size=64):
    """Gradients of the loss w.r.t. every trainable variable, averaged over batches.

    BatchNorm runs in inference mode, so the model is not modified.

    Args:
        model: A ``keras.Model``.
        data: Labelled data (``(x, y)`` arrays, batches or a ``tf.data.Dataset``).
        steps: Number of batches (a few suffice).
        loss: Loss ``fn(y_true, y_pred)``; default sparse categorical
            cross-entropy on logits.
        batch_size: Batch size when ``data`` is whole arrays.

    Returns:
        ``{variable.path: np.ndarray}``.
    """
    from remotetrimmer_tf.attention import iterate_batches

    backend = keras.backend.backend()
    if backend == "tensorflow":
        grad_fn = _grads_tensorflow
    elif backend == "jax":
        grad_fn = _grads_jax
    else:
        raise NotImplementedError(
            f"taylor importance supports the tensorflow and jax backends, not {backend!r}.")
    loss_fn = _loss_fn(loss)
    total, n = None, 0
    for x, y in iterate_batches(data, steps=steps, batch_size=batch_size, labels=True):
        grads = [keras.ops.convert_to_numpy(g).astype(np.float64) if g is not None else None
                 for g in grad_fn(model, loss_fn, x, y)]
        total = grads if total is None else [
            a if b is None else (b if a is None else a + b) for a, b in zip(total, grads)]
        n += 1
    if n == 0:
        raise ValueError("taylor: data yielded no batches.")
    return {v.path: (g / n if g is not None else np.zeros(v.shape))
            for v, g in zip(model.trainable_variables, total)}


def taylor(group, model, data=None, steps=4, loss=None, reduction="mean", **ctx):
    """First-order Taylor estimate of the loss change when a channel is removed.

    Removing channel ``c`` sets its parameters ``θ_c`` to zero, so
    ``|ΔL| ≈ |Σ_{θ∈θ_c} θ·∂L/∂θ|`` with gradients averaged over ``steps``
    batches. A channel behind a BatchNormalization is removed exactly by
    zeroing its ``γ_c`` and ``β_c``: score ``|γ_c·∂L/∂γ_c + β_c·∂L/∂β_c|``
    per BN; without BN the producer's filter and bias are used. Members are
    combined with ``reduction``.

    Args:
        group: A ``ChannelGroup``.
        model: The model the graph was built from.
        data: Labelled data; the gradients are cached in ``ctx["cache"]``
            so all groups share one pass.
        steps: Number of batches.
        loss: Loss ``fn(y_true, y_pred)`` (default: sparse CE from logits).
        reduction: How to combine the members.

    Returns:
        ``(group.size,)`` scores, higher = more important.

    Example:
        >>> taylor(graph.groups[0], model, data=(x, y), steps=2)  # doctest: +SKIP
    """
    cache = ctx.get("cache")
    key = ("taylor_grads", id(model))
    if cache is not None and key in cache:
        grads = cache[key]
    else:
        if data is None:
            raise ValueError("taylor importance needs labelled data: pass data=(x, y) "
                             "or a dataset of (x, y) batches.")
        grads = mean_gradients(model, data, steps=steps, loss=loss)
        if cache is not None:
            cache[key] = grads

    def value_grad(var):
        return to_numpy(var).astype(np.float64), grads[var.path]

    scores = []
    for layer, idx in bn_members(group, model):
        g, dg = value_grad(layer.gamma)
        term = g * dg
        if layer.beta is not None:
            b, db = value_grad(layer.beta)
            term = term + b * db
        scores.append(np.abs(take_channels(term, idx)))
    if not scores:
        for member in group.producers:
            term = _producer_term(get_layer(model, member.layer), grads, member.slot)
            if term is None:
                continue
            idx = np.asarray(member.indices).reshape(group.size, -1)
            scores.append(np.abs(take_channels(term, idx).sum(axis=1)))
    if not scores:
        raise NoScoreError(
            f"taylor: group {group.index} (layers {group.layers[:4]}...) has no "
            "BatchNormalization or producer kernel to score.")
    return reduce_scores(scores, reduction)


def _producer_term(layer, grads, slot=None):
    """``Σ θ·∂L/∂θ`` per output channel over the weights the layer's handler
    declares on its output axis (kernels, then bias...), or None when no
    kernel of it has a gradient. A ``slot`` (an attention layer's heads):
    over the rows its handler's ``slot_filters`` give (a head's q/k/v/o)."""
    weights = layer.weights
    if slot is not None:
        if any(v.path not in grads for v in weights):
            return None
        values = slot_filters(layer, slot)
        dvalues = slot_filters(layer, slot, [grads[v.path] for v in weights])
        return None if values is None else (values * dvalues).sum(axis=1)
    axes = [(weights[i], ax) for i, ax in sorted(weight_axes_of(layer).items())
            if ax.out_axis is not None]
    kernels = [v for v, ax in axes if ax.per is not None]
    if not kernels or any(v.path not in grads for v in kernels):
        return None
    term = None
    for v, ax in sorted(axes, key=lambda p: p[1].per is None):   # kernels first
        if v.path not in grads:
            continue
        part = (output_major(to_numpy(v).astype(np.float64), ax) *
                output_major(grads[v.path], ax)).sum(axis=1)
        term = part if term is None else term + part
    return term
