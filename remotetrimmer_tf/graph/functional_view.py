"""A plain functional view of any Keras model built from a functional graph.

The dependency graph and the surgeon read one thing: a plain
``keras.Model(inputs, outputs)`` whose nodes are layers with handlers, keras
ops and nested plain functional models. Users hold more than that:

- keras-hub ``Backbone`` and task models (``ImageClassifier``) and any
  ``keras.Model`` subclass built functionally in ``__init__``: their
  ``get_config()`` holds constructor arguments, not a graph;
- such models nested as one layer of another model (``f = backbone(x)``);
- *composite* layers: a layer without a handler whose ``call`` only composes
  other Keras layers and ``keras.ops`` (keras-hub's MBConv / FusedMBConv /
  DepthwiseConvBlock / HGNetV2 blocks, users' own blocks).

``functional_view(model)`` returns such a plain model computing the same
function. When the model already is one it is returned unchanged (no copy);
a functional subclass without composite layers gets a zero-copy view over its
own graph; otherwise the graph is traced again on fresh ``keras.Input``s with
copies of the layers (the user's layers are never called, so they gain no
nodes) and every composite layer's ``call`` is run on the symbolic tensors,
so its sub-layers and ops become nodes of the view. The traced view is
checked against the original on a random batch before it is used.

Example:
    >>> inp = keras.Input((8, 8, 3))
    >>> m = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp))
    >>> functional_view(m) is m
    True
"""

from __future__ import annotations

import math
import weakref
from typing import Dict, Optional

import keras
import numpy as np

from ..errors import PruningError
from ..utils.in_process import config_of, from_config
from .handlers.registry import get_handler
from .inline import Proxy, call_kwargs, swapped
from .constant_call import ConstantCall
from .rebuilt import NotCopyable, rebuild

__all__ = ["functional_view", "is_plain_functional", "composite_reason", "inlined_layers",
           "graph_of", "view_tensor"]

_MAX_PASSES = 8


def _functional_cls():
    from keras.src.models.functional import Functional
    return Functional


def _is_graph_model(op) -> bool:
    """A model with a functional graph (Functional, subclass or Sequential)."""
    return isinstance(op, keras.Model) and (
        isinstance(op, keras.Sequential) or hasattr(op, "_nodes_by_depth"))


def graph_of(model):
    """The functional graph behind a Functional, functional subclass or (built)
    Sequential model (the object whose ``_nodes_by_depth`` is walked).

    Raises:
        TypeError: naming the model, when it has no functional graph.
    """
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise TypeError(
                f"Sequential model '{model.name}' has no defined input, so it has "
                "no graph to analyse. Way out: start it with keras.Input(shape) "
                "(or build it), or convert it to a functional model.")
        return fn
    if _is_graph_model(model):
        return model
    raise TypeError(
        f"Model '{getattr(model, 'name', model)}' of class {type(model).__name__} "
        "is not built from a functional graph: a model whose call() is plain "
        "Python has no inspectable graph. Way out: build it functionally "
        "(keras.Model(inputs, outputs), or a subclass that calls "
        "super().__init__(inputs, outputs)), or a Sequential model with an Input.")


def _sublayers(layer):
    return [x for x in layer._flatten_layers(include_self=False, recursive=False)]


def _own_weights(layer):
    """Weights created by ``layer`` itself, not by one of its sub-layers."""
    inner = {id(w) for sub in _sublayers(layer) for w in sub.weights}
    return [w for w in layer.weights if id(w) not in inner]


# layers whose call failed on symbolic tensors: kept as opaque nodes
_UNTRACEABLE = weakref.WeakSet()


def composite_reason(layer) -> Optional[str]:
    """Why ``layer`` cannot be inlined as a composite, or None when it can.

    A layer is a composite when it has no handler, is not a model, and owns
    sub-layers; it can be inlined when every weight it uses belongs to a
    sub-layer (its ``call`` then only composes layers and ops). A ``Lambda``
    is inlined like a composite: its function runs on the symbolic tensors,
    so the ``keras.ops`` it composes become nodes the graph follows.
    """
    if layer in _UNTRACEABLE:
        return "its call cannot be traced on symbolic tensors"
    if isinstance(layer, keras.layers.Lambda):
        return None
    if not _sublayers(layer):
        if not layer.weights and not type(layer).__module__.startswith("keras."):
            return None   # issue 28: a weightless user layer; its call composes keras.ops
        return "it has no sub-layers to inline"
    own = _own_weights(layer)
    if own:
        return (f"it owns weights of its own ({own[0].path!r}) that its call uses "
                "directly, so it cannot be inlined")
    return None


def _is_composite(op) -> bool:
    return (isinstance(op, keras.layers.Layer) and not isinstance(op, keras.Model)
            and not isinstance(op, keras.layers.InputLayer)
            and get_handler(op) is None and composite_reason(op) is None)


def _node_ops(fn):
    for depth in fn._nodes_by_depth:
        for node in fn._nodes_by_depth[depth]:
            yield node, node.operation


def is_plain_functional(model) -> bool:
    """True when the graph and surgeon can use ``model`` as it is."""
    if isinstance(model, keras.Model) and not _is_graph_model(model):
        check_subclassed(model)       # traced (issue 28), or one line
        return False
    fn = graph_of(model)
    if isinstance(model, keras.Sequential):
        pass
    elif type(model) is not _functional_cls():
        return False
    for _, op in _node_ops(fn):
        if isinstance(op, keras.layers.InputLayer):
            continue
        if _is_graph_model(op):
            if not is_plain_functional(op):
                return False
        elif _is_composite(op) or _bad_identity(op):
            return False
    return True


def _any_node(fn, pred) -> bool:
    """True when ``pred(op)`` holds for a node of ``fn`` or of a nested model."""
    for _, op in _node_ops(fn):
        if _is_graph_model(op):
            if _any_node(graph_of(op), pred):
                return True
        elif pred(op):
            return True
    return False


def _has_composite(fn) -> bool:
    return _any_node(fn, _is_composite)


def _has_identity(fn) -> bool:
    return _any_node(fn, _bad_identity)


def _bad_identity(op) -> bool:
    if type(op) is not keras.layers.Identity:
        return False
    try:
        op.get_config()
    except NotImplementedError:
        return True
    return False


def _has_non_plain_nested(fn) -> bool:
    for _, op in _node_ops(fn):
        if _is_graph_model(op) and not is_plain_functional(op):
            return True
    return False


def check_subclassed(model):
    """Issue 28: a subclassed model (``call`` written in Python) is traced like a
    composite layer when it is built on one input and owns no weights of its
    own; else TypeError, one line naming its class and why."""
    why = None
    config = model.get_build_config() if model.built else None
    shape = (config or {}).get("input_shape")
    if not model.built or shape is None:
        why = "it has not been built on an input shape (call it once, or build(shape))"
    elif not (isinstance(shape, (list, tuple)) and shape and
              all(d is None or isinstance(d, int) for d in shape)):
        why = f"it takes several inputs ({shape}); only one input can be traced"
    else:
        why = composite_reason(model) if _sublayers(model) else "it has no layers"
    if why:
        raise TypeError(
            f"Model '{model.name}' of class {type(model).__name__} is subclassed (its "
            f"call() is Python) and cannot be traced: {why}. Way out: build it "
            "functionally (keras.Model(inputs, outputs)), or move its own weights into "
            "a layer with a handler (docs/custom_layers.md).")
    return tuple(shape)


class _Refusal(PruningError):
    """A layer the view cannot trace (one line, raised as it is)."""


class _Tracer:
    """Runs a functional graph again on new tensors (copies or reuses layers)."""

    def __init__(self, clone: bool, retrace: bool = False):
        self.clone = clone
        self.retrace = retrace                # nested models traced again (new shapes)
        self.owners: list = []               # composites being inlined (innermost last)
        self.anchors: list = []              # their first symbolic input each
        self.names: set = set()              # layer names taken in the view
        self.copies: Dict[int, object] = {}
        self.inlined: Dict[str, list] = {}   # composite name -> sub-layer names
        self.pairs: list = []                # (user's layer, its copy)
        self.maps: Dict[int, tuple] = {}     # id(model traced) -> (tensor map, new model)

    def _copy(self, op):
        new = self.copies.get(id(op))
        if new is None:
            try:
                config, objects = config_of(op)      # lambdas / partials kept in process
                new = from_config(op.__class__, config, objects)
            except Exception as err:   # by its constructor arguments
                new = rebuild(op, err)
            self._rename(new)
            self.copies[id(op)] = new
        return new

    def _rename(self, new):
        """Copies of layers inside inlined composites get unique names."""
        if not self.owners:
            return
        base, i = new.name, 1
        while new.name in self.names:
            new.name = f"{self.owners[-1]}_{base}" + (f"_{i}" if i > 1 else "")
            i += 1
        self.names.add(new.name)
        for owner in self.owners:
            self.inlined.setdefault(owner, []).append(new.name)

    def _inline(self, op, args, kwargs):
        """Issue 28: run composite ``op``'s call with its sub-layers standing
        in (copies called as nodes, composites inlined in turn); ``op`` is
        neither copied nor called."""
        def run(sub, a, k):
            if sub.weights and not any(isinstance(t, keras.KerasTensor)
                                       for t in keras.tree.flatten((a, k))):
                return self._constant_call(op, sub, a, k)
            if _is_graph_model(sub):
                return self._nested(sub)(*a, **k)
            if _is_composite(sub):
                return self._inline(sub, a, k)
            return self._call(sub, a, k)[1]
        self.owners.append(op.name)
        self.anchors.append(next((t for t in keras.tree.flatten((args, kwargs))
                                  if isinstance(t, keras.KerasTensor)), None))
        self.inlined.setdefault(op.name, [])
        failure = None
        try:
            with swapped(op, lambda sub: Proxy(sub, run)):
                return op.call(*args, **call_kwargs(op, kwargs))
        except (_Refusal, NotCopyable):
            raise
        except Exception as err:   # noqa: BLE001 - kept whole below, or one line
            failure = err
        finally:
            self.owners.pop()
            self.anchors.pop()
        return self._opaque(op, args, kwargs, failure)

    def _opaque(self, op, args, kwargs, err):
        """A composite / Lambda whose call cannot run on symbolic tensors stays
        one node (a copy): frozen with ``unknown="freeze"``, else refused."""
        why = (f"Composite layer '{op.name}' ({type(op).__name__}) cannot be traced on "
               f"symbolic tensors ({type(err).__name__}: {str(err).strip()[:160]}): its "
               "call needs sizes known only when it runs. Way out: register a handler "
               "for it (docs/custom_layers.md).")
        if isinstance(op, keras.Model):
            raise _Refusal(why)
        _UNTRACEABLE.add(op)
        try:
            new, outs = self._call(op, args, kwargs)
        except Exception:   # noqa: BLE001 - not even callable as one node
            raise _Refusal(why) from None
        _UNTRACEABLE.add(new)
        return outs

    def _constant_call(self, op, sub, args, kwargs):
        """``sub`` called on constants inside composite ``op`` (positions from
        ``ops.arange``): a ``ConstantCall`` node holding a copy of ``sub``."""
        anchor = self.anchors[-1]
        if kwargs or anchor is None:
            raise _Refusal(
                f"Layer '{sub.name}' inside '{op.name}' ({type(op).__name__}) is called "
                "on constants in a way that cannot be traced. Way out: register a "
                f"handler for {type(op).__name__} (docs/custom_layers.md).")
        copy = self._copy(sub)
        node = self.copies.get(("constant", id(sub)))
        if node is None:
            node = ConstantCall(copy, [keras.ops.convert_to_numpy(x) for x in args],
                                name=copy.name)
            self.copies[("constant", id(sub))] = node
        first = not copy.built
        out = node(anchor)
        if first:
            self.pairs.append((sub, copy))
            _set_copied(sub, copy)
        return out

    def _plain_identity(self, op):
        """keras-hub builds Identity(dtype=<DTypePolicy>), whose get_config()
        raises: use an equivalent Identity that serialises."""
        if not _bad_identity(op):
            return op
        new = self.copies.get(("identity", id(op)))
        if new is None:
            new = keras.layers.Identity(name=op.name, dtype=op.dtype_policy.name)
            self.copies[("identity", id(op))] = new
        return new

    def _call(self, op, args, kwargs):
        op = self._plain_identity(op)
        if isinstance(op, keras.layers.Layer) and self.clone:
            new = self._copy(op)
            first = not new.built
            if first and self.owners and op.built:
                _build_like(op, new)     # inside a composite: the shapes it was built at
            outs = new(*args, **kwargs)
            if first:
                self.pairs.append((op, new))
                if op.weights:
                    _set_copied(op, new)
            return new, outs
        return op, op(*args, **kwargs)

    def _nested(self, op):
        sub = self.copies.get(id(op))
        if sub is None:
            sub = self.copies[id(op)] = self.model(op)
        return sub

    def _unique_names(self, fn):
        """Rename sub-layers of composites that would clash once inlined."""
        seen = set()
        composites = []
        for _, op in _node_ops(fn):
            if _is_composite(op) and not self.clone:
                composites.append(op)
            else:
                seen.add(op.name)
        for op in composites:
            for sub in op._flatten_layers(include_self=False, recursive=True):
                if sub.name in seen:
                    sub.name = f"{op.name}_{sub.name}"
                seen.add(sub.name)

    def _subclassed(self, model):
        """A subclassed model's call inlined on an Input of its built shape."""
        inp = keras.Input(batch_shape=check_subclassed(model), name=f"{model.name}_input")
        self.names.add(inp.name)
        outs = self._inline(model, (inp,), {})
        return keras.Model(inp, outs, name=model.name)

    def model(self, model):
        """A plain Functional equal to ``model``, on fresh ``keras.Input``s."""
        if not _is_graph_model(model):
            return self._subclassed(model)
        fn = graph_of(model)
        self._unique_names(fn)
        self.names.update(op.name for _, op in _node_ops(fn))
        old_inputs = keras.tree.flatten(fn.inputs)
        inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype,
                              name=t._keras_history[0].name) for t in old_inputs]
        tmap = {id(t): n for t, n in zip(old_inputs, inputs)}
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                op = node.operation
                if isinstance(op, keras.layers.InputLayer):
                    continue
                args, kwargs = node.arguments.fill_in(tmap)
                if _is_graph_model(op):
                    if is_plain_functional(op) and not self.clone and not self.retrace:
                        outs = op(*args, **kwargs)
                    else:
                        outs = self._nested(op)(*args, **kwargs)
                elif _is_composite(op) and self.clone:
                    outs = self._inline(op, args, kwargs)
                elif _is_composite(op):
                    self.inlined[op.name] = [
                        x.name for x in op._flatten_layers(include_self=False,
                                                           recursive=True)]
                    outs = op.call(*args, **kwargs)
                else:
                    _, outs = self._call(op, args, kwargs)
                flat = keras.tree.flatten(outs)
                if len(flat) != len(node.outputs):
                    raise PruningError(
                        f"Layer '{op.name}' returned {len(flat)} tensors when traced "
                        f"again, but {len(node.outputs)} in the model; it cannot be "
                        "analysed (its call depends on more than its inputs).")
                for t, n in zip(node.outputs, flat):
                    tmap[id(t)] = n
        outputs = keras.tree.map_structure(lambda t: tmap[id(t)], fn.outputs)
        new = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs,
                          name=model.name)
        self.maps[id(model)] = (tmap, new)
        return new


def _dynamic_reshapes(fn):
    """Issue 28: an inlined ``call`` that reshapes by ``ops.shape(x)`` traced
    ``None`` (the batch size) into the new shape. When the first entry is
    that ``None`` and the input's other sizes are known, the first entry is
    the batch: it becomes ``-1`` (a ``-1`` elsewhere is then computed); the
    op's config follows."""
    from keras.src.ops.numpy import Reshape
    fixed = 0
    for node, op in _node_ops(fn):
        if _is_graph_model(op):
            fixed += _dynamic_reshapes(graph_of(op))
            continue
        shape = getattr(op, "newshape", None) if isinstance(op, Reshape) else None
        if not isinstance(shape, (list, tuple)) or not shape or shape[0] is not None:
            continue
        new = _batch_first_shape(tuple(node.arguments.keras_tensors[0].shape), tuple(shape))
        if new is None:
            continue
        op.newshape = new
        auto = getattr(op, "_auto_config", None)
        if auto is not None and "newshape" in auto.config:
            auto.config["newshape"] = new
        fixed += 1
    return fixed


def _batch_first_shape(in_shape, shape):
    """``shape`` with its leading ``None`` as ``-1`` and any other ``-1``
    resolved from ``in_shape`` (batch first, other sizes known), or None."""
    rest = list(shape[1:])
    if any(d is None for d in rest) or any(d is None for d in in_shape[1:]) or \
            rest.count(-1) > 1:
        return None
    if -1 in rest:
        known = math.prod(d for d in rest if d != -1)
        total = math.prod(in_shape[1:])
        if not known or total % known:
            return None
        rest[rest.index(-1)] = total // known
    return (-1,) + tuple(rest)


def _build_like(op, new):
    """Build ``new`` at the shapes ``op`` was built at (a composite may build its
    sub-layers at shapes its symbolic call no longer knows)."""
    try:
        config = op.get_build_config()
        if config:
            new.build_from_config(config)
    except Exception:   # noqa: BLE001 - then it builds when called, as usual
        pass


def _set_copied(op, new):
    """The copy gets the original's weights (same shapes, else one line)."""
    try:
        new.set_weights(op.get_weights())
    except ValueError as err:
        raise PruningError(
            f"Layer '{op.name}' ({type(op).__name__}) cannot be copied: a copy built "
            f"from its config has other weights ({str(err).strip()[:120]}). Way out: "
            "give the layer a get_config() that holds every constructor argument.") from None



def _probe_inputs(model, seed=0):
    rng = np.random.default_rng(seed)
    xs = []
    for t in keras.tree.flatten(model.inputs):
        if "float" not in str(t.dtype):
            return None
        shape = [2] + [32 if d is None else int(d) for d in t.shape[1:]]
        xs.append(rng.standard_normal(shape).astype("float32"))
    return xs


def _check_same(model, view):
    xs = _probe_inputs(view if not _is_graph_model(model) else model)
    if xs is None:
        return
    arg = xs if len(xs) > 1 else xs[0]
    try:
        a = keras.tree.flatten(model(arg, training=False))
    except Exception:   # a fixed-size input we guessed wrong: nothing to compare
        return
    try:
        b = keras.tree.flatten(view(arg, training=False))
    except Exception as err:   # noqa: BLE001 - one line naming the model
        raise PruningError(
            f"Model '{model.name}': its traced functional view fails when run "
            f"({type(err).__name__}: {str(err).strip()[:160]}): a composite layer's call "
            "needs sizes known only when it runs. Way out: register a handler for that "
            "layer (docs/custom_layers.md).") from None
    for x, y in zip(a, b):
        x = keras.ops.convert_to_numpy(x)
        y = keras.ops.convert_to_numpy(y)
        scale = max(1.0, float(np.max(np.abs(x))))
        if x.shape != y.shape or float(np.max(np.abs(x - y))) > 1e-4 * scale:
            raise PruningError(
                f"Internal error: the functional view of model '{model.name}' does "
                "not compute the same outputs as the model (a composite layer's "
                "call depends on more than its inputs?). Way out: register a "
                "handler for its composite layers (docs/custom_layers.md).")


def functional_view(model, check: bool = True):
    """A plain functional ``keras.Model`` computing what ``model`` computes.

    Args:
        model: a functional / Sequential / functional-subclass model
            (keras-hub ``Backbone``, ``ImageClassifier`` ...).
        check: compare a traced view against ``model`` on a random batch.

    Returns:
        ``model`` itself when it is already plain; a zero-copy view over its
        graph for a functional subclass without composite layers; else a
        traced copy (the layers are copies with the same weights; composite
        layers are inlined). The user's model and layers are never modified.
        A traced view is built once per model and reused, its weights copied
        again from the model on every call (so training in between is seen).
    """
    if isinstance(model, keras.Model) and not _is_graph_model(model):
        check_subclassed(model)          # issue 28: traced below
    else:
        fn = graph_of(model)
        if is_plain_functional(model):
            return model
        if not _has_composite(fn) and not _has_non_plain_nested(fn):
            return keras.Model(fn.inputs, fn.outputs, name=model.name)
    cached = _VIEWS.get(model)
    if cached is not None:        # same graph: bring the copies' weights up to date
        view, pairs = cached
        for old, new in pairs:
            if old.weights:
                new.set_weights(old.get_weights())
            new.trainable = old.trainable
        return view
    first = _Tracer(clone=True)
    view = first.model(model)
    inlined: Dict[str, list] = {k: list(v) for k, v in first.inlined.items()}
    maps = [first.maps]
    for _ in range(_MAX_PASSES):
        reshaped = _dynamic_reshapes(view)
        if not reshaped and not _has_composite(view) and not _has_identity(view):
            break
        tracer = _Tracer(clone=False, retrace=reshaped > 0)
        view = tracer.model(view)
        maps.append(tracer.maps)
        for name, subs in tracer.inlined.items():
            inlined.setdefault(name, []).extend(subs)
    else:
        raise PruningError(
            f"Model '{model.name}': composite layers nest deeper than "
            f"{_MAX_PASSES} levels; register handlers for them instead.")
    if check:
        _check_same(model, view)
    _INLINED[view] = inlined
    _TRACES[view] = maps
    _VIEWS[model] = (view, first.pairs)
    return view


_INLINED = weakref.WeakKeyDictionary()
_VIEWS = weakref.WeakKeyDictionary()      # user's model -> (traced view, copies)
_TRACES = weakref.WeakKeyDictionary()     # traced view -> [per pass {id(model): (map, new)}]


def view_tensor(view, model, tensor):
    """Where ``tensor`` of ``model`` lives in ``view``.

    Args:
        view: what ``functional_view`` returned for a model.
        model: that model, or a model nested in it (a keras-hub task's backbone).
        tensor: a symbolic tensor of ``model``'s graph (e.g. one of a keras-hub
            backbone's ``pyramid_outputs``).

    Returns:
        ``(tensor, holder)``: the view's tensor computing the same values and
        the model of the view whose graph holds it (``view``, or the plain
        model that replaced ``model`` when it is nested). A view that shares
        ``model``'s graph returns ``(tensor, model)``.

    Raises:
        KeyError: ``tensor`` is not computed by the view (it does not lead to
            any output of the model).
    """
    holder = model
    for maps in _TRACES.get(view, ()):
        entry = maps.get(id(holder))
        if entry is not None:
            tmap, holder = entry
            tensor = tmap[id(tensor)]
    return tensor, holder


def inlined_layers(view) -> Dict[str, list]:
    """``{composite layer name: names of the layers it was inlined into}``."""
    return dict(_INLINED.get(view, {}))
