"""Custom layers that act channel by channel, recognised by a proof.

A user's own layer with per-channel weights (a ViT's class token and
position table, a layer scale, a learned bias) has no registered handler.
Instead of refusing it, :func:`channelwise_problem` tries to *prove* that it
acts channel by channel, the way the surgeon will rebuild it:

1. it is a leaf layer (no sub-layers) of the user's own code (not Keras',
   not keras-hub's: those have handlers or a named refusal), built from one
   input whose last axis has ``C`` channels, with at least one weight; a
   weight with ``C`` entries on its last axis is per-channel, any other is
   shared by every channel (a GeM pooling's exponent);
2. its output has ``C`` channels on the last axis;
3. ``from_config(get_config())`` (in process, as the surgeon rebuilds it:
   ``utils.in_process``) rebuilt at full width with the layer's
   weights gives the layer's output on random data, and rebuilt at a
   narrower width ``K`` (two channel subsets: about half, and the last
   channel alone) with the per-channel weights sliced to ``K`` on their last
   axis and the shared ones whole, it
   gives exactly the layer's output channels ``K`` from input channels ``K``.

A layer that passes is handled by :class:`ChannelwiseHandler`: channel
``c`` in is channel ``c`` out, every per-channel weight is sliced on its
last axis, and the config is kept (the layer sizes its weights from its
input). A layer that fails is refused as before, the reason appended to
the refusal (:func:`refusal_reason`). The proof runs once per layer object,
on copies: the user's layer is only called (a call that changes its weights
is undone and refused).

Example:
    >>> import remotetrimmer_tf as rt
    >>> class LayerScale(keras.layers.Layer):
    ...     def build(self, shape):
    ...         self.gamma = self.add_weight(shape=(shape[-1],), initializer="ones")
    ...     def call(self, x):
    ...         return x * self.gamma
    >>> inp = keras.Input((8, 16))
    >>> x = LayerScale(name="scale")(keras.layers.Dense(32, name="fc")(inp))
    >>> model = keras.Model(inp, keras.layers.Dense(4)(x))
    >>> small = rt.Pruner(model, importance="l1", ratio=0.5).prune()
    >>> small.get_layer("fc").units, tuple(small.get_layer("scale").gamma.shape)
    (16, (16,))
"""
from __future__ import annotations

import weakref
from typing import Optional

import keras
import numpy as np

from ...utils.in_process import config_of, from_config
from .registry import LayerHandler, register_fallback
from .weight_axes import WeightAxes

__all__ = ["ChannelwiseHandler", "channelwise_problem", "refusal_reason"]

_FOREIGN = ("keras.", "keras_hub.", "keras_nlp.", "keras_cv.", "tf_keras.", "tensorflow.")
_PROOFS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class ChannelwiseHandler(LayerHandler):
    """A layer proven to act channel by channel: channel ``c`` in is channel
    ``c`` out; its per-channel weights carry the channels on their last axis,
    its shared weights none."""

    follows_channels_first = False

    def propagate(self, node, ctx):
        ctx.channelwise(node, node.in_maps[0])
        return [node.in_maps[0]]

    def weight_axes(self, layer):
        shape = _input_shape(layer)
        per = _per_channel(layer.weights, shape[-1]) if shape else []
        return {i: WeightAxes(out_axis=-1, in_axis=-1) for i in per}


CHANNELWISE = ChannelwiseHandler()


def _is_candidate(layer) -> bool:
    if not isinstance(layer, keras.layers.Layer) or isinstance(layer, keras.Model):
        return False
    module = type(layer).__module__ + "."
    return not module.startswith(_FOREIGN) and bool(layer.weights) and not \
        layer._flatten_layers(include_self=False, recursive=False)


def _input_shape(layer):
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    if len(shapes) != 1:
        return None
    shape = next(iter(shapes.values()))
    if not isinstance(shape, (tuple, list)) or not shape or \
            not all(d is None or isinstance(d, int) for d in shape):
        return None
    return tuple(shape)


def _probe_input(shape, rng):
    dims = [2] + [3 if d is None else int(d) for d in shape[1:]]
    return rng.standard_normal(dims).astype("float32")


class _NotSized(ValueError):
    pass


def _rebuilt(layer, config, x, weights):
    """A copy of ``layer`` from ``config`` (``config_of(layer)``, rebuilt in
    process as the surgeon does) called on ``x`` with ``weights`` set."""
    copy = from_config(type(layer), *config)
    copy(x)
    if [tuple(w.shape) for w in copy.weights] != [tuple(w.shape) for w in weights]:
        raise _NotSized("its weights are not sized by its input's channels")
    copy.set_weights(weights)
    return np.asarray(copy(x))


def _same(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5, atol=1e-6))


def _restore(layer, weights) -> bool:
    """Put ``weights`` back if calling ``layer`` changed them (a layer that
    counts or tracks in ``call``); whether it did."""
    now = layer.get_weights()
    if all(np.array_equal(a, b) for a, b in zip(weights, now)):
        return False
    layer.set_weights(weights)
    return True


def _per_channel(weights, c):
    """Indices of the weights with the ``c`` channels on their last axis (the
    others are shared by every channel: a GeM exponent, a temperature)."""
    return [i for i, w in enumerate(weights) if w.ndim >= 1 and w.shape[-1] == c]


def _prove(layer) -> Optional[str]:
    shape = _input_shape(layer)
    if shape is None or shape[-1] is None or len(shape) < 2:
        return "it was not built from one input with a known channel count"
    c = int(shape[-1])
    weights = [np.asarray(w) for w in layer.get_weights()]
    per = set(_per_channel(weights, c))
    x = _probe_input(shape, np.random.default_rng(0))
    try:
        y = layer(x)
    except Exception:                  # noqa: BLE001 - any failure: not proven
        return "it cannot be called on a plain array"
    finally:
        changed = _restore(layer, weights)
    if changed:
        return "calling it changes its own weights"
    if isinstance(y, (list, tuple, dict)):
        return "it has several outputs"
    y = np.asarray(y)
    if y.ndim < 1 or y.shape[-1] != c:
        return f"its output does not keep the {c} channels on the last axis"
    subsets = [np.sort(np.random.default_rng(1).permutation(c)[:max(1, c // 2)]),
               np.array([c - 1])] if c > 1 else []
    try:
        config = config_of(layer)
        if not _same(_rebuilt(layer, config, x, weights), y):
            return "from_config(get_config()) does not rebuild it"
        for keep in subsets:
            part = _rebuilt(layer, config, x[..., keep],
                            [w[..., keep] if i in per else w for i, w in enumerate(weights)])
            if not _same(part, y[..., keep]):
                return "its output channels are not computed channel by channel"
    except Exception as err:           # noqa: BLE001 - any failure: not proven
        why = str(err) if isinstance(err, _NotSized) else type(err).__name__
        return f"it cannot be rebuilt at a narrower width ({why})"
    return None


def channelwise_problem(layer) -> Optional[str]:
    """Why ``layer`` is not proven channel-wise (None: proven); cached per
    layer object. Only for leaf layers of the user's own code with weights."""
    if not _is_candidate(layer):
        return "not a leaf layer of your own code with weights"
    try:
        return _PROOFS[layer]
    except KeyError:
        pass
    except TypeError:                  # pragma: no cover - an unhashable layer
        return _prove(layer)
    problem = _prove(layer)
    _PROOFS[layer] = problem
    return problem


def refusal_reason(layer) -> Optional[str]:
    """The clause a refusal of ``layer`` adds (None: nothing to add)."""
    if not _is_candidate(layer):
        return None
    problem = channelwise_problem(layer)
    return None if problem is None else f"not provably channel-wise: {problem}"


def _fallback(obj):
    return CHANNELWISE if channelwise_problem(obj) is None else None


register_fallback(_fallback)
