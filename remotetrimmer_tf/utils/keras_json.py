"""Walkers over serialized Keras tensors inside a model's ``get_config()``.

A functional config refers to a layer's inputs as Keras-tensor dicts
``{"class_name": "__keras_tensor__", "config": {"shape", "dtype",
"keras_history": [layer, node, index]}}``, nested anywhere inside the
node's ``args`` / ``kwargs``. Editing a graph (re-pointing a consumer,
dropping a layer, resizing a head) means finding and rewriting them; these
two walkers are the one place that knows the format.

Example:

>>> cfg = {"args": [{"class_name": "__keras_tensor__",
...                  "config": {"keras_history": ["conv", 0, 0]}}], "kwargs": {}}
>>> keras_histories(cfg)
[['conv', 0, 0]]
>>> moved = map_keras_tensors(cfg, lambda t: {**t, "config": {"keras_history": ["bn", 0, 0]}})
>>> keras_histories(moved), keras_histories(cfg)
([['bn', 0, 0]], [['conv', 0, 0]])
"""
__all__ = ["KERAS_TENSOR", "is_keras_tensor", "keras_histories", "map_keras_tensors"]

KERAS_TENSOR = "__keras_tensor__"


def is_keras_tensor(obj):
    """Whether ``obj`` is a serialized Keras tensor dict."""
    return isinstance(obj, dict) and obj.get("class_name") == KERAS_TENSOR


def keras_histories(obj):
    """Every ``keras_history`` ``[layer, node, index]`` inside ``obj``, in order."""
    if is_keras_tensor(obj):
        return [obj["config"]["keras_history"]]
    if isinstance(obj, dict):
        return [h for v in obj.values() for h in keras_histories(v)]
    if isinstance(obj, (list, tuple)):
        return [h for v in obj for h in keras_histories(v)]
    return []


def map_keras_tensors(obj, fn):
    """A copy of ``obj`` with every Keras-tensor dict ``t`` replaced by ``fn(t)``.

    Containers are rebuilt (lists stay lists, tuples tuples); everything else
    is shared with ``obj``, which is not modified as long as ``fn`` does not
    modify its argument (return a new dict instead).
    """
    if is_keras_tensor(obj):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_keras_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_keras_tensors(v, fn) for v in obj)
    return obj
