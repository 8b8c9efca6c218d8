"""Copies of layers whose ``from_config(get_config())`` does not round-trip.

Some layers (several keras-hub embeddings and blocks) write a ``get_config()``
that their own ``from_config()`` refuses (derived keys such as
``num_patches`` passed back to ``__init__``) or that drops constructor
arguments (``use_patch_bias``). Their backbone reloads (it rebuilds them by
their constructor), but a plain functional copy of the model cannot be built
from their config, let alone saved and reloaded.

``Rebuilt`` is an honest copy: the original class constructed again from its
constructor arguments (each one read from the config, else from the layer's
attribute of that name), with the original's weights set, wrapped in a layer
whose own config (class path + arguments) round-trips. The copy never shares
a variable with the original. Its handler is the inner class's handler, which
edits ``arguments`` like a config when channels are pruned. Reloading a saved
``Rebuilt`` imports its class from a ``keras`` / ``keras_hub`` module only.

Example:
    >>> dense = keras.layers.Dense(3, name="d")
    >>> _ = dense(keras.Input((4,)))
    >>> copy = rebuild(dense)
    >>> copy.inner is not dense, copy.arguments["units"]
    (True, 3)
"""

from __future__ import annotations

import importlib
import inspect
import types

import keras

__all__ = ["Rebuilt", "rebuild", "constructor_arguments", "NotCopyable"]

_MODULES = ("keras.", "keras_hub.")
_BASE = ("name", "trainable", "dtype")
_NOT_ARGUMENTS = (keras.layers.Layer, keras.Variable)   # a config that holds a sub-layer


def constructor_arguments(layer, config=None) -> dict:
    """``layer``'s ``__init__`` arguments: from its config where present, else
    the attribute of the same name (arguments found in neither keep their
    defaults). ``name``, ``trainable`` and ``dtype`` come from the layer."""
    if config is None:
        try:
            config = layer.get_config()
        except Exception:    # noqa: BLE001 - a get_config that raises: attributes only
            config = {}
    args = {}
    params = inspect.signature(type(layer).__init__).parameters
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in _BASE:
            continue
        value = getattr(layer, name, None)
        usable = value is not None and not isinstance(value, _NOT_ARGUMENTS)
        if name in config and not isinstance(config[name], _NOT_ARGUMENTS) and \
                not (usable and callable(value) and not isinstance(value, type)):
            args[name] = config[name]
        elif usable:        # missing from the config, or a function (the object itself)
            args[name] = value
    args.update(name=layer.name, trainable=layer.trainable, dtype=layer.dtype_policy.name)
    return args


def _class_path(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(path):
    module, _, name = path.rpartition(".")
    if not module.startswith(_MODULES):
        raise ValueError(f"Rebuilt: will not import layer class {path!r} (only classes "
                         f"from {' / '.join(m.rstrip('.') for m in _MODULES)} modules).")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        raise ValueError(f"Rebuilt: {path!r} is not a Keras layer class.")
    return cls


class NotCopyable(ValueError):
    """A layer that neither its config nor its constructor arguments rebuild."""


def _encode(value):
    """A constructor argument as config: plain values as they are, a named
    function of a keras / keras_hub module by its path, else Keras' form."""
    if isinstance(value, (int, float, str, bool, type(None), list, tuple)):
        return value
    if isinstance(value, types.FunctionType) and value.__name__ != "<lambda>" and \
            value.__module__.startswith(_MODULES):
        return {"__function__": f"{value.__module__}.{value.__qualname__}"}
    return keras.saving.serialize_keras_object(value)


def _decode(value):
    if isinstance(value, dict) and "__function__" in value:
        module, _, name = value["__function__"].rpartition(".")
        if not module.startswith(_MODULES):
            raise ValueError(f"Rebuilt: will not import function {value['__function__']!r}.")
        return getattr(importlib.import_module(module), name)
    if isinstance(value, dict) and "class_name" in value:
        return keras.saving.deserialize_keras_object(value)
    return value


@keras.saving.register_keras_serializable("remotetrimmer_tf")
class Rebuilt(keras.layers.Layer):
    """A layer of class ``layer_class`` built from ``arguments``; calls it.

    Args:
        layer_class: ``"module.ClassName"`` of the wrapped layer (a ``keras`` or
            ``keras_hub`` module).
        arguments: its constructor arguments (plain or serialized values).
    """

    def __init__(self, layer_class, arguments, **kwargs):
        super().__init__(**kwargs)
        self.layer_class = layer_class
        self.arguments = dict(arguments)
        values = {k: _decode(v) for k, v in self.arguments.items()}
        self.inner = _import_class(layer_class)(**values)

    def build(self, input_shape=None):
        # built eagerly here (not inside the symbolic call): layers that make
        # constant tensors in build() need them outside any scratch graph
        if not self.inner.built and input_shape is not None:
            self.inner.build(input_shape)

    def call(self, inputs, *args, **kwargs):
        return self.inner(inputs, *args, **kwargs)

    def get_config(self):
        args = {k: _encode(v) for k, v in self.arguments.items()}
        return {**super().get_config(), "layer_class": self.layer_class, "arguments": args}


def rebuild(layer, why=None):
    """A ``Rebuilt`` copy of ``layer`` (not yet built: call it, then set the
    weights); ``why``: the error its own config gave, for the refusal."""
    args = constructor_arguments(layer)
    lambdas = [k for k, v in args.items()
               if isinstance(v, types.FunctionType) and v.__name__ == "<lambda>"]
    if lambdas:
        raise NotCopyable(
            f"Layer '{layer.name}' ({type(layer).__name__}) cannot be copied: its "
            f"argument {lambdas[0]!r} is a Python lambda, which Keras rebuilds only "
            "with safe_mode=False. Way out: use a named (registered) function.")
    try:
        return Rebuilt(_class_path(type(layer)), args, name=layer.name,
                       trainable=layer.trainable, dtype=layer.dtype_policy.name)
    except Exception as err:    # noqa: BLE001 - refused in one line below
        cause = why or err
        raise NotCopyable(
            f"Layer '{layer.name}' ({type(layer).__name__}) cannot be copied: its "
            f"config does not rebuild it ({type(cause).__name__}: "
            f"{str(cause).strip()[:100]}) and neither do its constructor arguments "
            f"({type(err).__name__}: {str(err).strip()[:100]}). Way out: give the layer "
            "a get_config() that from_config() accepts, or register a handler for the "
            "layer that contains it.") from None
