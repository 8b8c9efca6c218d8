"""Channel attention statistics and SE → BatchNorm folding (CAP, steps 2 and 3).

``collect_attention`` runs a model with :class:`SqueezeExcite` gates over data
and returns each gate's mean per-channel output ``s̄``. ``fold_attention``
rebuilds the model without the gates, folding ``s̄`` into the BatchNorm that
precedes each gate: ``γ' = γ·s̄``, ``β' = β·s̄``. Because ``s̄ ≥ 0`` and the
layers allowed between the BN and the gate (ReLU, LeakyReLU, linear
activations, inference-time dropout) are positively homogeneous, the folded
model equals the SE model with every gate frozen at its mean.

Both are backend-agnostic (``keras.ops`` and numpy only).
"""
import copy

import keras
import numpy as np

from remotetrimmer_tf.models.se import SqueezeExcite
from remotetrimmer_tf.utils.keras_models import custom_objects

__all__ = ["collect_attention", "fold_attention", "se_gates", "find_gated_batchnorms",
           "iterate_batches"]

_KT = "__keras_tensor__"


# --------------------------------------------------------------------------- data
from remotetrimmer_tf.utils.batches import iterate_batches  # noqa: E402,F401 - the one adapter


# -------------------------------------------------------------- attention stats
def se_gates(model):
    """The model's SqueezeExcite layers (each called once, none nested), in order."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    found = [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(
                isinstance(inner, SqueezeExcite) for inner in layer._flatten_layers()):
            raise ValueError(
                f"SqueezeExcite gates inside the nested model {layer.name!r} are not "
                "supported; build the SE model as one flat functional model.")
    for layer in found:
        if len(layer._inbound_nodes) != 1:
            raise ValueError(
                f"SqueezeExcite {layer.name!r} is called {len(layer._inbound_nodes)} "
                "times in the model; shared gates are not supported.")
    return found


_se_layers = se_gates


def collect_attention(model, data, steps=None, batch_size=64):
    """Mean per-channel output of every SE gate over ``data``.

    Streaming: one probe model returns the inputs of all gates for a batch,
    each gate's ``.gate(x)`` is averaged into a running float64 sum, so memory
    is one batch of features. BatchNorm runs in inference mode.

    Args:
        model: A functional/sequential ``keras.Model`` with top-level
            :class:`SqueezeExcite` layers.
        data: ``tf.data.Dataset``, numpy array(s) ``x`` / ``(x, y)``, or an
            iterable of batches (labels are ignored).
        steps: Use at most this many batches.
        batch_size: Batch size when ``data`` is whole arrays.

    Returns:
        ``{se_layer_name: np.ndarray of shape (C,)}`` (float32), each in (0, 1).

    Example:

    ```python
    attention = collect_attention(model, train_ds, steps=100)
    plain = fold_attention(model, attention)
    ```
    """
    gates = _se_layers(model)
    if not gates:
        raise ValueError(
            f"Model {model.name!r} has no SqueezeExcite layers; there is no "
            "attention to collect (build it with se=True).")
    # The probe returns each gate's input already average-pooled (keepdims),
    # so a compiled predict_on_batch does the heavy part and only (B, 1.., C)
    # tensors reach the gates (their own spatial mean is then the identity).
    pools = {3: keras.layers.GlobalAveragePooling1D,
             4: keras.layers.GlobalAveragePooling2D,
             5: keras.layers.GlobalAveragePooling3D}
    for g in gates:
        if len(g.input.shape) not in pools:
            raise ValueError(f"SE layer {g.name!r}: input rank {len(g.input.shape)} "
                             "is not supported (expected 3, 4 or 5).")
    probe = keras.Model(model.inputs if len(model.inputs) > 1 else model.inputs[0],
                        [pools[len(g.input.shape)](keepdims=True,
                                                   name=f"{g.name}_probe_pool")(g.input)
                         for g in gates],
                        name=f"{model.name}_attention_probe")
    sums = [np.zeros(g.input.shape[-1], np.float64) for g in gates]
    count = 0
    for x in iterate_batches(data, steps=steps, batch_size=batch_size):
        feats = probe.predict_on_batch(x)
        if len(gates) == 1 and not isinstance(feats, (list, tuple)):
            feats = [feats]
        for k, (gate, feat) in enumerate(zip(gates, feats)):
            s = keras.ops.convert_to_numpy(gate.gate(feat))
            sums[k] += s.astype(np.float64).sum(axis=0)
        count += int(x.shape[0])
    if count == 0:
        raise ValueError("data yielded no samples; cannot average attention.")
    return {g.name: (total / count).astype(np.float32) for g, total in zip(gates, sums)}


# ------------------------------------------------------------ config plumbing
def _histories(obj):
    """All keras_history entries ``[layer, node, tensor]`` inside a config object."""
    if isinstance(obj, dict):
        if obj.get("class_name") == _KT:
            return [obj["config"]["keras_history"]]
        return [h for v in obj.values() for h in _histories(v)]
    if isinstance(obj, (list, tuple)):
        return [h for v in obj for h in _histories(v)]
    return []


def _replace_histories(obj, mapping):
    """Copy of ``obj`` with keras tensors from layers in ``mapping`` replaced."""
    if isinstance(obj, dict):
        if obj.get("class_name") == _KT:
            name = obj["config"]["keras_history"][0]
            return copy.deepcopy(mapping[name]) if name in mapping else obj
        return {k: _replace_histories(v, mapping) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_replace_histories(v, mapping) for v in obj)
    return obj


def _output_names(spec):
    """Layer names in a functional config's ``output_layers``."""
    if isinstance(spec, (list, tuple)) and len(spec) == 3 and isinstance(spec[0], str) \
            and isinstance(spec[1], int):
        return [spec[0]]
    if isinstance(spec, dict):
        return [n for v in spec.values() for n in _output_names(v)]
    if isinstance(spec, (list, tuple)):
        return [n for v in spec for n in _output_names(v)]
    return []


def _topology(model):
    """``(config, inputs, consumers)``: per layer, the layer names it reads and
    the (multi)list of layer names (or ``"<output>"``) that read it."""
    config = model.get_config()
    inputs, consumers = {}, {}
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        for prev, name in zip([None] + names, names):
            inputs[name] = [prev] if prev else []
            consumers.setdefault(name, [])
            if prev:
                consumers[prev].append(name)
        if names:
            consumers[names[-1]].append("<output>")
        return config, inputs, consumers
    if "layers" not in config or "output_layers" not in config:
        raise TypeError(
            f"Model {model.name!r} ({type(model).__name__}) is not a functional or "
            "Sequential model; rebuild it functionally to fold attention.")
    for entry in config["layers"]:
        name = entry.get("name") or entry["config"]["name"]
        srcs = [h[0] for h in _histories(entry.get("inbound_nodes", []))]
        inputs[name] = srcs
        consumers.setdefault(name, [])
        for s in srcs:
            consumers.setdefault(s, []).append(name)
    for name in _output_names(config["output_layers"]):
        consumers.setdefault(name, []).append("<output>")
    return config, inputs, consumers


def _commutes_with_scale(layer):
    """True if ``f(a·x) == a·f(x)`` for every ``a ≥ 0`` (inference mode)."""
    if isinstance(layer, keras.layers.ReLU):
        return layer.max_value is None and float(layer.threshold) == 0.0
    if isinstance(layer, keras.layers.LeakyReLU):
        return True
    if isinstance(layer, keras.layers.Activation):
        name = keras.activations.serialize(layer.activation)
        name = name if isinstance(name, str) else str(name.get("config", name))
        return name in ("relu", "linear", "leaky_relu")
    return isinstance(layer, (keras.layers.Dropout, keras.layers.SpatialDropout1D,
                              keras.layers.SpatialDropout2D,
                              keras.layers.SpatialDropout3D,
                              keras.layers.GaussianDropout,
                              keras.layers.GaussianNoise, keras.layers.Identity))


def find_gated_batchnorms(model, _topo=None):
    """Map every SE gate to the BatchNormalization its attention folds into.

    Walks back from each gate through layers that commute with a positive
    per-channel scale (ReLU, LeakyReLU, linear activation, dropout); every
    layer on the way, the BN included, must feed only this chain.

    Returns:
        ``{se_layer_name: bn_layer_name}``.

    Raises:
        ValueError: naming the gate, if no such BatchNormalization exists.
    """
    gates = _se_layers(model)
    _, inputs, consumers = _topo or _topology(model)
    result, owner = {}, {}
    for gate in gates:
        chain = []
        srcs = inputs[gate.name]
        while True:
            if len(srcs) != 1:
                raise ValueError(
                    f"Cannot fold SqueezeExcite {gate.name!r}: the layer before it "
                    f"({chain[-1] if chain else gate.name!r}) has {len(srcs)} inputs.")
            src = srcs[0]
            layer = model.get_layer(src)
            if len(consumers.get(src, [])) != 1:
                raise ValueError(
                    f"Cannot fold SqueezeExcite {gate.name!r}: layer {src!r} between "
                    "its BatchNormalization and the gate also feeds "
                    f"{[c for c in consumers[src] if c != (chain[-1] if chain else gate.name)]}; "
                    "folding would change that path.")
            if isinstance(layer, keras.layers.BatchNormalization):
                axis = layer.axis if isinstance(layer.axis, int) else (
                    layer.axis[0] if len(layer.axis) == 1 else None)
                rank = len(layer.input.shape)
                if axis is None or axis % rank != rank - 1:
                    raise ValueError(
                        f"Cannot fold SqueezeExcite {gate.name!r} into {src!r}: the "
                        "BatchNormalization must normalise the last (channel) axis.")
                break
            if not _commutes_with_scale(layer):
                raise ValueError(
                    f"Cannot fold SqueezeExcite {gate.name!r}: layer {src!r} "
                    f"({type(layer).__name__}) lies between it and the preceding "
                    "BatchNormalization and does not commute with a per-channel "
                    "scale (allowed: ReLU without cap/threshold, LeakyReLU, linear "
                    "activation, dropout).")
            chain.append(src)
            srcs = inputs[src]
        if src in owner:
            raise ValueError(
                f"SqueezeExcite {gate.name!r} and {owner[src]!r} both fold into "
                f"BatchNormalization {src!r}.")
        owner[src] = gate.name
        result[gate.name] = src
    return result


# --------------------------------------------------------------------- folding
def _check_attention(gates, attention):
    if not isinstance(attention, dict):
        raise TypeError(
            "attention must be a dict {se_layer_name: array (C,)} as returned by "
            f"collect_attention, got {type(attention).__name__}.")
    names = {g.name for g in gates}
    missing = sorted(names - set(attention))
    extra = sorted(set(attention) - names)
    if missing or extra:
        raise ValueError(
            "attention does not match the model's SqueezeExcite layers: "
            f"missing {missing}, unknown {extra}.")
    checked = {}
    for g in gates:
        s = np.asarray(attention[g.name], dtype=np.float64)
        channels = g.input.shape[-1]
        if s.shape != (channels,):
            raise ValueError(
                f"attention[{g.name!r}] has shape {s.shape}, but the gate has "
                f"{channels} channels: expected ({channels},).")
        if not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError(
                f"attention[{g.name!r}] must be finite and >= 0 (a mean of sigmoid "
                "outputs); folding a negative scale through ReLU is not exact.")
        checked[g.name] = s
    return checked


def fold_attention(model, attention):
    """Remove every SE gate, folding its mean attention into the BN before it.

    ``γ' = γ·s̄`` and ``β' = β·s̄`` for the BatchNormalization feeding each
    gate (moving statistics unchanged); the gate's consumers read the gate's
    input instead. The input model is not modified.

    Args:
        model: Functional or Sequential ``keras.Model`` with SE gates.
        attention: ``{se_layer_name: (C,) array}`` as from
            :func:`collect_attention`, one entry per gate.

    Returns:
        A new ``keras.Model`` without :class:`SqueezeExcite` layers, same
        layer names otherwise. When all samples share one gate value (e.g.
        all inputs identical) it reproduces the SE model exactly.

    Example:

    ```python
    plain = fold_attention(se_model, collect_attention(se_model, data))
    ```
    """
    gates = _se_layers(model)
    if not gates:
        raise ValueError(
            f"Model {model.name!r} has no SqueezeExcite layers: nothing to fold.")
    scales = _check_attention(gates, attention)
    topo = _topology(model)
    gated = find_gated_batchnorms(model, topo)
    bn_scale = {bn: scales[se] for se, bn in gated.items()}
    config = copy.deepcopy(topo[0])
    if isinstance(model, keras.Sequential):
        new = _fold_sequential(model, config, set(scales), bn_scale)
    else:
        new = _fold_functional(model, config, set(scales), bn_scale)
    _copy_folded_weights(model, new, bn_scale)
    return new


def _fold_sequential(model, config, gate_names, bn_scale):
    """The Sequential config without the gates, rebuilt."""
    kept = [e for e in config["layers"]
            if (e.get("config", {}).get("name")) not in gate_names]
    for entry in kept:
        if entry["config"].get("name") in bn_scale:
            entry["config"]["scale"] = entry["config"]["center"] = True
    config["layers"] = kept
    return keras.Sequential.from_config(config, custom_objects=custom_objects(model))


def _gate_feeds(config, gate_names):
    """``{gate name: the keras tensor it reads}``, resolved through chained gates."""
    feed = {}
    for entry in config["layers"]:
        if entry["name"] in gate_names:
            feed[entry["name"]] = entry["inbound_nodes"][0]["args"][0]
    for name in list(feed):
        seen = {name}
        while feed[name]["config"]["keras_history"][0] in gate_names:
            nxt = feed[name]["config"]["keras_history"][0]
            if nxt in seen:
                raise ValueError(f"Cycle of SqueezeExcite layers at {name!r}.")
            seen.add(nxt)
            feed[name] = feed[nxt]
    return feed


def _fold_functional(model, config, gate_names, bn_scale):
    """The functional config with every gate's readers reading its input, rebuilt."""
    feed = _gate_feeds(config, gate_names)
    layers_out = []
    for entry in config["layers"]:
        if entry["name"] in gate_names:
            continue
        entry["inbound_nodes"] = _replace_histories(entry["inbound_nodes"], feed)
        if entry["name"] in bn_scale:
            entry["config"]["scale"] = entry["config"]["center"] = True
        layers_out.append(entry)
    config["layers"] = layers_out

    def _fix_outputs(spec):
        if isinstance(spec, (list, tuple)) and len(spec) == 3 \
                and isinstance(spec[0], str) and isinstance(spec[1], int):
            if spec[0] in feed:
                return type(spec)(feed[spec[0]]["config"]["keras_history"])
            return spec
        if isinstance(spec, dict):
            return {k: _fix_outputs(v) for k, v in spec.items()}
        if isinstance(spec, (list, tuple)):
            return type(spec)(_fix_outputs(v) for v in spec)
        return spec

    config["output_layers"] = _fix_outputs(config["output_layers"])
    config["name"] = f"{model.name}_folded"
    return keras.Model.from_config(config, custom_objects=custom_objects(model))


def _copy_folded_weights(model, new, bn_scale):
    """Weights of ``model`` into ``new``; the gated BNs get ``γ·s̄``, ``β·s̄``."""
    for layer in new.layers:
        src = model.get_layer(layer.name)
        if layer.name in bn_scale:
            s = bn_scale[layer.name]
            value = dict(zip((id(v) for v in src.weights), src.get_weights()))
            gamma = value[id(src.gamma)] if src.gamma is not None else np.ones_like(s)
            beta = value[id(src.beta)] if src.beta is not None else np.zeros_like(s)
            layer.gamma.assign((gamma * s).astype(layer.gamma.dtype))
            layer.beta.assign((beta * s).astype(layer.beta.dtype))
            layer.moving_mean.assign(value[id(src.moving_mean)])
            layer.moving_variance.assign(value[id(src.moving_variance)])
        else:
            layer.set_weights(src.get_weights())
