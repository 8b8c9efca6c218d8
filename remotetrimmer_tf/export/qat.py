"""Quantisation-aware training (QAT) of Keras 3 models through tfmot.

``tensorflow-model-optimization`` (tfmot 0.8.x) only works with ``tf_keras``
(Keras 2): it rejects Keras 3 models, pins ``absl-py`` to 1.x, and importing
it switches ``tf.keras`` to tf_keras for the whole process. It is therefore
the optional ``qat`` extra, best installed in its own virtual environment::

    python -m venv --system-site-packages /opt/qatenv
    /opt/qatenv/bin/pip install tensorflow-model-optimization tf_keras

and reached through a *Keras 3 -> tf_keras bridge* that runs in a separate
Python process (``python=...`` or ``$REMOTETRIMMER_QAT_PYTHON``, default the
current interpreter):

1. here (Keras 3): the functional model is written out as a layer spec
   (class names, configs, call graph) plus its weights, with the training,
   calibration and reference arrays;
2. in the worker (:mod:`remotetrimmer_tf.export._tfmot_worker`, tf_keras):
   the same functional graph is rebuilt layer by layer from tf_keras
   classes of the same name (Conv2D, BatchNormalization, ReLU, Add, Dense,
   pooling, ...), weights are copied and the rebuilt model is checked
   against the Keras 3 outputs; then ``quantize_model``, a brief
   fine-tune, and int8 conversion with tf_keras's converter;
3. back here: the ``.tflite`` is checked against the Keras 3 model (top-1
   agreement on ``check_data``) and moved atomically into place.

Caveat: nothing in this module imports tfmot or tf_keras into *this*
process, so Keras 3 keeps working. If you do import tfmot yourself, do it
only after all Keras 3 work is done.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from remotetrimmer_tf.export import _io, litert
from remotetrimmer_tf.export.litert import _check_model
from remotetrimmer_tf.utils.batches import as_sample_array, as_xy
from remotetrimmer_tf.utils.keras_json import map_keras_tensors

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tfmot_worker.py")

# Keras 3 classes the bridge rebuilds from tf_keras classes of the same name.
BRIDGE_LAYERS = frozenset(
    {
        "InputLayer",
        "Conv2D",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "Dense",
        "BatchNormalization",
        "ReLU",
        "Activation",
        "Add",
        "Multiply",
        "Concatenate",
        "MaxPooling2D",
        "AveragePooling2D",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "ZeroPadding2D",
        "Flatten",
        "Dropout",
        "Reshape",
        "Identity",
    }
)

INSTALL_HINT = (
    "install the optional 'qat' extra (tensorflow-model-optimization and "
    "tf_keras) in a separate venv, e.g. `python -m venv "
    "--system-site-packages /tmp/qatenv && /tmp/qatenv/bin/pip install "
    "tensorflow-model-optimization tf_keras`, and pass python="
    "'/tmp/qatenv/bin/python' or set REMOTETRIMMER_QAT_PYTHON"
)


def _python(python):
    return python or os.environ.get("REMOTETRIMMER_QAT_PYTHON") or sys.executable


def qat_available(python=None):
    """Whether tfmot and tf_keras can be imported by the worker's Python.

    For the current interpreter this only looks the packages up (nothing is
    imported); for another interpreter it asks it in a subprocess.

    Returns:
        ``(bool, reason)``: ``reason`` says what is missing, or "" if ok.
    """
    exe = _python(python)
    names = ("tensorflow_model_optimization", "tf_keras")
    if os.path.abspath(exe) == os.path.abspath(sys.executable):
        missing = [n for n in names if importlib.util.find_spec(n) is None]
    else:
        code = (
            "import importlib.util, sys;"
            f"m=[n for n in {names!r} if importlib.util.find_spec(n) is None];"
            "print(','.join(m))"
        )
        try:
            out = subprocess.run(
                [exe, "-c", code], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return False, f"cannot run QAT python '{exe}': {err}"
        if out.returncode:
            return False, f"QAT python '{exe}' failed: {out.stderr.strip()[-300:]}"
        missing = [n for n in out.stdout.strip().split(",") if n]
    if missing:
        return False, f"{', '.join(missing)} not importable by '{exe}': {INSTALL_HINT}"
    return True, ""


# --------------------------------------------------------------------------
# Keras 3 side of the bridge


def _to_ref(obj):
    """Replace serialised keras tensors by {"__ref__": [layer, node, idx]}."""
    return map_keras_tensors(obj, lambda t: {"__ref__": list(t["config"]["keras_history"])})


def _io_refs(entry):
    # single input: ["name", 0, 0]; several: [["a", 0, 0], ["b", 0, 0]]
    if entry and isinstance(entry[0], str):
        entry = [entry]
    return [{"__ref__": list(e)} for e in entry]


def bridge_spec(model):
    """Describe a Keras 3 functional model for the tf_keras rebuild.

    Returns:
        ``(spec, weights)``: a JSON-able spec and ``{"layer/i": array}``.

    Raises:
        ValueError: the model is not functional, or a layer has no tf_keras
            counterpart (e.g. a SqueezeExcite gate: fold attention first).
    """
    try:
        config = model.get_config()
    except NotImplementedError:
        config = None
    if not config or "layers" not in config:
        raise ValueError(
            f"Model '{model.name}' is not a functional model; the tfmot "
            "bridge rebuilds functional graphs only."
        )
    unsupported = sorted(
        {
            f"{l['name']} ({l['class_name']})"
            for l in config["layers"]
            if l["class_name"] not in BRIDGE_LAYERS
            or l.get("module", "keras.layers") not in ("keras.layers", None)
        }
    )
    if unsupported:
        raise ValueError(
            "The tfmot bridge cannot rebuild these layers in tf_keras: "
            + ", ".join(unsupported)
            + ". Fold squeeze-and-excite gates (fold_attention) and use "
            f"builtin layers only; supported: {sorted(BRIDGE_LAYERS)}."
        )
    layers, weights, num_weights = [], {}, {}
    for entry in config["layers"]:
        name = entry["name"]
        layers.append(
            {
                "name": name,
                "class_name": entry["class_name"],
                "config": entry["config"],
                "nodes": [_to_ref(n) for n in entry.get("inbound_nodes", [])],
            }
        )
        w = model.get_layer(name).get_weights()
        num_weights[name] = len(w)
        for i, arr in enumerate(w):
            weights[f"{name}/{i}"] = np.asarray(arr)
    spec = {
        "name": config.get("name", model.name),
        "layers": layers,
        "inputs": _io_refs(config["input_layers"]),
        "outputs": _io_refs(config["output_layers"]),
        "num_weights": num_weights,
    }
    return spec, weights


def run_tfmot_job(  # long: one job's subprocess protocol in order
    model,
    mode,
    train_data=None,
    *,
    representative_data=None,
    quantize="int8",
    int8_io=False,
    sparsity=None,
    epochs=1,
    batch_size=32,
    learning_rate=1e-3,
    momentum=0.9,
    from_logits=None,
    max_train_samples=None,
    num_calibration=200,
    bridge_atol=1e-4,
    python=None,
    timeout=None,
    seed=0,
    verbose=False,
):
    """Run one tfmot job in the worker process; return (tflite bytes, info).

    Used by :func:`qat_to_litert` (``mode="qat"``) and
    :func:`remotetrimmer_tf.export.tfmot_prune_to_litert` (``mode="prune"``).
    """
    shape = _check_model(model)
    ok, reason = qat_available(python)
    if not ok:
        raise ImportError(f"tfmot is not available: {reason}")
    if from_logits is None:
        from remotetrimmer_tf.utils.keras_models import infer_from_logits
        from_logits = infer_from_logits(model)
    x, y, calib = _job_data(shape, train_data, representative_data, quantize,
                            max_train_samples, num_calibration)
    ref_x = calib[:8] if len(calib) else (
        np.random.default_rng(seed).standard_normal((4,) + tuple(shape[1:]))
    ).astype(np.float32)
    ref_y = np.asarray(model(ref_x, training=False), np.float32)
    spec, weights = bridge_spec(model)
    job = {
        "mode": mode,
        "spec": spec,
        "quantize": quantize,
        "int8_io": bool(int8_io),
        "sparsity": sparsity,
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "momentum": float(momentum),
        "from_logits": bool(from_logits),
        "bridge_atol": float(bridge_atol),
        "seed": int(seed),
    }
    arrays = {"weights": weights, "train": {"x": x, "y": y}, "calib": {"x": calib},
              "ref": {"x": ref_x, "y": ref_y}}
    data, info = _run_worker(job, arrays, python, timeout, verbose)
    info["from_logits"] = bool(from_logits)
    info["num_train_samples"] = int(len(x))
    return data, info


def _job_data(shape, train_data, representative_data, quantize, max_train_samples,
              num_calibration):
    """(x, y, calib) numpy arrays of a tfmot job, checked against ``shape``."""
    ndim = len(shape)
    if train_data is not None:
        x, y = as_xy(train_data, name="train_data", ndim=ndim, limit=max_train_samples)
        if x.shape[1:] != tuple(shape[1:]):
            raise ValueError(
                f"`train_data` images have shape {x.shape[1:]}, the model "
                f"expects {tuple(shape[1:])}."
            )
    else:
        x = np.zeros((0,) + tuple(shape[1:]), np.float32)
        y = np.zeros((0,), np.int32)
    if representative_data is not None:
        calib = as_sample_array(
            representative_data,
            limit=num_calibration,
            name="representative_data",
            ndim=ndim,
        )
    elif len(x):
        calib = x[:num_calibration]
    elif quantize == "int8":
        raise ValueError(
            "int8 conversion needs `representative_data` or `train_data`."
        )
    else:
        calib = np.zeros((0,) + tuple(shape[1:]), np.float32)
    return x, y, calib


def _run_worker(job, arrays, python, timeout, verbose):
    """Run ``_tfmot_worker.py`` on ``job`` + ``arrays`` (``{name: {key: array}}``,
    saved as ``<name>.npz``) in a temporary folder; (tflite bytes, result)."""
    with tempfile.TemporaryDirectory(prefix="rt_tfmot_") as work:
        with open(os.path.join(work, "job.json"), "w") as f:
            json.dump(job, f, default=_json_default)
        for name, content in arrays.items():
            np.savez(os.path.join(work, f"{name}.npz"), **content)
        env = dict(os.environ)
        env["TF_USE_LEGACY_KERAS"] = "1"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.pop("KERAS_BACKEND", None)
        proc = subprocess.run(
            [_python(python), WORKER, work],
            capture_output=not verbose,
            text=True,
            env=env,
            timeout=timeout,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or "")[-2000:] if not verbose else ""
            raise RuntimeError(
                f"tfmot worker ({job['mode']}) failed with exit code "
                f"{proc.returncode}:\n{tail}"
            )
        with open(os.path.join(work, "result.json")) as f:
            info = json.load(f)
        with open(os.path.join(work, "model.tflite"), "rb") as f:
            data = f.read()
    return data, info


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def qat_to_litert(  # long: the QAT recipe in order; mostly docstring
    model,
    path,
    train_data,
    *,
    representative_data=None,
    check_data=None,
    num_check=None,
    epochs=1,
    batch_size=32,
    learning_rate=1e-3,
    momentum=0.9,
    from_logits=None,
    max_train_samples=None,
    int8_io=False,
    min_top1_agreement=None,
    python=None,
    timeout=None,
    overwrite=False,
    seed=0,
    verbose=False,
):
    """Quantisation-aware fine-tune a (pruned) Keras 3 model; export int8.

    The model is rebuilt in tf_keras in a worker process (see the module
    docstring), wrapped with ``tfmot.quantization.keras.quantize_model``,
    fine-tuned with SGD + cross-entropy, converted to a full-integer
    ``.tflite`` and checked against the Keras 3 float model.

    Args:
        model: functional Keras 3 model of builtin layers (fold SE first).
        path: ``.tflite`` destination (atomic; no overwrite by default).
        train_data: ``(x, y)`` arrays or an iterable/``tf.data.Dataset`` of
            ``(images, labels)`` batches (normalised images, int labels).
        representative_data: calibration images (default: ``train_data``).
        check_data: images for the top-1 agreement check (default: none).
        num_check: max number of check images.
        epochs, batch_size, learning_rate, momentum: the QAT fine-tune.
        from_logits: whether the model outputs logits (default: inferred
            from the last layer's activation).
        max_train_samples: cap on training samples read from ``train_data``.
        int8_io: int8 input/output tensors (default float32 I/O).
        min_top1_agreement: raise :class:`ParityError` below this.
        python: interpreter with tfmot + tf_keras (default
            ``$REMOTETRIMMER_QAT_PYTHON`` or the current one).
        timeout: seconds for the worker.
        overwrite: replace an existing file.
        seed: seed for the worker.
        verbose: stream the worker's output.

    Returns:
        :class:`LiteRTExport` with an ``extra`` dict (``history``,
        ``bridge_max_abs_diff``, versions).

    Raises:
        ImportError: tfmot/tf_keras missing (message says how to install).
        ValueError: unsupported layers, bad data or path.
        RuntimeError: the worker failed.

    Example:

        ```python
        res = qat_to_litert(pruned, "pruned_qat_int8.tflite",
                            (x_train, y_train), check_data=x_test,
                            python="/opt/qatenv/bin/python")
        res.top1_agreement, res.extra["history"]["accuracy"]
        ```
    """
    path = _io.check_target(path, suffix=".tflite", overwrite=overwrite)
    data, info = run_tfmot_job(
        model,
        "qat",
        train_data,
        representative_data=representative_data,
        quantize="int8",
        int8_io=int8_io,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        from_logits=from_logits,
        max_train_samples=max_train_samples,
        python=python,
        timeout=timeout,
        seed=seed,
        verbose=verbose,
    )
    return litert.write_checked(
        model,
        path,
        data,
        quantize="int8",
        int8_io=int8_io,
        check_data=check_data,
        num_check=num_check,
        atol=None,  # int8: only the top-1 agreement bound applies
        min_top1_agreement=min_top1_agreement,
        overwrite=overwrite,
        extra=info,
    )
