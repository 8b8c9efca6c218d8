"""Every public layer of the installed Keras, pruned in a tiny CNN context.

For each class in ``keras.layers`` (aliases once), the sweep builds the layer
with small arguments in the first context where it runs -- after a conv on a
4-D feature map, on a 3-D sequence made from it, on a 5-D volume, after global
pooling, or on the image itself -- and prunes the model at ratio 0.5 with
``Pruner(importance="l1")``. A layer passes when the pruned model

- is *exact*: equal to the original with the dropped channels silenced
  (``graph.silence_dropped``), and runs; or
- is *refused*: a ``PruningError`` of one line that names a layer;

and ``unknown="freeze"`` then always returns a working, exact model. Never a
crash from inside Keras / TensorFlow, never a model that fails when called.
Layers that cannot be built in a CNN at all (strings, audio, other
frameworks) are listed as *not buildable*, with why.

    python tools/layer_sweep.py          # writes tools/results/keras_layers_sweep.{json,md}

``tests/test_keras_layers_sweep.py`` runs the same sweep.
"""
from __future__ import annotations

import functools
import inspect
import json
import pathlib
import sys
import time
import warnings

import numpy as np

NOT_BUILDABLE = {
    "InputLayer": "the model's input itself, not a layer in the graph",
    "Layer": "the abstract base class",
    "Wrapper": "an abstract base class (Bidirectional / TimeDistributed are swept)",
    "TextVectorization": "reads strings", "StringLookup": "reads strings",
    "Hashing": "reads strings or integers to hash", "IntegerLookup": "reads integer ids",
    "HashedCrossing": "crosses categorical features", "CategoryEncoding": "reads integer ids",
    "Discretization": "needs adapted bin boundaries for numeric features",
    "Embedding": "reads integer ids", "ReversibleEmbedding": "reads integer ids",
    "MelSpectrogram": "reads raw audio", "STFTSpectrogram": "reads raw audio",
    "TFSMLayer": "loads a TF SavedModel from disk", "JaxLayer": "wraps a JAX function",
    "FlaxLayer": "wraps a Flax module", "TorchModuleWrapper": "wraps a torch.nn.Module",
    "Pipeline": "a preprocessing pipeline of other layers, outside a model graph",
    "GRUCell": "a cell, used inside RNN (swept through GRU / RNN)",
    "LSTMCell": "a cell, used inside RNN (swept through LSTM / RNN)",
    "SimpleRNNCell": "a cell, used inside RNN (swept through SimpleRNN / RNN)",
    "StackedRNNCells": "a cell, used inside RNN",
    "MaxNumBoundingBoxes": "pads bounding-box dictionaries, not tensors",
}


def _relu_lambda(t):
    import keras
    return keras.ops.relu(t)


def constructors(keras):
    """``{class name: [(label, kwargs factory)]}``: the variants swept for the
    layers that need arguments (others are built with ``cls()``)."""
    L, vec = keras.layers, np.linspace(0.5, 2.0, 8).astype("float32")
    return {
        "Activation": [("relu", lambda: dict(activation="relu")),
                       ("lambda", lambda: dict(activation=lambda t: keras.ops.relu(t))),
                       ("partial", lambda: dict(activation=functools.partial(
                           keras.activations.leaky_relu, negative_slope=0.2)))],
        "Rescaling": [("scalar", lambda: dict(scale=0.5, offset=0.1)),
                      ("per-channel", lambda: dict(scale=vec, offset=vec * 0.1))],
        "Normalization": [("per-channel", lambda: dict(mean=vec, variance=vec))],
        "Conv1D": [("", lambda: dict(filters=6, kernel_size=3, padding="same"))],
        "Conv2D": [("", lambda: dict(filters=6, kernel_size=3, padding="same")),
                   ("grouped", lambda: dict(filters=8, kernel_size=3, padding="same", groups=4)),
                   ("channels_first", lambda: dict(filters=6, kernel_size=1,
                                                   data_format="channels_first"))],
        "Conv3D": [("", lambda: dict(filters=6, kernel_size=1))],
        "Conv1DTranspose": [("", lambda: dict(filters=6, kernel_size=3, padding="same"))],
        "Conv2DTranspose": [("", lambda: dict(filters=6, kernel_size=3, padding="same"))],
        "Conv3DTranspose": [("", lambda: dict(filters=6, kernel_size=1))],
        "SeparableConv1D": [("", lambda: dict(filters=6, kernel_size=3, padding="same"))],
        "SeparableConv2D": [("", lambda: dict(filters=6, kernel_size=3, padding="same"))],
        "DepthwiseConv1D": [("", lambda: dict(kernel_size=3, padding="same"))],
        "DepthwiseConv2D": [("", lambda: dict(kernel_size=3, padding="same"))],
        "Dense": [("", lambda: dict(units=6)), ("lora", lambda: dict(units=6, lora_rank=2))],
        "EinsumDense": [("", lambda: dict(equation="...c,cd->...d", output_shape=6))],
        "LSTM": [("", lambda: dict(units=4))], "GRU": [("", lambda: dict(units=4))],
        "SimpleRNN": [("", lambda: dict(units=4))],
        "RNN": [("", lambda: dict(cell=L.SimpleRNNCell(4)))],
        "ConvLSTM1D": [("", lambda: dict(filters=4, kernel_size=3, padding="same"))],
        "ConvLSTM2D": [("", lambda: dict(filters=4, kernel_size=1))],
        "ConvLSTM3D": [("", lambda: dict(filters=4, kernel_size=1))],
        "Bidirectional": [("", lambda: dict(layer=L.GRU(4)))],
        "TimeDistributed": [("", lambda: dict(layer=L.Dense(4)))],
        "SpectralNormalization": [("", lambda: dict(layer=L.Conv2D(6, 1)))],
        "Lambda": [("scale", lambda: dict(function=lambda t: t * 0.1)),
                   ("channel-mean", lambda: dict(function=lambda t: keras.ops.mean(
                       t, axis=-1, keepdims=True))),
                   ("channel-slice", lambda: dict(function=lambda t: t[..., :4]))],
        "Reshape": [("", lambda: dict(target_shape=(-1, 8)))],
        "Permute": [("", lambda: dict(dims=(2, 1, 3)))],
        "RepeatVector": [("", lambda: dict(n=2))],
        "Resizing": [("", lambda: dict(height=4, width=4))],
        "CenterCrop": [("", lambda: dict(height=4, width=4))],
        "RandomCrop": [("", lambda: dict(height=4, width=4))],
        "RandomRotation": [("", lambda: dict(factor=0.1))],
        "RandomZoom": [("", lambda: dict(height_factor=0.1))],
        "RandomTranslation": [("", lambda: dict(height_factor=0.1, width_factor=0.1))],
        "RandomContrast": [("", lambda: dict(factor=0.1))],
        "RandomBrightness": [("", lambda: dict(factor=0.1))],
        "RandomShear": [("", lambda: dict(x_factor=0.1))],
        "GroupNormalization": [("", lambda: dict(groups=8)), ("groups=2", lambda: dict(groups=2))],
        "MultiHeadAttention": [("", lambda: dict(num_heads=2, key_dim=4))],
        "GroupQueryAttention": [("", lambda: dict(head_dim=4, num_query_heads=2,
                                                  num_key_value_heads=1))],
        "PReLU": [("", lambda: dict(shared_axes=[1, 2]))],
        "Softmax": [("", lambda: dict())], "Dot": [("", lambda: dict(axes=-1))],
        "Concatenate": [("", lambda: dict(axis=-1))],
        "Cropping3D": [("", lambda: dict(cropping=((0, 0), (1, 1), (1, 1))))],
        "RandomPosterization": [("", lambda: dict(factor=(1, 8), value_range=(0, 255)))],
        **{n: [("", lambda: dict(output_size=2))] for n in (
            "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D",
            "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D")},
        **{n: [("", lambda: dict(pool_size=2))] for n in (
            "AveragePooling1D", "AveragePooling2D", "AveragePooling3D")},
        **{n: [("", lambda: dict(rate=0.1))] for n in (
            "AlphaDropout", "Dropout", "GaussianDropout", "SpatialDropout1D",
            "SpatialDropout2D", "SpatialDropout3D")},
        "GaussianNoise": [("", lambda: dict(stddev=0.1))],
        **{n: [("", lambda: dict(factor=0.1))] for n in (
            "RandomColorDegeneration", "RandomHue", "RandomSaturation", "RandomSharpness")},
    }


TWO_INPUTS = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
              "Concatenate", "Dot", "Attention", "AdditiveAttention",
              "MultiHeadAttention", "GroupQueryAttention"}


def contexts(keras):
    """``[(name, build(make_layer) -> model)]`` tried in order."""
    L = keras.layers

    def features(inp, shape):
        x = L.Conv2D(8, 3, padding="same", name="c")(inp)
        x = L.BatchNormalization(name="bn")(x)
        return L.ReLU(name="relu")(x)

    def call(layer, x, two):
        if two:
            y = L.Conv2D(8, 1, name="c_b")(x) if len(x.shape) == 4 else L.Dense(8, name="d_b")(x)
            return layer([x, y]) if not _mha(layer) else layer(x, y)
        return layer(x)

    def head(x):
        if len(x.shape) > 2:
            x = L.Flatten(name="flat")(x)
        return L.Dense(3, name="head")(x)

    def four(make, two):
        inp = keras.Input((8, 8, 3))
        x = call(make(), features(inp, None), two)
        if len(x.shape) == 4:
            x = L.Conv2D(4, 1, name="after")(x)
        return keras.Model(inp, head(x))

    def seq(make, two):
        inp = keras.Input((8, 8, 3))
        x = L.Reshape((64, 8), name="to_seq")(features(inp, None))
        x = call(make(), x, two)
        return keras.Model(inp, head(x))

    def vol(make, two):
        inp = keras.Input((2, 4, 4, 3))
        x = L.Conv3D(8, 1, name="c3")(inp)
        return keras.Model(inp, head(call(make(), x, two)))

    def vec(make, two):
        inp = keras.Input((8, 8, 3))
        x = L.GlobalAveragePooling2D(name="gap")(features(inp, None))
        x = L.Dense(8, name="d")(x)
        return keras.Model(inp, head(call(make(), x, two)))

    def cfirst(make, two):
        inp = keras.Input((3, 8, 8))
        x = L.Conv2D(8, 3, padding="same", data_format="channels_first", name="c")(inp)
        x = L.BatchNormalization(axis=1, name="bn")(x)
        x = call(make(), x, two)
        x = L.GlobalAveragePooling2D(data_format="channels_first", name="gap")(x)
        return keras.Model(inp, L.Dense(3, name="head")(x))

    def image(make, two):
        inp = keras.Input((8, 8, 3))
        x = make()(inp)
        return keras.Model(inp, head(features(x, None)))

    return [("4d", four), ("seq", seq), ("5d", vol), ("vector", vec),
            ("channels_first", cfirst), ("image", image)]


def _mha(layer):
    import keras
    return isinstance(layer, (keras.layers.MultiHeadAttention, keras.layers.GroupQueryAttention))


def layer_classes(keras):
    """Unique public layer classes of ``keras.layers`` (first alias wins)."""
    seen, out = set(), []
    for name in sorted(dir(keras.layers)):
        cls = getattr(keras.layers, name)
        if inspect.isclass(cls) and issubclass(cls, keras.layers.Layer) and cls not in seen:
            seen.add(cls)
            out.append((name, cls))
    return out


def _batch(model, seed=0):
    from remotetrimmer_tf.first_call import probe_batch
    return probe_batch(model, seed=seed, batch=2)


def _runs(model, x):
    import keras
    return [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(model(x, training=False))]


def build_case(keras, name, cls, label, factory):
    """``(context, model, x)`` of the first context where the layer builds and
    runs, or ``(None, error, None)``."""
    last = None
    for ctx, build in contexts(keras):
        if label == "channels_first" and ctx != "channels_first":
            continue
        try:
            model = build(lambda: cls(name="swept", **factory()), name in TWO_INPUTS)
            x = _batch(model)
            _runs(model, x)
            return ctx, model, x
        except Exception as err:      # any failure: try the next context
            last = err
    return None, last, None


def check(model, x, unknown):
    """``("exact" | "refused", detail)``; raises AssertionError on a broken result."""
    import remotetrimmer_tf as rt
    from remotetrimmer_tf.errors import PruningError
    from remotetrimmer_tf.graph.dead_channels import silence_dropped
    try:
        pruner = rt.Pruner(model, importance="l1", ratio=0.5, unknown=unknown)
        keep = pruner.plan()
        thin = pruner.prune()
    except PruningError as err:
        text = str(err)
        assert "\n" not in text and "'" in text, f"not one line naming a layer: {text!r}"
        return "refused", text
    quiet = silence_dropped(pruner.graph.model, keep, graph=pruner.graph)
    a, b = _runs(quiet, x), _runs(thin, x)
    for u, v in zip(a, b):
        scale = max(1.0, float(np.max(np.abs(u))))
        assert u.shape == v.shape and float(np.max(np.abs(u - v))) <= 1e-4 * scale, \
            f"not exact: max diff {float(np.max(np.abs(u - v)))}"
    swept = [g for g in pruner.graph.groups if any(l.startswith("swept") for l in g.layers)]
    pruned = any(g.index in keep for g in swept)
    reason = next((g.reason for g in swept if not g.prunable and g.reason
                   and "swept" in g.reason), None)
    return "exact", ("pruned through" if pruned else f"frozen: {reason or 'around it'}")


def sweep(keras, only=None):
    """Rows ``{layer, variant, context, error, freeze}`` for every layer class."""
    rows, table = [], constructors(keras)
    for name, cls in layer_classes(keras):
        if only and name not in only:
            continue
        if name in NOT_BUILDABLE:
            rows.append({"layer": name, "variant": "", "result": "not buildable",
                         "detail": NOT_BUILDABLE[name]})
            continue
        for label, factory in table.get(name, [("", dict)]):
            rows.append(_row(keras, name, cls, label, factory))
    return rows


def _row(keras, name, cls, label, factory):
    ctx, model, x = build_case(keras, name, cls, label, factory)
    row = {"layer": name, "variant": label, "context": ctx}
    if ctx is None:
        row.update(result="not buildable",
                   detail=f"no CNN context builds it ({type(model).__name__}: "
                          f"{str(model).strip().splitlines()[0][:100] if str(model).strip() else ''})")
        return row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            row["result"], row["detail"] = check(model, x, "error")
            row["freeze"] = check(model, x, "freeze")[0]
        except AssertionError as err:
            row.update(result="BROKEN", detail=str(err))
        except Exception as err:     # a crash from inside Keras / TF: a failure
            row.update(result="CRASH", detail=f"{type(err).__module__}.{type(err).__name__}: "
                                              f"{str(err).strip().splitlines()[0][:200]}")
    return row


def markdown(rows, header):
    out = [header, "", "| layer | variant | context | result | detail |", "|---|---|---|---|---|"]
    for r in rows:
        detail = str(r.get("detail", "")).replace("|", "/")[:220]
        out.append(f"| {r['layer']} | {r.get('variant', '')} | {r.get('context') or ''} | "
                   f"{r['result']} | {detail} |")
    counts = {}
    for r in rows:
        counts[r["result"]] = counts.get(r["result"], 0) + 1
    out += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    return "\n".join(out) + "\n"


def main():
    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    import keras
    from remotetrimmer_tf.utils.files import write_json_atomic, write_text_atomic
    from remotetrimmer_tf.utils.provenance import results_header
    t0 = time.time()
    rows = sweep(keras, only=set(sys.argv[1:]) or None)
    header = (f"# keras.layers sweep\n\n{results_header()}\nEvery public class of "
              f"keras.layers (Keras {keras.__version__}, backend "
              f"{keras.backend.backend()}) pruned at ratio 0.5 in a tiny CNN context "
              f"({time.time() - t0:.0f} s). exact: equal to the original with the dropped "
              "channels silenced; refused: one PruningError line; freeze: the result "
              "with unknown='freeze'.")
    out = root / "tools" / "results"
    write_json_atomic(out / "keras_layers_sweep.json", {"header": header, "rows": rows})
    write_text_atomic(out / "keras_layers_sweep.md", markdown(rows, header))
    bad = [r for r in rows if r["result"] in ("BROKEN", "CRASH")]
    print(markdown(rows, header))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
