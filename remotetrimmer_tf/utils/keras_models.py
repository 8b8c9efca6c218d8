"""Small Keras-model helpers: copy weights, clone with weights, the custom
objects a model needs to be rebuilt from its config, and whether it outputs
logits.

Example:

>>> import keras
>>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
>>> c = clone_with_weights(m)
>>> c is m, all((a == b).all() for a, b in zip(c.get_weights(), m.get_weights()))
(False, True)
>>> infer_from_logits(m)
True
"""
# Keras is imported inside the functions: importing this module must not be
# what first imports Keras (the package registers its Keras classes right
# after that import, and those modules import this one).

__all__ = ["copy_weights", "clone_with_weights", "custom_objects", "infer_from_logits"]


def copy_weights(dst_model, src_model):
    """Assign every weight of ``src_model`` to ``dst_model`` (same
    architecture), variable to variable (no numpy round trip).

    Raises:
        ValueError: the models have different weights (count or shapes).
    """
    import keras

    dst_w, src_w = dst_model.weights, src_model.weights
    if len(dst_w) != len(src_w) or any(tuple(a.shape) != tuple(b.shape)
                                       for a, b in zip(dst_w, src_w)):
        raise ValueError(f"models '{dst_model.name}' and '{src_model.name}' have different "
                         "weights (architecture mismatch).")
    for dst, src in zip(dst_w, src_w):
        dst.assign(src.value)


def clone_with_weights(model, what="clone_with_weights"):
    """``keras.models.clone_model(model)`` with every weight copied over.

    Args:
        model: a functional or Sequential model (a subclassed one needs
            ``get_config``).
        what: the caller's name for the error message.

    Raises:
        ValueError: the clone's weights differ (e.g. a subclassed model
            without ``get_config``).
    """
    import keras

    clone = keras.models.clone_model(model)
    try:
        copy_weights(clone, model)
    except ValueError:
        raise ValueError(f"{what}: could not clone model '{model.name}' (weights "
                         "differ); is it a subclassed model without get_config?") from None
    return clone


def _is_custom(cls):
    module = cls.__module__ or ""
    return not module.startswith("keras.") or module.startswith("keras.src.applications")


def custom_objects(model, out=None):
    """The classes and functions a model's config names that Keras cannot
    find by itself: non-Keras layers / operations (yours, keras-hub's, the
    private layers of ``keras.applications``) under their class name and
    registered name, and user activation functions; nested models included.

    Pass the result to ``from_config`` / ``keras.saving.custom_object_scope``
    to rebuild a model from an edited config.

    Args:
        model: a Keras model.
        out: a dict to add to (``None``: a new one).

    Returns:
        ``{name: class or function}``.

    Example:

    >>> import keras
    >>> @keras.saving.register_keras_serializable(package="docs")
    ... class Twice(keras.layers.Layer):
    ...     def call(self, x):
    ...         return 2 * x
    >>> m = keras.Sequential([keras.Input((3,)), Twice(), keras.layers.Dense(2)])
    >>> sorted(custom_objects(m))
    ['Twice', 'docs>Twice']
    """
    import keras

    out = {} if out is None else out
    stack = list(getattr(model, "operations", None) or getattr(model, "layers", []))
    while stack:
        op = stack.pop(0)
        cls = type(op)
        if _is_custom(cls):
            out.setdefault(cls.__name__, cls)
            out.setdefault(keras.saving.get_registered_name(cls), cls)
        act = getattr(op, "activation", None)   # a user's activation function
        if callable(act) and not (getattr(act, "__module__", "") or "").startswith("keras"):
            name = getattr(act, "__name__", None)
            if name:
                out.setdefault(name, act)
        if isinstance(op, keras.Model):
            stack.extend(getattr(op, "operations", None) or op.layers)
    return out


def _is_softmax(fn):
    name = getattr(fn, "__name__", None) or (fn if isinstance(fn, str) else "")
    return name == "softmax"


def infer_from_logits(model):
    """Guess whether ``model`` outputs logits (True) or probabilities (False).

    Probabilities when the last layer is a ``Softmax`` layer, or has
    ``activation="softmax"`` (a ``Dense``, an ``Activation`` layer); a nested
    last model is looked into. Logits otherwise.

    Example:

    >>> import keras
    >>> infer_from_logits(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    True
    >>> infer_from_logits(keras.Sequential([keras.Input((4,)),
    ...                                     keras.layers.Dense(3, activation="softmax")]))
    False
    >>> infer_from_logits(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
    ...                                     keras.layers.Softmax()]))
    False
    """
    import keras

    layers = getattr(model, "layers", None)
    if not layers:
        return True
    last = layers[-1]
    if isinstance(last, keras.Model):
        return infer_from_logits(last)
    if isinstance(last, keras.layers.Softmax):
        return False
    return not _is_softmax(getattr(last, "activation", None))
