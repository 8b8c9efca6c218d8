"""Give a pruned keras-hub model its keras-hub class back.

The surgeon rebuilds the plain functional model the graph analysed
(``functional_view``); for a keras-hub input this module turns the result
back into an object of the user's class, so presets keep working:

- a ``Backbone`` (``ResNetBackbone``...) -> ``PrunedResNetBackbone``, a
  ``ResNetBackbone`` whose config is its thinner graph
  (:mod:`remotetrimmer_tf.models.pruned_backbone`), ``pyramid_outputs`` and
  ``data_format`` / ``image_shape`` carried over;
- a task (``ResNetImageClassifier``...) -> the task's pruned class built by
  its own constructor around the thin backbone, with the task's config
  (``num_classes``, ``pooling``...), its preprocessor carried over and the
  head layers' (sliced) weights copied.

The result is run once on a random batch and must compute what the plain
pruned model computes. A model that is not a keras-hub ``Backbone`` / task
comes back unchanged, and keras-hub is never imported for it.

Example:
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> keras_hub_kind(m) is None and as_source_class(m, m, m) is m
    True
"""

from __future__ import annotations

import sys
import warnings

import keras
import numpy as np

from remotetrimmer_tf.graph.functional_view import view_tensor
from remotetrimmer_tf.models.pruned_backbone import CARRIED_ATTRIBUTES
from remotetrimmer_tf.models.pruned_classes import pruned_class
from remotetrimmer_tf.models.pruned_task import backbone_slot, input_names
from remotetrimmer_tf.utils.keras_models import custom_objects

__all__ = ["as_source_class", "keras_hub_kind", "RewrapError"]


class RewrapError(ValueError):
    """A pruned keras-hub task cannot be rebuilt as its class (one line)."""


def keras_hub_kind(model):
    """``"backbone"``, ``"task"`` or ``None`` (keras-hub is not imported here)."""
    hub = sys.modules.get("keras_hub")
    if hub is None:
        return None
    if isinstance(model, hub.models.Backbone):
        return "backbone"
    if isinstance(model, hub.models.Task) and isinstance(model.backbone, hub.models.Backbone):
        return "task"
    return None


def _probe(model, seed=0):
    """A random float batch for ``model``'s inputs (flat list), or None."""
    rng = np.random.default_rng(seed)
    xs = []
    for t in keras.tree.flatten(model.inputs):
        if "float" not in str(t.dtype):
            return None
        shape = [2] + [64 if d is None else int(d) for d in t.shape[1:]]
        xs.append(rng.standard_normal(shape).astype("float32"))
    return xs


def _run(model, xs):
    out = model(keras.tree.pack_sequence_as(model.input, xs), training=False)
    return [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(out)]


def _check_same(plain, wrapped):
    """``wrapped`` computes what ``plain`` computes (run once on a batch)."""
    xs = _probe(plain)
    if xs is None:
        return
    a, b = _run(plain, xs), _run(wrapped, xs)
    if len(a) != len(b):
        raise RuntimeError(f"it has {len(b)} outputs instead of {len(a)}")
    for u, v in zip(a, b):
        scale = max(1.0, float(np.max(np.abs(u))))
        if u.shape != v.shape or float(np.max(np.abs(u - v))) > 1e-5 * scale:
            raise RuntimeError("it does not compute what the pruned graph computes")


def _one_ref(refs):
    return isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str)


def _structured_like(functional, source):
    """``functional`` with inputs and outputs structured as ``source``'s (one
    tensor or a list of one): a view holds lists, keras-hub one tensor."""
    for key, struct in (("input_layers", source.input), ("output_layers", source.output)):
        refs = functional[key]
        single = keras.backend.is_keras_tensor(struct)
        if single and isinstance(refs, list) and len(refs) == 1 and _one_ref(refs[0]):
            functional[key] = refs[0]
        elif not single and _one_ref(refs):
            functional[key] = [refs]
    return functional


def _copy_weights(src, dst, skip=()):
    for layer in src.layers:
        if layer.weights and layer.name not in skip:
            dst.get_layer(layer.name).set_weights(layer.get_weights())


def _pyramid_refs(source, view, holder):
    """``{key: [layer, node, tensor]}`` of ``source.pyramid_outputs`` in ``holder``."""
    pyramid = dict(getattr(source, "pyramid_outputs", None) or {})
    if not pyramid:
        return {}
    found = {}
    for key, tensor in pyramid.items():
        try:
            t, where = view_tensor(view, source, tensor)
        except KeyError:
            raise RuntimeError(f"its pyramid output {key!r} leads to no output of "
                               "the backbone") from None
        if where is not holder:
            raise RuntimeError(f"its pyramid output {key!r} is not in its graph")
        found[key] = t
    helper = keras.Model(holder.input, {"o": holder.output, "p": found})
    return helper.get_config()["output_layers"]["p"]


def _holder(view, backbone):
    """The model of ``view`` that computes ``backbone`` (itself, its traced
    copy, or the plain model nested in a task's view)."""
    return view_tensor(view, backbone, keras.tree.flatten(backbone.outputs)[0])[1]


def _thin_backbone(source, view, plain):
    """The ``Pruned*`` backbone equal to ``plain`` (``source``, pruned)."""
    holder = _holder(view, source)
    attributes = {k: getattr(source, k) for k in CARRIED_ATTRIBUTES
                  if getattr(source, k, None) is not None}
    config = {
        "name": source.name, "trainable": source.trainable,
        "dtype": keras.dtype_policies.serialize(source.dtype_policy),
        "functional": _structured_like(plain.get_config(), source),
        "pyramid_outputs": _pyramid_refs(source, view, holder),
        "attributes": attributes,
        "source_class": getattr(source, "source_class", None)
        or keras.saving.get_registered_name(type(source)),
    }
    with keras.saving.custom_object_scope(custom_objects(plain)):
        thin = pruned_class(type(source)).from_config(config)
    _copy_weights(plain, thin)
    return thin


def _carry_preprocessor(pre):
    """A copy of the task's preprocessor, as its pruned class where one exists
    (so ``ImageClassifierPreprocessor.from_preset(dir)`` finds it); the
    preprocessor itself when its config does not rebuild it."""
    if pre is None:
        return None
    cls = pruned_class(type(pre)) or type(pre)
    try:
        return cls.from_config(pre.get_config())
    except Exception:       # e.g. a tokenizer whose vocabulary is an asset
        return pre


def _plain_values(config):
    """The JSON-plain entries of a task config (``num_classes``, ``pooling``...)."""
    skip = ("backbone", "preprocessor", "name", "trainable", "dtype")
    return {k: v for k, v in config.items() if k not in skip
            and isinstance(v, (str, int, float, bool, type(None), list, tuple))}


def _task_from_config(cls, config, plain, name):
    with keras.saving.custom_object_scope(custom_objects(plain)):
        task = cls.from_config(config)
    _copy_weights(plain, task, skip=(name,))
    return task


def _thin_task(source, view, plain):
    """The task's class around the thin backbone: by its own constructor when
    its config still describes the head, else from the pruned graph."""
    bb = source.backbone
    name = _holder(view, bb).name
    backbone = _thin_backbone(bb, view, plain.get_layer(name))
    config = source.get_config()
    cls = pruned_class(type(source)) or type(source)
    pre = _carry_preprocessor(source.preprocessor)
    try:
        return _task_from_config(cls, {**config, "backbone": backbone,
                                       "preprocessor": pre}, plain, name)
    except Exception:   # the head is narrower than its config says, or the
        if cls is type(source):   # constructor reads a width off the backbone
            raise
    graph = backbone_slot(plain.get_config(), name, input_names(backbone))
    return _task_from_config(cls, {"backbone": backbone, "preprocessor": pre,
                                   "name": source.name, "graph": graph,
                                   "attributes": _plain_values(config)}, plain, name)


def as_source_class(source, view, plain):
    """``plain`` (the pruned ``view`` of ``source``) as ``source``'s keras-hub class.

    Args:
        source: the model the user pruned.
        view: the plain functional model the graph analysed (``graph.model``).
        plain: the pruned plain functional model the surgeon built from ``view``.

    Returns:
        For a keras-hub ``Backbone``: its ``Pruned*`` class; for a task: its
        task class (pruned subclass) around the thin backbone, preprocessor
        carried over; otherwise ``plain`` itself. When the class cannot be
        rebuilt, ``plain`` with a warning saying why.

    Raises:
        RewrapError: a task with a preprocessor cannot be rebuilt (returning
            ``plain`` would silently drop the preprocessor).
    """
    kind = keras_hub_kind(source)
    if kind is None:
        return plain
    try:
        if kind == "backbone":
            out = _thin_backbone(source, view, plain)
        else:
            out = _thin_task(source, view, plain)
        _check_same(plain, out)
        return out
    except Exception as err:     # the plain model is still right: say why
        why = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}" \
            if str(err).strip() else type(err).__name__
        name = type(source).__name__
        if kind == "task" and source.preprocessor is not None:
            raise RewrapError(
                f"The pruned {name} '{source.name}' cannot be rebuilt as a {name} "
                f"({why}), and a plain model would drop its preprocessor. Way out: "
                f"prune its backbone (Pruner({source.name}.backbone, ...)) and build "
                f"the task around the result.") from None
        warnings.warn(
            f"The pruned {name} '{source.name}' is returned as a plain functional "
            f"keras.Model: it cannot be rebuilt as a {name} ({why}); save it with "
            ".save(path.keras) (save_to_preset needs the keras-hub class).",
            stacklevel=3)
        return plain
