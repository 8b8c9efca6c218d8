"""What an activation does across channels: the one table every handler reads.

An activation is *channel-wise* when output channel ``c`` depends only on
input channel ``c`` (relu, sigmoid, hard_swish...): removing channels then
changes nothing else. It is *channel-mixing* when it normalises or combines
over the channel axis (softmax, log_softmax, sparsemax; glu halves it).
Anything else is *unknown* and is never assumed channel-wise: the channels
around it are frozen with a reason, until it is declared with
``register_activation``.

This covers every spelling: ``Activation("softmax")``, a layer's
``activation=`` argument (``Dense(C, activation="softmax")``), the keras ops
(``keras.ops.softmax`` nodes, see ``ops.py``) and ``layers.Softmax``.

Example:
    >>> activation_kind("relu")
    'channelwise'
    >>> activation_kind(keras.activations.softmax)
    'mixing'
"""

from __future__ import annotations

from ...errors import PruningError
from typing import Dict

import keras

__all__ = ["activation_kind", "register_activation", "activation_name"]

CHANNELWISE = "channelwise"
MIXING = "mixing"
UNKNOWN = "unknown"

_KINDS: Dict[str, str] = {}
for _n in ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu",
           "silu", "swish", "hard_silu", "hard_swish", "sigmoid", "hard_sigmoid",
           "log_sigmoid", "sparse_sigmoid", "tanh", "hard_tanh", "tanh_shrink",
           "soft_shrink", "hard_shrink", "softplus", "softsign", "sparse_plus",
           "squareplus", "exponential", "mish", "threshold"):
    _KINDS[_n] = CHANNELWISE
for _n in ("softmax", "log_softmax", "sparsemax", "glu"):
    _KINDS[_n] = MIXING
_BY_OBJECT: Dict[int, str] = {}


def activation_name(act) -> str:
    """A readable name of an activation (string, function or callable)."""
    if act is None:
        return "linear"
    if isinstance(act, str):
        return act
    return getattr(act, "__name__", None) or type(act).__name__


# the same functions under the same names in the frameworks Keras runs on
# (``activation=tf.nn.relu`` in Keras-2-era code, ``jax.nn.gelu``...)
_FRAMEWORKS = ("keras.", "tensorflow.", "jax.", "jax._src.", "torch.")


def _keras_name(act):
    """The Keras name of a built-in activation function (Keras', or the same
    function of TensorFlow / JAX / PyTorch), or None."""
    if isinstance(act, str):
        return act.lower()
    name = getattr(act, "__name__", None)
    module = getattr(act, "__module__", "") or ""
    if name and module.startswith(_FRAMEWORKS) and name in _KINDS:
        return name
    return None


def activation_kind(act) -> str:
    """``"channelwise"``, ``"mixing"`` or ``"unknown"`` for an activation."""
    if act is None:
        return CHANNELWISE
    kind = _BY_OBJECT.get(id(act))
    if kind is not None:
        return kind
    name = _keras_name(act)
    if name is not None and name in _KINDS:
        return _KINDS[name]
    if isinstance(act, str):
        try:
            fn = keras.activations.get(act)
        except (ValueError, TypeError):
            return UNKNOWN
        return activation_kind(fn) if not isinstance(fn, str) else UNKNOWN
    return UNKNOWN


def register_activation(act, kind: str = CHANNELWISE):
    """Declare what a custom activation does across channels.

    Args:
        act: the activation function (or its registered name).
        kind: ``"channelwise"`` (output channel c reads input channel c only)
            or ``"mixing"``.

    Example:
        >>> def my_act(x):
        ...     return keras.ops.relu(x) * 0.5
        >>> register_activation(my_act)
        >>> activation_kind(my_act)
        'channelwise'
    """
    if kind not in (CHANNELWISE, MIXING):
        raise PruningError(f"register_activation: kind must be 'channelwise' or "
                         f"'mixing', got {kind!r}.")
    if isinstance(act, str):
        _KINDS[act.lower()] = kind
    else:
        _BY_OBJECT[id(act)] = kind


def activation_problem(layer_name: str, act):
    """None when ``act`` is channel-wise, else the reason to freeze."""
    kind = activation_kind(act)
    if kind == CHANNELWISE:
        return None
    name = activation_name(act)
    if kind == MIXING:
        return (f"layer '{layer_name}' applies activation '{name}', which mixes "
                "the channels (normalises or combines over the channel axis)")
    return (f"layer '{layer_name}' applies activation '{name}', not known to be "
            "channel-wise; declare it with remotetrimmer_tf.graph."
            "register_activation(fn) if it is")
