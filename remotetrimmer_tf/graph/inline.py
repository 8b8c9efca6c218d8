"""Running a composite layer's ``call`` on symbolic tensors, sub-layer by sub-layer.

``functional_view`` inlines a composite layer (one whose ``call`` only
composes sub-layers and ``keras.ops``) by running that ``call`` on the
symbolic tensors of the traced graph. The user's sub-layers must not be
called (they would gain nodes) and the composite itself need not be copyable
from its config (several keras-hub blocks are not): ``swapped`` replaces,
for the duration of the call, every sub-layer the composite holds (an
attribute, or a list / tuple / dict of them) by a ``Proxy`` that the tracer
runs (a leaf: a copy called as a node; a composite: inlined in turn), and
puts the originals back afterwards.

Example:
    >>> class Block(keras.layers.Layer):
    ...     def __init__(self, **kw):
    ...         super().__init__(**kw)
    ...         self.fc = keras.layers.Dense(2)
    ...     def call(self, x):
    ...         return self.fc(x) * 2.0
    >>> block = Block()
    >>> with swapped(block, lambda sub: Proxy(sub, lambda s, a, k: a[0])):
    ...     isinstance(block.fc, Proxy)
    True
    >>> isinstance(block.fc, keras.layers.Dense)
    True
"""

from __future__ import annotations

import contextlib
import inspect

import keras

__all__ = ["Proxy", "swapped", "call_kwargs"]

_INTERNAL = {"_layers", "_tracker"}


class Proxy:
    """Stands for a sub-layer while its owner's ``call`` runs: calling it runs
    ``run(layer, args, kwargs)``; attributes are the layer's."""

    def __init__(self, layer, run):
        self._proxied = layer
        self._run = run

    def __call__(self, *args, **kwargs):
        return self._run(self._proxied, args, kwargs)

    def __getattr__(self, name):
        return getattr(self._proxied, name)


def _swap(value, make):
    if isinstance(value, keras.layers.Layer):
        return make(value)
    if isinstance(value, (list, tuple)) and value and \
            all(isinstance(v, keras.layers.Layer) for v in value):
        new = [make(v) for v in value]
        return tuple(new) if isinstance(value, tuple) else new
    if isinstance(value, dict) and value and \
            all(isinstance(v, keras.layers.Layer) for v in value.values()):
        return {k: make(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def swapped(layer, make):
    """Within the block, every sub-layer ``layer`` holds is ``make(sub)``."""
    saved = {}
    for attr, value in list(vars(layer).items()):
        if attr in _INTERNAL:
            continue
        new = _swap(value, make)
        if new is not value:
            saved[attr] = value
            object.__setattr__(layer, attr, new)
    try:
        yield layer
    finally:
        for attr, value in saved.items():
            object.__setattr__(layer, attr, value)


def call_kwargs(layer, kwargs):
    """``kwargs`` without ``training`` / ``mask`` when ``layer.call`` does not
    take them (what ``Layer.__call__`` does before calling ``call``)."""
    params = inspect.signature(layer.call).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k not in ("training", "mask") or k in params}
