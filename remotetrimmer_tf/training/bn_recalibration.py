"""Re-estimate BatchNormalization statistics after pruning / folding.

After channels are removed (or SE gates folded into BN), the stored moving
mean / variance no longer describe the activations that reach each BN.
:func:`recalibrate_bn` runs the model in training mode over some data and sets
every BN's moving statistics to the exact average of the per-batch
statistics (cumulative averaging, like PyTorch's ``momentum=None``): before
batch ``t`` (1-based) each BN's momentum is set to ``(t-1)/t``, so
``moving_t = ((t-1) * moving_{t-1} + batch_t) / t``.

Only BN moving statistics change: the forward passes run eagerly on a clone
with dropout disabled, and trainable weights are untouched. The user's model
is never modified; a new model is returned. Backend-agnostic (``keras`` only).
"""
import contextlib

import keras

from remotetrimmer_tf.utils.batches import iterate_batches
from remotetrimmer_tf.utils.keras_models import clone_with_weights

__all__ = ["recalibrate_bn", "settle_bn", "batch_norms"]

_NOISE_LAYERS = (keras.layers.Dropout, keras.layers.GaussianDropout,
                 keras.layers.GaussianNoise, keras.layers.AlphaDropout)


def _walk(layer):
    """Every layer inside ``layer``: nested models and composite layers' own
    sub-layers (a BN held as a composite's attribute) included."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is not None:
        yield from flatten(include_self=False, recursive=True)
        return
    for sub in getattr(layer, "layers", None) or ():   # pragma: no cover - old Keras
        yield sub
        yield from _walk(sub)


def recalibrate_bn(  # long: one pass over the data; mostly docstring
        model, data, steps=None, batch_size=64, verbose=0):
    """Return a copy of ``model`` whose BN moving statistics are re-estimated.

    Args:
        model: a built Keras model (functional or sequential; nested models
            are handled).
        data: numpy images, ``(x, y)`` arrays, a batched ``tf.data.Dataset`` or
            any iterable of ``x`` / ``(x, y, ...)`` batches.
        steps: use at most this many batches (``None``: all of ``data``).
        batch_size: batch size for numpy input.
        verbose: print the number of batches used.

    Returns:
        a new ``keras.Model`` (same architecture and weights, new BN moving
        mean / variance). If the model has no BatchNormalization layer, an
        unchanged copy is returned.

    Raises:
        ValueError: ``data`` yields no batch, or ``steps < 1``.

    Example:

    ```python
    pruned = rt.Pruner(model, importance="l1", ratio=0.7).prune()
    pruned = rt.recalibrate_bn(pruned, x_train[:4096], steps=64)
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"recalibrate_bn: `model` must be a keras.Model, got {type(model).__name__}.")
    _check_steps(steps, batch_size, "recalibrate_bn")   # before the copy is made
    clone = clone_with_weights(model, what="recalibrate_bn")
    used = settle_bn(clone, data, steps=steps, batch_size=batch_size,
                     name="recalibrate_bn")
    if verbose and used:
        print(f"recalibrate_bn: re-estimated {len(batch_norms(clone))} BatchNormalization "
              f"layers over {used} batches")
    return clone


def batch_norms(model, only_trainable=False):
    """The ``BatchNormalization`` layers of ``model`` (nested models included);
    ``only_trainable``: those that update their statistics while training."""
    return [l for l in _walk(model) if isinstance(l, keras.layers.BatchNormalization)
            and (l.trainable or not only_trainable)]


def settle_bn(  # long: one pass over the data; mostly docstring
        model, data, steps=None, batch_size=64, only_trainable=False, name="settle_bn"):
    """Re-estimate ``model``'s BatchNorm moving statistics in place ("precise BN").

    One pass without gradients over ``data`` in training mode (noise layers
    off): every BN's moving mean / variance becomes the exact average of its
    per-batch statistics under the current weights, replacing the running
    average that training left behind (which, with Keras' default momentum
    0.99, still remembers its initial (0, 1) after tens of steps).

    Args:
        model: a built Keras model; modified in place (only BN moving
            statistics change).
        data: numpy images, ``(x, y)`` arrays, a batched ``tf.data.Dataset`` or
            any iterable of ``x`` / ``(x, y, ...)`` batches (augmentation-free
            training images).
        steps: at most this many batches (``None``: all of ``data``).
        batch_size: batch size for numpy input.
        only_trainable: re-estimate only the BN layers that are trainable (those
            training moved); frozen ones keep their statistics.
        name: what error messages call this (``"recalibrate_bn"``).

    Returns:
        the number of batches used (0 if the model has no BN to settle).

    Raises:
        ValueError: ``data`` yields no batch, ``steps < 1`` or ``batch_size < 1``.

    Example:

    ```python
    settle_bn(model, x_train[:2048], steps=32)
    ```
    """
    _check_steps(steps, batch_size, name)
    bns = batch_norms(model, only_trainable)
    if not bns:
        return 0
    used = 0
    with _statistics_pass(model, bns):
        for batch in iterate_batches(data, None if steps is None else int(steps),
                                     int(batch_size), name=f"{name}: `data`"):
            used += 1
            for l in bns:
                l.momentum = (used - 1) / used
            model(batch, training=True)
    if used == 0:
        raise ValueError(f"{name}: `data` yielded no batch.")
    return used


def _check_steps(steps, batch_size, name):
    if steps is not None and int(steps) < 1:
        raise ValueError(f"{name}: `steps` must be >= 1 or None, got {steps}.")
    if int(batch_size) < 1:
        raise ValueError(f"{name}: `batch_size` must be >= 1, got {batch_size}.")


@contextlib.contextmanager
def _statistics_pass(model, bns):
    """Training-mode forward passes, but without stochastic layers and with
    every BN in ``bns`` updating its statistics (a frozen BN runs in
    inference mode); momenta, ``trainable`` and noise rates restored after."""
    saved = [(l, l.momentum, l.trainable) for l in bns]
    noise = []
    for l in _walk(model):
        if isinstance(l, _NOISE_LAYERS):
            attr = "stddev" if isinstance(l, keras.layers.GaussianNoise) else "rate"
            noise.append((l, attr, getattr(l, attr)))
            setattr(l, attr, 0.0)
    for l in bns:
        l.trainable = True
    try:
        yield
    finally:
        for l, momentum, trainable in saved:
            l.momentum = momentum
            l.trainable = trainable
        for l, attr, value in noise:
            setattr(l, attr, value)
