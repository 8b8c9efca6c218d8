"""Give a plain model SqueezeExcite gates, so CAP can prune it.

``insert_se_gates(model)`` returns a copy of a functional model with a
:class:`SqueezeExcite` gate directly after every top-level
BatchNormalization whose channels belong to a prunable channel group
(`DependencyGraph`). The gate sits right after the BN, before any
activation, so `fold_attention` folds its mean attention exactly into that
BN (``γ' = γ·s̄``) whatever the activation is (ReLU6, swish, ...).

Outputs are unchanged at insertion: the gate's excite kernel is zero, so
its output is the constant ``s0 = sigmoid(excite_bias)`` (0.5 by default),
and the BN's ``γ`` and ``β`` are divided by ``s0``; ``BN'(x)·s0 == BN(x)``
up to float rounding. The squeeze kernel is random, so the gates learn as
soon as they are trained (`gate_training` in the pipeline).

A backbone nested as one layer (``keras.Model(x, head(backbone(x)))``, the
usual transfer-learning model) is inlined first (`models.flatten`): the
returned model is flat, with the same layer names, and its nested BatchNorms
get gates too.

Example:

```python
import keras
import remotetrimmer_tf as rt

plain = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3),
                                       classes=4)
gated = rt.insert_se_gates(plain, reduction=16)     # same outputs
# train the gates, then: rt.collect_attention -> rt.fold_attention -> prune
```
"""
import copy

import keras
import numpy as np

from remotetrimmer_tf.models.se import SqueezeExcite
from remotetrimmer_tf.utils.keras_json import KERAS_TENSOR, map_keras_tensors
from remotetrimmer_tf.utils.keras_models import custom_objects

GATE_SUFFIX = "_se"


def gateable_batchnorms(model, graph=None):
    """Top-level BatchNormalization layers whose channels a prunable group owns.

    Returns:
        Layer names in model order. BNs that are shared (called more than
        once), that do not normalise the last axis, that normalise a
        ``(batch, channels)`` tensor (no spatial axes for the gate to
        squeeze; such a BN keeps its plain |γ| score), or that already feed
        a SqueezeExcite are left out.
    """
    from remotetrimmer_tf.graph import DependencyGraph
    graph = graph or DependencyGraph(model)
    owned = set()
    for g in graph.groups:
        if g.prunable:
            owned.update(n for n in g.layers if "/" not in n)
    gated_inputs = {l._inbound_nodes[0].input_tensors[0]._keras_history[0].name
                    for l in model.layers if isinstance(l, SqueezeExcite)
                    and l._inbound_nodes}
    out = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        if layer.name not in owned or layer.name in gated_inputs:
            continue
        if len(layer._inbound_nodes) != 1:
            continue
        axis = layer.axis if isinstance(layer.axis, int) else (
            layer.axis[0] if len(layer.axis) == 1 else None)
        rank = len(layer.output.shape)
        if axis is None or axis % rank != rank - 1:
            continue
        if rank < 3:      # (batch, channels) after pooling: nothing to squeeze
            continue
        out.append(layer.name)
    return out


def _tensor_ref(layer):
    out = layer.output
    return {"class_name": KERAS_TENSOR, "config": {
        "shape": list(out.shape), "dtype": str(out.dtype),
        "keras_history": [layer.name, 0, 0]}}


def _redirect(obj, mapping):
    """Copy of ``obj`` with tensors of layers in ``mapping`` re-pointed."""
    def repoint(t):
        hist = t["config"]["keras_history"]
        if hist[0] not in mapping:
            return t
        t = copy.deepcopy(t)
        t["config"]["keras_history"] = [mapping[hist[0]], 0, 0]
        return t
    return map_keras_tensors(obj, repoint)


def _redirect_outputs(spec, mapping):
    if isinstance(spec, (list, tuple)) and len(spec) == 3 and \
            isinstance(spec[0], str) and isinstance(spec[1], int):
        return [mapping[spec[0]], 0, 0] if spec[0] in mapping else spec
    if isinstance(spec, dict):
        return {k: _redirect_outputs(v, mapping) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return type(spec)(_redirect_outputs(v, mapping) for v in spec)
    return spec


def insert_se_gates(  # long: one rebuild walk over the layers
        model, reduction=16, layers=None, initial_gate=0.5):
    """Copy of ``model`` with an SE gate after each gateable BatchNorm.

    Args:
        model: a functional ``keras.Model`` (not modified).
        reduction: SE bottleneck ratio (hidden = max(1, C // reduction)).
        layers: BN names to gate (default: `gateable_batchnorms`).
        initial_gate: the constant gate value at insertion, in (0, 1); the
            BN is rescaled by its inverse so the outputs do not change.

    Returns:
        A new functional model (nested models inlined); gate
        ``<bn name>_se`` follows BN ``<bn name>``.

    Raises:
        ValueError: not a functional model, a nested model that cannot be
            inlined (`models.flatten.flatten_nested`), a named layer that is not a
            gateable BN, or no BN to gate.
    """
    if not isinstance(model, keras.Model) or isinstance(model, keras.Sequential) \
            or "output_layers" not in model.get_config():
        raise ValueError(
            f"insert_se_gates needs a functional keras.Model, got "
            f"{type(model).__name__}; rebuild it with the functional API")
    if not 0.0 < float(initial_gate) < 1.0:
        raise ValueError(f"initial_gate must be in (0, 1), got {initial_gate}")
    from remotetrimmer_tf.models.flatten import flatten_nested
    model = flatten_nested(model)
    allowed = gateable_batchnorms(model)
    targets = list(allowed if layers is None else layers)
    bad = [n for n in targets if n not in allowed]
    if bad:
        raise ValueError(f"layers {bad} are not gateable BatchNormalization "
                         f"layers of {model.name!r}; gateable: {allowed[:6]}...")
    if not targets:
        raise ValueError(
            f"model {model.name!r} has no BatchNormalization on prunable "
            "channels to put SqueezeExcite gates after; CAP needs BN layers "
            "(use --config.prune.importance=l1 for this model)")
    taken = {l.name for l in model.layers}
    gate_of = {}
    for bn in targets:
        name = bn + GATE_SUFFIX
        while name in taken:
            name += "_"
        taken.add(name)
        gate_of[bn] = name
    b0 = float(np.log(initial_gate / (1.0 - initial_gate)))
    config = copy.deepcopy(model.get_config())
    new_layers = []
    for entry in config["layers"]:
        name = entry.get("name") or entry["config"]["name"]
        entry["inbound_nodes"] = _redirect(entry.get("inbound_nodes", []), gate_of)
        new_layers.append(entry)
        if name in gate_of:
            entry["config"]["scale"] = entry["config"]["center"] = True
            bn_layer = model.get_layer(name)
            gate = SqueezeExcite(
                reduction=int(reduction), name=gate_of[name],
                bias_initializer="zeros", dtype=bn_layer.dtype_policy.name)
            spec = keras.saving.serialize_keras_object(gate)
            spec["name"] = gate_of[name]
            spec["inbound_nodes"] = [{"args": [_tensor_ref(bn_layer)],
                                      "kwargs": {}}]
            spec.pop("build_config", None)
            new_layers.append(spec)
    config["layers"] = new_layers
    config["output_layers"] = _redirect_outputs(config["output_layers"], gate_of)
    objects = custom_objects(model)
    objects["SqueezeExcite"] = SqueezeExcite
    new = keras.Model.from_config(config, custom_objects=objects)
    s0 = float(initial_gate)
    for layer in new.layers:
        if isinstance(layer, SqueezeExcite) and layer.name in gate_of.values():
            w1, b1, w2, b2 = layer.get_weights()
            layer.set_weights([w1, b1, np.zeros_like(w2),
                               np.full_like(b2, b0)])
            continue
        src = model.get_layer(layer.name)
        if layer.name in gate_of:
            gamma = (keras.ops.convert_to_numpy(src.gamma) if src.gamma is not None
                     else np.ones(layer.gamma.shape, layer.gamma.dtype))
            beta = (keras.ops.convert_to_numpy(src.beta) if src.beta is not None
                    else np.zeros(layer.beta.shape, layer.beta.dtype))
            layer.gamma.assign((gamma / s0).astype(layer.gamma.dtype))
            layer.beta.assign((beta / s0).astype(layer.beta.dtype))
            layer.moving_mean.assign(keras.ops.convert_to_numpy(src.moving_mean))
            layer.moving_variance.assign(keras.ops.convert_to_numpy(src.moving_variance))
        else:
            layer.set_weights(src.get_weights())
    return new


def gate_names(model):
    """Names of the SqueezeExcite layers of ``model``."""
    return [l.name for l in model.layers if isinstance(l, SqueezeExcite)]
