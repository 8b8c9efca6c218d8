"""Every Keras export format, each checked by its own runtime.

``export_format(model, path, format)`` runs Keras' own
``model.export(tmp, format=...)`` next to ``path``, loads the artifact with
the runtime that serves it, compares its outputs with Keras
(``export.parity.compare``: ``atol``, then the float64 rounding rule) and
only then moves it into place; on any failure nothing is left at ``path``.

=================  ===========================  ==================================
format             artifact (``path``)          checked with (packages needed)
=================  ===========================  ==================================
``litert``         ``.tflite`` file             ai_edge_litert (tensorflow)
``tf_saved_model`` a folder                     ``tf.saved_model.load`` (tensorflow)
``onnx``           ``.onnx`` file               onnxruntime (tensorflow, tf2onnx, onnx)
``openvino``       ``.xml`` (+ ``.bin``) files  openvino (tensorflow, openvino)
=================  ===========================  ==================================

``saved_model`` and ``tflite`` are accepted for ``tf_saved_model`` and
``litert``. Packages are imported lazily; a missing one is named in a
one-line :class:`ExportFormatError` with its ``pip install`` line.

Example:

    ```python
    res = export_format(model, "model.onnx", "onnx")   # ParityError if it differs
    print(res.max_abs_diff, res.size_bytes)
    ```
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil

import numpy as np

from remotetrimmer_tf.errors import first_line
from remotetrimmer_tf.export import _io, onnx_graph
from remotetrimmer_tf.export.parity import compare, keras_outputs
from remotetrimmer_tf.utils.batches import as_sample_array
from remotetrimmer_tf.utils.files import (atomic_path, remove_quietly, replace_atomic,
                                          temp_sibling)

__all__ = ["FORMATS", "ALIASES", "REQUIREMENTS", "FormatExport", "ExportFormatError",
           "resolve_format", "parse_formats", "missing_packages", "export_format"]

#: Keras' ``model.export`` formats -> the ending their path must have
FORMATS = {"litert": ".tflite", "tf_saved_model": None, "onnx": ".onnx", "openvino": ".xml"}
ALIASES = {"saved_model": "tf_saved_model", "tflite": "litert"}
#: format -> (import name, pip name) of what exporting and checking it need
REQUIREMENTS = {
    "litert": (("tensorflow", "tensorflow"), ("ai_edge_litert", "ai-edge-litert")),
    "tf_saved_model": (("tensorflow", "tensorflow"),),
    "onnx": (("tensorflow", "tensorflow"), ("tf2onnx", "tf2onnx"), ("onnx", "onnx"),
             ("onnxruntime", "onnxruntime")),
    "openvino": (("tensorflow", "tensorflow"), ("openvino", "openvino")),
}


class ExportFormatError(ValueError):
    """An unknown format, a missing package, or a conversion that failed."""


@dataclasses.dataclass
class FormatExport:
    """What :func:`export_format` wrote and how well it matches Keras.

    Attributes:
        format: the Keras format name.
        path: the artifact (file, folder, or the ``.xml`` of OpenVINO).
        size_bytes: total size of what was written.
        max_abs_diff, top1_agreement, num_checked: the parity figures
            (``None`` / 0 without a check).
        check_source: ``"check_data"`` or ``"random"``.
        extra: the float64 rounding check when it was needed, else ``None``.
        converter: ``"keras"`` (``model.export``), or ``"frozen_graph"`` for
            an ONNX model that Keras' converter could not make runnable
            (:mod:`remotetrimmer_tf.export.onnx_graph`).
    """

    format: str
    path: str
    size_bytes: int = 0
    max_abs_diff: float | None = None
    top1_agreement: float | None = None
    num_checked: int = 0
    check_source: str | None = None
    extra: dict | None = None
    converter: str = "keras"

    def as_dict(self):
        return dataclasses.asdict(self)


def resolve_format(name):
    """The Keras name of an export format (``saved_model`` -> ``tf_saved_model``).

    Raises:
        ExportFormatError: naming the format and the choices.
    """
    fmt = ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if fmt not in FORMATS:
        raise ExportFormatError(
            f"unknown export format {name!r}; choose from "
            f"{', '.join(list(FORMATS) + list(ALIASES))}")
    return fmt


def parse_formats(values):
    """``("litert,onnx", "saved_model")`` / ``"litert,onnx"`` -> the Keras names,
    in order, each once (``--config.export.formats``).

    Raises:
        ExportFormatError: naming the unknown format and the choices.
    """
    if isinstance(values, str):
        values = (values,)
    out = []
    for item in values or ():
        for part in str(item).split(","):
            if part.strip():
                fmt = resolve_format(part)
                if fmt not in out:
                    out.append(fmt)
    return out


def missing_packages(fmt):
    """The pip names of the packages ``fmt`` needs that are not installed."""
    return [pip for mod, pip in REQUIREMENTS[resolve_format(fmt)]
            if importlib.util.find_spec(mod) is None]


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f))
                   for r, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def _check_inputs(model, check_data, num_check, seed):
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportFormatError(
            f"model '{model.name}' has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs; the export check supports one of each "
            "(pass check=False to export without it)")
    shape = tuple(model.inputs[0].shape)
    if check_data is not None:
        return as_sample_array(check_data, limit=num_check, name="check_data",
                               ndim=len(shape)).astype(np.float32), "check_data"
    if any(d is None for d in shape[1:]):
        raise ExportFormatError(
            f"model '{model.name}' has input shape {shape}; pass check_data= "
            "(images it takes) to check the export")
    x = np.random.default_rng(seed).standard_normal((num_check,) + shape[1:])
    return x.astype(np.float32), "random"


# ------------------------------------------------------------------ runtimes
def _run_litert(path, x):
    from remotetrimmer_tf.export.litert import run_litert
    return run_litert(path, x)


def _run_saved_model(path, x):
    import tensorflow as tf
    loaded = tf.saved_model.load(path)
    out = loaded.serve(tf.constant(x))
    if isinstance(out, dict):
        (out,) = out.values()
    return np.asarray(out)


def _run_onnx(path, x):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _run_openvino(path, x):
    import openvino as ov
    compiled = ov.Core().compile_model(path, "CPU")
    return np.asarray(compiled(x)[0])


RUNNERS = {"litert": _run_litert, "tf_saved_model": _run_saved_model,
           "onnx": _run_onnx, "openvino": _run_openvino}


def _run(fmt, path, x, label):
    """The artifact's outputs on ``x``; a runtime that cannot load or run it
    is a one-line ExportFormatError."""
    try:
        return RUNNERS[fmt](path, x)
    except Exception as err:  # noqa: BLE001 - runtime errors: one line ours
        raise ExportFormatError(f"{label}: the artifact does not run ({_first_line(err)})") \
            from None


def _first_line(err):
    return f"{type(err).__name__}: {first_line(err, 200)}"


def _export(model, tmp, fmt):
    try:
        model.export(tmp, format=fmt, verbose=False)
    except Exception as err:  # noqa: BLE001 - Keras / converter errors: one line ours
        raise ExportFormatError(
            f"{fmt} export of '{model.name}' failed ({_first_line(err)})") from None


def _called(model, x):
    """Keras' ONNX export needs a model that was called: Keras' outputs on
    ``x`` (``None`` without a check, the model called on zeros if it can be)."""
    if x is not None:
        return keras_outputs(model, x)
    shape = tuple(model.inputs[0].shape)
    if len(model.inputs) == 1 and all(d is not None for d in shape[1:]):
        model(np.zeros((1,) + shape[1:], "float32"), training=False)
    return None


def _check(model, fmt, artifact, x, atol, label, ref):
    """Parity of the artifact with Keras on ``x`` (None without a check)."""
    if x is None:
        return None
    return compare(model, x, _run(fmt, artifact, x, label), atol=atol, label=label, ref=ref)


def _check_onnx(model, artifact, x, atol, label, ref):
    """``_check`` of an ONNX file that first must take only the model's
    inputs (no captured tensor left as an input)."""
    extra = onnx_graph.extra_inputs(artifact, len(model.inputs))
    if extra:
        raise ExportFormatError(f"{label}: captured tensors became inputs "
                                f"({', '.join(extra[:3])})")
    return _check(model, "onnx", artifact, x, atol, label, ref)


def _write_onnx(model, tmp, x, atol, label, ref):
    """``(parity, converter)`` of ``tmp``: Keras' ``model.export`` first; where
    its artifact cannot be made or run, the frozen graph
    (``onnx_graph.convert_frozen``), checked the same way."""
    onnx_graph.register_erfc()
    try:
        _export(model, tmp, "onnx")
        return _check_onnx(model, tmp, x, atol, label, ref), "keras"
    except ExportFormatError as err:
        keras_error = err
    remove_quietly(tmp)
    try:
        onnx_graph.convert_frozen(model, tmp)
    except Exception as err:  # noqa: BLE001 - converter errors: one line ours
        raise ExportFormatError(f"{keras_error}; the frozen-graph conversion failed too "
                                f"({_first_line(err)})") from None
    try:
        return _check_onnx(model, tmp, x, atol, label, ref), "frozen_graph"
    except ExportFormatError as err:
        raise ExportFormatError(f"{keras_error}; the frozen-graph conversion too: "
                                f"{err}") from None


def _write(model, path, fmt, x, atol):
    """Export next to ``path``, check, move into place; ``(parity figures,
    converter)``: ``"keras"`` (``model.export``) or ``"frozen_graph"`` (ONNX
    that Keras' converter could not make runnable, see ``onnx_graph``)."""
    label = f"{fmt} export of '{model.name}'"
    ref = _called(model, x)
    if fmt != "openvino":
        with atomic_path(path) as tmp:
            if fmt == "onnx":
                return _write_onnx(model, tmp, x, atol, label, ref)
            _export(model, tmp, fmt)
            return _check(model, fmt, tmp, x, atol, label, ref), "keras"
    folder = temp_sibling(path)
    os.mkdir(folder)
    try:            # model.xml + model.bin: both checked, then both moved
        xml = os.path.join(folder, os.path.basename(path))
        _export(model, xml, fmt)
        parity = _check(model, fmt, xml, x, atol, label, ref)
        replace_atomic(xml[:-4] + ".bin", path[:-4] + ".bin")
        replace_atomic(xml, path)
        return parity, "keras"
    finally:
        remove_quietly(folder)


def export_format(model, path, format, *, check=True, check_data=None, num_check=8,
                  atol=1e-4, overwrite=False, seed=0):
    """Export ``model`` with ``model.export(format=...)`` and check it.

    Args:
        model: a single-input, single-output ``keras.Model`` (a keras-hub
            Backbone or task too).
        path: destination: ``.tflite`` (litert), a folder (tf_saved_model),
            ``.onnx`` or ``.xml`` (OpenVINO, with its ``.bin`` beside it).
        format: ``"litert"``, ``"tf_saved_model"`` (``"saved_model"``),
            ``"onnx"`` or ``"openvino"``.
        check: run the artifact and compare it with Keras (default True).
        check_data: inputs to compare on (default: ``num_check`` seeded
            random normal samples of the model's input shape).
        num_check: how many samples to compare.
        atol: allowed max abs difference (then the float64 rounding rule of
            ``litert.rounding_check``), else ParityError and nothing written.
        overwrite: replace an existing ``path``.
        seed: seed of the random check inputs.

    Returns:
        :class:`FormatExport`.

    Raises:
        ExportFormatError: unknown format, missing package (named with its
            pip line), bad path or a failed conversion (one line).
        ParityError: the artifact does not reproduce Keras.
    """
    fmt = resolve_format(format)
    missing = missing_packages(fmt)
    if missing:
        raise ExportFormatError(f"the {fmt} export needs {', '.join(missing)}: "
                                f"pip install {' '.join(missing)}")
    try:
        path = _io.check_target(path, suffix=FORMATS[fmt], overwrite=overwrite,
                                what="directory" if FORMATS[fmt] is None else "file")
    except (TypeError, ValueError) as err:
        raise ExportFormatError(str(err)) from None
    x, source = _check_inputs(model, check_data, num_check, seed) if check else (None, None)
    if overwrite and os.path.isdir(path) and FORMATS[fmt] is not None:
        shutil.rmtree(path)
    parity, converter = _write(model, path, fmt, x, atol)
    size = _size(path) + (_size(path[:-4] + ".bin") if fmt == "openvino" else 0)
    result = FormatExport(format=fmt, path=path, size_bytes=size, check_source=source,
                          converter=converter)
    if parity:
        result.max_abs_diff = parity["max_abs_diff"]
        result.top1_agreement = parity["top1_agreement"]
        result.num_checked = parity["num_checked"]
        result.extra = {"float64_reference": parity["float64_reference"]} \
            if "float64_reference" in parity else None
    return result
