"""Surgery: build a new, thinner model with sliced weights.

Decide first (``DependencyGraph`` + ``keep``), rebuild second: the original
model and its layers are never modified; the new model is built once from an
edited ``get_config()`` and its weights are set from sliced numpy arrays.
"""

from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence

import keras

from .errors import PruningError, error_text, first_line
from .graph.dependency_graph import DependencyGraph
from .first_call import check_first_call, needs_first_call
from .utils.in_process import config_of, from_config
from .utils.keras_models import custom_objects

__all__ = ["prune_channels"]


def _weights(layer):
    return layer.get_weights() if getattr(layer, "weights", None) else []


def _entry_name(entry):
    return entry.get("name") or entry.get("config", {}).get("name")


def _is_nested_cfg(entry):
    cfg = entry.get("config")
    return isinstance(cfg, dict) and isinstance(cfg.get("layers"), list)


_ZEROS = {"module": "keras.initializers", "class_name": "Zeros", "config": {},
          "registered_name": None}


def _get_path(model, path):
    obj = model
    for part in path.split("/"):
        obj = obj.get_layer(part)
    return obj


def _settable(layer, key):
    """False for a read-only property (an RNN's ``kernel_initializer``)."""
    attr = getattr(type(layer), key, None)
    return not isinstance(attr, property) or attr.fset is not None


def _drop_build_configs(cfg):
    """Remove every ``build_config`` inside a layer config (a wrapper's inner
    layer records its old input shape)."""
    if isinstance(cfg, dict):
        cfg.pop("build_config", None)
        for v in cfg.values():
            _drop_build_configs(v)
    elif isinstance(cfg, list):
        for v in cfg:
            _drop_build_configs(v)


def _zero_initializers(model, entries, prefix):
    """Swap ``*_initializer`` entries that mirror layer attributes for Zeros."""
    restore = []
    for entry in entries:
        name = _entry_name(entry)
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        if _is_nested_cfg(entry):
            if isinstance(layer, keras.Model):
                restore += _zero_initializers(layer, entry["config"]["layers"],
                                              prefix + name + "/")
            continue
        if not isinstance(layer, keras.layers.Layer) or not layer.weights:
            continue
        cfg = entry["config"]
        for key, value in list(cfg.items()):
            if key.endswith("_initializer") and value is not None \
                    and hasattr(layer, key) and _settable(layer, key):
                restore.append((prefix + name, key, value))
                cfg[key] = dict(_ZEROS)
    return restore


def prune_channels(model, keep: Dict[int, Sequence[int]],
                   graph: Optional[DependencyGraph] = None):
    """Return a new model with only the kept channels of each group.

    Args:
        model: a Keras 3 functional / Sequential-with-Input model, a keras-hub
            ``Backbone`` or task model, or any functional subclass; untouched.
        keep: ``{group index: sorted channel indices to keep}``; groups not
            named keep everything.
        graph: a ``DependencyGraph(model)`` already built (optional; build it
            yourself to pass ``unknown=`` / ``ignore=`` / ``approximate=``).

    Returns:
        A new ``keras.Model`` with the same layer names, dtypes, trainability
        and outputs, thinner where channels were removed. A keras-hub
        ``Backbone`` / task comes back as its own class (a registered
        ``Pruned*`` subclass: ``save_to_preset`` / ``from_preset`` work; see
        ``models.keras_hub_rewrap``). Any other model that is not a plain
        functional one (a functional subclass, one with composite layers)
        comes back as a *plain functional* ``keras.Model`` built from its
        ``functional_view``: composite layers are replaced by their sub-layers
        and ops, nested backbones become nested plain models of the same
        name. It saves to ``.keras`` and reloads with the layers' own
        registrations only.

    Example:
        >>> g = DependencyGraph(model)                         # doctest: +SKIP
        >>> i = next(x.index for x in g.groups if x.prunable)   # doctest: +SKIP
        >>> small = prune_channels(model, {i: [0, 2]}, graph=g) # doctest: +SKIP
    """
    if graph is None:
        graph = DependencyGraph(model)
    elif graph.model is not model and graph.source_model is not model:
        raise ValueError("graph was built for a different model; pass "
                         "DependencyGraph(model) for this model or graph=None.")
    model = graph.model      # the plain functional model the graph analysed
    changed = _changed_layers(graph, graph.channel_mask(keep))
    config, objects = _config(model)
    new_weights = {}
    _rewrite(config["layers"], "", changed, new_weights)
    missing = sorted(set(changed) - set(new_weights))
    if missing:
        raise PruningError(
            f"Internal error: layers {missing[:5]} must change but were not found "
            "in the model config; please report this with the model.")
    # Every weight is overwritten below, so build with cheap zero initializers
    # and put the user's initializers back afterwards (configs stay identical).
    restore = _zero_initializers(model, config["layers"], "")
    new_model = _build(model, config, objects, changed)
    for path, key, value in restore:
        layer = _get_path(new_model, path)
        setattr(layer, key, keras.initializers.get(value))
    _set_all(model, new_model, "", new_weights)
    if needs_first_call(changed):
        check_first_call(model, new_model, graph)
    from .models.keras_hub_rewrap import as_source_class
    return as_source_class(graph.source_model, model, new_model)


def _config(model):
    """The model's config with Python callables kept in process (lambdas,
    partials, Lambda functions: ``utils.in_process``)."""
    try:
        return config_of(model)
    except Exception as err:       # name the layer whose get_config fails
        for layer in model._flatten_layers(include_self=False, recursive=True):
            try:
                config_of(layer)
            except Exception as inner:
                raise PruningError(
                    f"layer '{layer.name}' ({type(layer).__name__}) cannot write its "
                    f"config ({type(inner).__name__}: {first_line(inner, 160)}), so "
                    "the model cannot be rebuilt thinner. Way out: give the layer a "
                    "get_config() that its from_config() accepts.") from None
        raise PruningError(f"model '{model.name}' cannot write its config "
                           f"({type(err).__name__}: {first_line(err, 160)}).") from None


def _build(model, config, objects, changed):
    """``from_config`` of the edited config, errors named and one line."""
    try:
        return from_config(type(model), config, objects, custom_objects(model))
    except Exception as err:
        where = _failing_layer(model, err, changed)
        raise PruningError(
            f"the pruned model '{model.name}' cannot be built{where}: "
            f"{type(err).__name__}: {error_text(err, 200)}. Way out: pass "
            "ignore=[...] for the layers before it, or register a handler for it "
            "(docs/custom_layers.md).") from None


def _failing_layer(model, err, changed):
    """`` at layer 'x' (Cls)`` from a Keras call error, preferring a changed layer."""
    import re
    found = (re.search(r"calling (\w+)\.call\(\)", str(err))
             or re.search(r"<class '(?:[\w]+\.)*(\w+)'>", str(err)))
    if not found:
        return ""
    cls = found.group(1)
    names = [n for n, layer in ((l.name, l) for l in model._flatten_layers(
        include_self=False, recursive=True)) if type(layer).__name__ == cls]
    names = [n for n in names if n in changed or n.split("/")[-1] in changed] or names
    return f" at layer '{names[0]}' ({cls})" if names else f" at a {cls} layer"


def _changed_layers(graph, kept):
    """``{name: (LayerNode, in_masks, out_masks)}`` of the layers ``kept``
    (a channel mask) narrows; refuses to empty any tensor."""
    changed = {}
    for name, node in graph.nodes.items():
        if node.nested:
            continue
        in_masks = [graph.mask_of(m, kept) for m in node.in_maps]
        out_masks = [graph.mask_of(m, kept) for m in node.out_maps]
        for kind, maps, masks in (("input", node.in_maps, in_masks),
                                  ("output", node.out_maps, out_masks)):
            for m, mk in zip(maps, masks):
                if mk.size and not mk.any():
                    gs = sorted(set(graph.group_ids(m).tolist()))
                    raise ValueError(
                        f"keep removes every {kind} channel of layer '{name}' "
                        f"(its channels belong to group(s) {gs}, which it only "
                        "partly covers). Keep at least one of the channels that "
                        "this layer sees (its Member indices >= 0 in those groups).")
        if all(m.all() for m in in_masks) and all(m.all() for m in out_masks):
            continue
        changed[name] = (node, in_masks, out_masks)
    return changed


def _rewrite(entries, prefix, changed, new_weights):
    """Rewrite, in place, the config entries of the changed layers (their
    handler's ``prune``); the sliced weights go to ``new_weights``."""
    any_change = False
    for entry in entries:
        name = prefix + _entry_name(entry)
        if _is_nested_cfg(entry):
            if _rewrite(entry["config"]["layers"], name + "/", changed, new_weights):
                entry.pop("build_config", None)
                any_change = True
            continue
        item = changed.get(name)
        if item is None:
            continue
        node, in_masks, out_masks = item
        cfg = copy.deepcopy(entry["config"])
        cfg, w = node.handler.prune(node.layer, cfg, _weights(node.layer),
                                    in_masks, out_masks)
        _drop_build_configs(cfg)
        entry["config"] = cfg
        entry.pop("build_config", None)
        new_weights[name] = w
        any_change = True
    return any_change


def _set_all(old, new, prefix, new_weights):
    """Weights of every layer of ``new``: sliced where changed, else copied."""
    for layer in getattr(old, "layers", []):
        name = prefix + layer.name
        new_layer = new.get_layer(layer.name)
        if isinstance(layer, keras.Model):
            _set_all(layer, new_layer, name + "/", new_weights)
            continue
        if not layer.weights:
            continue
        w = new_weights.get(name)
        if w is None:
            w = _weights(layer)
        try:
            new_layer.set_weights(w)
        except ValueError as e:
            raise PruningError(
                f"layer '{name}' ({type(layer).__name__}): the sliced weights do not "
                f"fit the rebuilt layer ({first_line(e, 160)}); its handler's prune() "
                "does not match its config. Way out: ignore=[...] its channels, "
                "unknown='freeze', or fix the handler (docs/custom_layers.md).") from None
