"""Worker for the tfmot (Keras 2 / tf_keras) side of the Keras 3 bridge.

Run as a *script* in a separate process (never imported by the package):

    TF_USE_LEGACY_KERAS=1 python _tfmot_worker.py WORKDIR

It must not import Keras 3 or ``remotetrimmer_tf``: importing
``tensorflow_model_optimization`` switches ``tf.keras`` to tf_keras for the
whole process, which is why this lives in its own interpreter.

WORKDIR holds ``job.json`` (the mode, options and the model's layer spec
written by :mod:`remotetrimmer_tf.export.qat`), ``weights.npz``,
``train.npz`` (x, y), ``calib.npz`` (x) and ``ref.npz`` (x, y: Keras 3
outputs used to verify the rebuilt model). It writes ``model.tflite`` and
``result.json``.

Modes:
    qat    -- tfmot.quantization.keras.quantize_model, fine-tune, int8 export.
    prune  -- tfmot.sparsity.keras.prune_low_magnitude at a constant target
              sparsity, fine-tune, strip_pruning, float32 (or int8) export.
"""

import inspect
import json
import os
import sys
import time

import numpy as np

_BASE_KWARGS = {"name", "trainable", "dtype"}
_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def _layer_kwargs(cls, config):
    params = inspect.signature(cls.__init__).parameters
    accepted = {k for k in params if k not in ("self", "kwargs")}
    out = {}
    for key, value in config.items():
        if key.endswith(_DROP_SUFFIXES) or key == "dtype":
            continue
        if key in accepted or key in _BASE_KWARGS:
            out[key] = value
    out["dtype"] = "float32"
    return out


def _resolve(obj, outputs):
    """Replace {"__ref__": [layer, node, tensor]} markers by tensors."""
    if isinstance(obj, dict) and "__ref__" in obj:
        name, node, tensor = obj["__ref__"]
        return outputs[(name, node)][tensor]
    if isinstance(obj, list):
        return [_resolve(o, outputs) for o in obj]
    if isinstance(obj, dict):
        return {k: _resolve(v, outputs) for k, v in obj.items()}
    return obj


def _refs(obj):
    if isinstance(obj, dict) and "__ref__" in obj:
        yield tuple(obj["__ref__"][:2])
    elif isinstance(obj, list):
        for o in obj:
            yield from _refs(o)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _refs(v)


def build_tf_keras_model(spec, weights):
    """Rebuild the Keras 3 functional spec as a tf_keras functional model."""
    import tf_keras

    layers_by_name = {}
    outputs = {}  # (layer name, node index) -> list of output tensors
    pending = []
    for entry in spec["layers"]:
        name, cls_name = entry["name"], entry["class_name"]
        if cls_name == "InputLayer":
            shape = entry["config"]["batch_shape"][1:]
            t = tf_keras.Input(shape=shape, name=name, dtype="float32")
            outputs[(name, 0)] = [t]
            continue
        cls = getattr(tf_keras.layers, cls_name, None)
        if cls is None:
            raise ValueError(
                f"Layer '{name}' of class {cls_name} has no tf_keras "
                "counterpart; the bridge cannot rebuild it."
            )
        layers_by_name[name] = cls(**_layer_kwargs(cls, entry["config"]))
        for node_index, node in enumerate(entry["nodes"]):
            pending.append((name, node_index, node))
    while pending:
        progressed, rest = False, []
        for name, node_index, node in pending:
            if all(ref in outputs for ref in _refs(node)):
                args = _resolve(node["args"], outputs)
                kwargs = _resolve(node["kwargs"], outputs)
                out = layers_by_name[name](*args, **kwargs)
                outputs[(name, node_index)] = (
                    list(out) if isinstance(out, (list, tuple)) else [out]
                )
                progressed = True
            else:
                rest.append((name, node_index, node))
        if not progressed:
            raise ValueError(
                "Could not order the layer graph: unresolved inputs for "
                + ", ".join(n for n, _, _ in rest)
            )
        pending = rest
    inputs = [_resolve(r, outputs) for r in spec["inputs"]]
    outs = [_resolve(r, outputs) for r in spec["outputs"]]
    model = tf_keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outs[0] if len(outs) == 1 else outs,
        name=spec["name"],
    )
    for name, layer in layers_by_name.items():
        w = [weights[f"{name}/{i}"] for i in range(spec["num_weights"][name])]
        if w:
            layer.set_weights(w)
    return model


def _load_job(workdir):
    """(job, weights, train, calib, ref) from the files the parent wrote."""
    with open(os.path.join(workdir, "job.json")) as f:
        job = json.load(f)
    weights = dict(np.load(os.path.join(workdir, "weights.npz")))
    train = np.load(os.path.join(workdir, "train.npz"))
    calib = np.load(os.path.join(workdir, "calib.npz"))["x"]
    ref = np.load(os.path.join(workdir, "ref.npz"))
    return job, weights, train, calib, ref


def _rebuild_checked(job, weights, ref):
    """The tf_keras model and its max |difference| from the Keras 3 outputs."""
    model = build_tf_keras_model(job["spec"], weights)
    bridge_diff = float(
        np.max(np.abs(model.predict(ref["x"], verbose=0) - ref["y"]))
    )
    if not bridge_diff <= job["bridge_atol"]:
        raise RuntimeError(
            f"tf_keras rebuild differs from the Keras 3 model by {bridge_diff:.3g}"
        )
    return model, bridge_diff


def _wrap(model, job, tfmot):
    """(tfmot-wrapped model, its training callbacks) for the job's mode."""
    if job["mode"] == "qat":
        return tfmot.quantization.keras.quantize_model(model), []
    if job["mode"] == "prune":
        schedule = tfmot.sparsity.keras.ConstantSparsity(
            job["sparsity"], begin_step=0, frequency=1
        )
        work = tfmot.sparsity.keras.prune_low_magnitude(
            model, pruning_schedule=schedule
        )
        return work, [tfmot.sparsity.keras.UpdatePruningStep()]
    raise ValueError(f"unknown mode {job['mode']!r}")


def _fine_tune(work, train, job, callbacks, tf_keras):
    """SGD + cross-entropy fine-tune; the history ({} without samples)."""
    x, y = train["x"], train["y"]
    if not len(x):
        return {}
    work.compile(
        optimizer=tf_keras.optimizers.SGD(
            job["learning_rate"], momentum=job["momentum"]
        ),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(
            from_logits=job["from_logits"]
        ),
        metrics=["accuracy"],
    )
    hist = work.fit(
        x,
        y,
        batch_size=job["batch_size"],
        epochs=job["epochs"],
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def _kernel_sparsity(work):
    """Fraction of zero conv / dense kernel weights."""
    kernels = [
        w for l in work.layers for w in l.get_weights()[:1]
        if l.__class__.__name__ in ("Conv2D", "Dense", "DepthwiseConv2D")
    ]
    zeros = sum(int(np.sum(k == 0)) for k in kernels)
    return zeros / max(1, sum(k.size for k in kernels))


def _convert(work, job, calib, tf):
    """The LiteRT flatbuffer (full-integer with ``quantize="int8"``)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(work)
    if job["quantize"] == "int8":

        def gen():
            for i in range(len(calib)):
                yield [calib[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if job["int8_io"]:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


def main(workdir):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    start = time.time()
    job, weights, train, calib, ref = _load_job(workdir)

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf_keras.utils.set_random_seed(job["seed"])
    model, bridge_diff = _rebuild_checked(job, weights, ref)
    work, callbacks = _wrap(model, job, tfmot)
    history = _fine_tune(work, train, job, callbacks, tf_keras)
    sparsity = None
    if job["mode"] == "prune":
        work = tfmot.sparsity.keras.strip_pruning(work)
        sparsity = _kernel_sparsity(work)
    data = _convert(work, job, calib, tf)
    with open(os.path.join(workdir, "model.tflite"), "wb") as f:
        f.write(data)
    result = {
        "mode": job["mode"],
        "bridge_max_abs_diff": bridge_diff,
        "history": history,
        "kernel_sparsity": sparsity,
        "seconds": time.time() - start,
        "tf_keras_version": tf_keras.__version__,
        "tfmot_version": getattr(tfmot, "__version__", "unknown"),
    }
    with open(os.path.join(workdir, "result.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: _tfmot_worker.py WORKDIR")
    main(sys.argv[1])
