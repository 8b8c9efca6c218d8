"""A rebuilt model is called once before it is handed back.

``check_first_call(model, new_model, graph)`` runs the thinner model on a
small random batch whenever a changed layer is not a proven pair (a Keras
built-in layer under the library's own handler, exact by the test suite):
a user's or keras-hub's layer, a keras op, a user's handler. A model that fails there (a layer whose per-channel state
no handler knew about, a wrong handler) is never returned: the failure
becomes one ``PruningError`` line naming the first layer that failed and the
layers whose channels it reads. When the *original* model fails on the same
batch too (a fixed input size we guessed wrong, integer inputs...), the
check says nothing: the batch, not the pruning, is at fault.

Example:
    >>> inp = keras.Input((4, 4, 3))
    >>> m = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    >>> check_first_call(m, m, None) is None
    True
"""
from __future__ import annotations

import keras
import numpy as np

from .errors import PruningError, error_text

__all__ = ["check_first_call", "needs_first_call", "probe_batch"]


def probe_batch(model, seed: int = 0, batch: int = 1, free_dim: int = 32):
    """Random inputs for ``model``: floats ~ N(0, 1), integers 0; unknown
    dimensions ``free_dim``. None when an input has no usable shape."""
    rng = np.random.default_rng(seed)
    xs = []
    for t in keras.tree.flatten(model.inputs):
        shape = [batch] + [free_dim if d is None else int(d) for d in t.shape[1:]]
        dtype = str(t.dtype)
        if "float" in dtype:
            xs.append(rng.standard_normal(shape).astype("float32"))
        elif "int" in dtype or "bool" in dtype:
            xs.append(np.zeros(shape, dtype=dtype))
        else:
            return None
    return xs if len(xs) > 1 else xs[0]


def _fails(model, x):
    try:
        model(x, training=False)
    except Exception as err:    # any failure of the call is the finding
        return err
    return None


def _culprit(model, x):
    """``(name, type, error)`` of the first operation of ``model`` that fails on ``x``."""
    from .graph.functional_view import graph_of
    fn = graph_of(model)
    values = {id(t): v for t, v in zip(keras.tree.flatten(fn.inputs),
                                         keras.tree.flatten(x))}
    for depth in sorted(fn._nodes_by_depth, reverse=True):
        for node in fn._nodes_by_depth[depth]:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            if any(id(t) not in values for t in node.arguments.keras_tensors):
                continue
            args, kwargs = node.arguments.fill_in(values)
            try:
                outs = op(*args, **kwargs)
            except Exception as err:
                if isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth"):
                    name, kind, inner = _culprit(op, args[0] if len(args) == 1 else args)
                    if name is not None:
                        return f"{op.name}/{name}", kind, inner
                return op.name, type(op).__name__, err
            for t, v in zip(node.outputs, keras.tree.flatten(outs)):
                values[id(t)] = v
    return None, None, None


def _producers(graph, name):
    """Layers that create the channels ``name`` reads (for the way out)."""
    if graph is None or name not in getattr(graph, "nodes", {}):
        return []
    out = []
    for gi in graph.groups_of(name):
        out += [m.layer for m in graph.groups[gi].producers if m.layer != name]
    return sorted(set(out))[:4]


def _proven(node) -> bool:
    """A Keras built-in layer under one of the library's own handlers: its
    slicing is proven exact by the test suite (every class of ``keras.layers``
    goes through ``tools/layer_sweep.py``), so it needs no run."""
    layer, handler = node.layer, node.handler
    return (type(layer).__module__.startswith("keras.src.layers.")
            and type(handler).__module__.startswith("remotetrimmer_tf.graph.handlers."))


def needs_first_call(changed) -> bool:
    """True when a changed layer is not a proven built-in pair: a user's or
    keras-hub's layer, a keras op, or any layer under a user's handler."""
    return any(not _proven(node) for node, _, _ in changed.values())


def check_first_call(model, new_model, graph):
    """Raise ``PruningError`` when ``new_model`` fails on a small batch that
    ``model`` runs; the outputs' shapes must match too."""
    for a, b in zip(keras.tree.flatten(model.outputs), keras.tree.flatten(new_model.outputs)):
        if tuple(a.shape) != tuple(b.shape):
            raise PruningError(
                f"the pruned model's output '{b.name}' has shape {tuple(b.shape)}, "
                f"the original's {tuple(a.shape)}; please report this with the model.")
    x = probe_batch(model)
    if x is None or _fails(new_model, x) is None:
        return None
    if _fails(model, x) is not None:
        return None          # the batch does not fit the model itself
    name, kind, err = _culprit(new_model, x)
    producers = _producers(graph, name)
    way = (f"ignore={producers!r} (keeps the channels it reads), " if producers else "")
    raise PruningError(
        f"the pruned model fails on its first call at layer '{name}' ({kind}): "
        f"{type(err).__name__}: {error_text(err, 160)}. Its channels were not "
        f"sliced consistently. Way out: {way}or register a handler for {kind} "
        "(docs/custom_layers.md); please report the model.")
