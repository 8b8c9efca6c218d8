"""Inline the functional models nested in a functional model (a copy, same function).

Transfer-learning models are usually built as
``keras.Model(x, head(backbone(x)))``: the backbone is one layer of the outer
model and its BatchNorms are not top-level layers. ``flatten_nested(model)``
returns a copy in which every nested functional model (at any depth) is
replaced by its own layers, wired to the tensors that fed it, with the same
layer names and weights, so tools that edit the top-level graph
(`insert_se_gates`) see every layer. A nested model that is frozen
(``trainable=False``) leaves its layers frozen.

Refused (``ValueError``, one line): a nested model that is called more than
once (its layers would be shared), a nested ``Sequential``, and layer names
that the nested model shares with the outer one.

Example:

```python
import keras
from remotetrimmer_tf.models.flatten import flatten_nested

base = keras.applications.MobileNetV2(include_top=False, weights=None,
                                      input_shape=(64, 64, 3))
x = keras.Input((64, 64, 3))
model = keras.Model(x, keras.layers.Dense(4)(
    keras.layers.GlobalAveragePooling2D()(base(x))))
flat = flatten_nested(model)     # Conv1, bn_Conv1, ... are top-level layers
```
"""
import copy

import keras

_KT = "__keras_tensor__"


def _nested_models(model):
    return [l for l in model.layers if isinstance(l, keras.Model)]


def _refs(spec):
    """``[name, node, tensor]`` triples of an input_layers / output_layers spec."""
    if isinstance(spec, (list, tuple)) and len(spec) == 3 and \
            isinstance(spec[0], str):
        return [list(spec)]
    if isinstance(spec, dict):
        return [r for v in spec.values() for r in _refs(v)]
    return [r for v in spec for r in _refs(v)]


def _outer_args(entry):
    """The keras-tensor dicts a nested model's (single) node was called with."""
    found = []

    def walk(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == _KT:
                found.append(obj)
                return
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)
    walk(entry["inbound_nodes"][0]["args"])
    return found


def _rewire(obj, mapping):
    """Copy of ``obj`` with keras-tensor histories ``(name, node, tensor)``
    in ``mapping`` replaced."""
    if isinstance(obj, dict):
        if obj.get("class_name") == _KT:
            hist = tuple(obj["config"]["keras_history"])
            if hist in mapping:
                obj = copy.deepcopy(obj)
                obj["config"]["keras_history"] = list(mapping[hist])
            return obj
        return {k: _rewire(v, mapping) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_rewire(v, mapping) for v in obj)
    return obj


def _rewire_spec(spec, mapping):
    if isinstance(spec, (list, tuple)) and len(spec) == 3 and \
            isinstance(spec[0], str) and isinstance(spec[1], int):
        return list(mapping.get(tuple(spec), spec))
    if isinstance(spec, dict):
        return {k: _rewire_spec(v, mapping) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return type(spec)(_rewire_spec(v, mapping) for v in spec)
    return spec


def _inline_once(config, model):
    """Inlines the first nested functional model of ``config``; False if none."""
    names = [e.get("name") or e["config"]["name"] for e in config["layers"]]
    for pos, entry in enumerate(config["layers"]):
        inner = entry.get("config", {})
        if "layers" not in inner or "output_layers" not in inner:
            if entry.get("class_name") == "Sequential":
                raise ValueError(
                    f"model {model.name!r} nests the Sequential model "
                    f"{names[pos]!r}; rebuild it functionally "
                    "(keras.Model(inputs, outputs)) to flatten it")
            continue
        name = names[pos]
        if len(entry.get("inbound_nodes") or []) != 1:
            raise ValueError(
                f"model {model.name!r} calls its nested model {name!r} "
                f"{len(entry.get('inbound_nodes') or [])} times; its layers "
                "would be shared, so it cannot be flattened")
        in_refs = _refs(inner["input_layers"])
        out_refs = _refs(inner["output_layers"])
        args = _outer_args(entry)
        if len(args) != len(in_refs):
            raise ValueError(
                f"nested model {name!r} of {model.name!r} takes "
                f"{len(in_refs)} inputs but is called with {len(args)} tensors; "
                "it cannot be flattened")
        input_names = {r[0] for r in in_refs}
        body = [e for e in inner["layers"]
                if (e.get("name") or e["config"]["name"]) not in input_names]
        taken = set(names) - {name}
        clash = sorted(taken & {e.get("name") or e["config"]["name"] for e in body})
        if clash:
            raise ValueError(
                f"nested model {name!r} of {model.name!r} has layers named "
                f"like layers of the outer model ({clash[:3]}); rename them "
                "to flatten it")
        to_outer = {tuple(r): tuple(a["config"]["keras_history"])
                    for r, a in zip(in_refs, args)}
        frozen = not inner.get("trainable", True) or not entry["config"].get(
            "trainable", True)
        new_body = []
        for e in body:
            e = copy.deepcopy(e)
            e["inbound_nodes"] = _rewire(e.get("inbound_nodes", []), to_outer)
            if frozen:
                e["config"]["trainable"] = False
            new_body.append(e)
        from_nested = {(name, 0, i): tuple(r) for i, r in enumerate(out_refs)}
        rest = [dict(e, inbound_nodes=_rewire(e.get("inbound_nodes", []),
                                              from_nested))
                for e in config["layers"][pos + 1:]]
        config["layers"] = config["layers"][:pos] + new_body + rest
        config["output_layers"] = _rewire_spec(config["output_layers"],
                                               from_nested)
        return True
    return False


def _weights_source(model):
    """``{layer name: layer}`` over the model and its nested models."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model) and not isinstance(layer, keras.Sequential):
            out.update(_weights_source(layer))
        out.setdefault(layer.name, layer)
    return out


def flatten_nested(model):
    """``model`` itself when nothing is nested, else a flat copy (see module doc).

    Raises:
        ValueError: a nesting that cannot be inlined (one line).
    """
    if not _nested_models(model):
        return model
    from remotetrimmer_tf.utils.keras_models import custom_objects
    config = copy.deepcopy(model.get_config())
    for _ in range(64):
        if not _inline_once(config, model):
            break
    objects = custom_objects(model)   # nested models included
    flat = keras.Model.from_config(config, custom_objects=objects)
    source = _weights_source(model)
    for layer in flat.layers:
        src = source.get(layer.name)
        if src is not None and layer.weights:
            layer.set_weights(src.get_weights())
    return flat
