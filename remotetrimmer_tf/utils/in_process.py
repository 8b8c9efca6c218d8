"""Rebuild Keras objects from their config *in this process*, keeping the
Python callables Keras cannot serialise.

Keras round-trips a layer through ``get_config()`` / ``from_config()``. That
fails for what people really put in models: an ``activation=`` that is a
lambda, a closure or a ``functools.partial``, a ``Lambda`` layer's Python
function (refused in safe mode), a callable object without ``get_config``.
Surgery runs in the user's process, so it does not need to serialise those
objects at all: ``config_of`` writes a token in their place, and
``from_config`` gives the *same* object back. A rebuilt model therefore holds
the very function the user wrote (saving it to ``.keras`` stays Keras'
business, as for the original).

Example:
    >>> import functools, keras
    >>> act = functools.partial(keras.activations.leaky_relu, negative_slope=0.2)
    >>> d = keras.layers.Dense(3, activation=act)
    >>> config, objects = config_of(d)
    >>> new = from_config(type(d), config, objects)
    >>> new.activation is act
    True
"""
from __future__ import annotations

import contextlib
import functools
import threading
import types

__all__ = ["config_of", "from_config", "needs_in_process", "in_process_objects"]

_LOCK = threading.RLock()
_PREFIX = "remotetrimmer_in_process_"


def _keras_function(obj) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return isinstance(obj, types.FunctionType) and module.startswith("keras")


def needs_in_process(obj) -> bool:
    """True for a callable that Keras cannot serialise and reload by name:
    a lambda, a closure / local function, a ``functools.partial``, a bound
    method, or a callable object without ``get_config``."""
    if obj is None or isinstance(obj, (str, type)) or not callable(obj):
        return False
    if isinstance(obj, functools.partial) or isinstance(obj, types.MethodType):
        return True
    if isinstance(obj, types.FunctionType):
        if _keras_function(obj) and obj.__name__ != "<lambda>":
            return False
        import keras
        if keras.saving.get_registered_name(obj) != obj.__name__:
            return False                  # registered by the user: Keras finds it
        return (obj.__name__ == "<lambda>" or "<locals>" in obj.__qualname__
                or not _importable(obj))
    if isinstance(obj, types.BuiltinFunctionType):
        return True
    return not hasattr(obj, "get_config")


def _importable(fn) -> bool:
    import sys
    module = sys.modules.get(fn.__module__ or "")
    return module is not None and getattr(module, fn.__name__, None) is fn


class _Tokens:
    """Objects replaced by tokens while one config is written."""

    def __init__(self):
        self.objects = {}
        self.ids = set()

    def token(self, obj):
        name = f"{_PREFIX}{id(obj):x}"
        self.objects[name] = obj
        self.ids.add(id(obj))
        return {"module": None, "class_name": "function", "config": name,
                "registered_name": name}


@contextlib.contextmanager
def _tokenising(tokens):
    """Within the block, Keras serialises ``needs_in_process`` objects as tokens."""
    from keras.src.saving import object_registration as reg
    from keras.src.saving import serialization_lib as lib
    original = lib.serialize_keras_object
    names = {}      # what keras.activations.serialize asks get_registered_name

    def serialize(obj):
        if id(obj) in tokens.ids or needs_in_process(obj):
            config = tokens.token(obj)
            if isinstance(obj, types.FunctionType) and obj not in reg.GLOBAL_CUSTOM_NAMES:
                names[obj] = config["config"]
                reg.GLOBAL_CUSTOM_NAMES[obj] = config["config"]
            return config
        return original(obj)

    with _LOCK:
        lib.serialize_keras_object = serialize
        try:
            yield
        finally:
            lib.serialize_keras_object = original
            for obj in names:
                reg.GLOBAL_CUSTOM_NAMES.pop(obj, None)


def _lambda_functions(obj, config, tokens):
    """A ``Lambda`` writes its Python function itself (not through Keras'
    serialiser): put tokens in the config entries of every Lambda."""
    import keras
    layers = [obj] if isinstance(obj, keras.layers.Layer) else []
    if isinstance(obj, keras.Model):
        layers = list(obj._flatten_layers(include_self=False, recursive=True))
    by_name = {l.name: l for l in layers if isinstance(l, keras.layers.Lambda)}
    if not by_name:
        return
    for entry in _entries(config, obj):
        layer = by_name.get(entry.get("name") or entry.get("config", {}).get("name"))
        if layer is None or not isinstance(entry.get("config"), dict):
            continue
        cfg = entry["config"]
        for key, value in (("function", layer.function),
                           ("output_shape", getattr(layer, "_output_shape", None)),
                           ("mask", getattr(layer, "mask", None))):
            if key in cfg and callable(value) and needs_in_process(value):
                cfg[key] = tokens.token(value)


def _entries(config, obj):
    """Every layer entry of a (possibly nested) model config; a layer's own
    config as one entry."""
    import keras
    if not isinstance(obj, keras.Model):
        return [{"name": getattr(obj, "name", None), "config": config}]
    out, stack = [], [config]
    while stack:
        cfg = stack.pop()
        for entry in cfg.get("layers", []) if isinstance(cfg, dict) else []:
            out.append(entry)
            inner = entry.get("config")
            if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
                stack.append(inner)
    return out


def config_of(obj):
    """``(obj.get_config(), objects)`` with every callable Keras cannot
    serialise replaced by a token; ``objects`` maps tokens back."""
    tokens = _Tokens()
    with _tokenising(tokens):
        config = obj.get_config()
    _lambda_functions(obj, config, tokens)
    return config, tokens.objects


@contextlib.contextmanager
def in_process_objects(objects, custom_objects=None):
    """Scope in which ``from_config`` resolves the tokens of ``config_of``
    and ``custom_objects`` (Keras' scopes replace, not merge: one scope)."""
    import keras
    merged = dict(custom_objects or {})
    merged.update(objects)
    with keras.saving.custom_object_scope(merged):
        yield


def from_config(cls, config, objects, custom_objects=None):
    """``cls.from_config(config)`` resolving the tokens of ``config_of``."""
    with in_process_objects(objects, custom_objects):
        return cls.from_config(config)
