"""Latency on the LiteRT interpreter (XNNPACK) of this machine.

What :class:`remotetrimmer_tf.latency.LatencyModel` measures with: one layer
at a given input / output width (a one-layer model with random weights), or
a whole Keras model. Models are converted with
:func:`~remotetrimmer_tf.export.litert.convert_to_litert_bytes` and run with
:class:`~remotetrimmer_tf.export.litert.LiteRTRunner`. ``int8`` models are
calibrated on random standard-normal inputs unless ``representative_data``
is given (latency does not depend on the calibration, accuracy would).

Timing: warm-up runs, then ``rounds`` rounds of ``runs`` invokes; the
latency is the minimum over rounds of the per-round median (a shared
machine's load only ever adds time).

TensorFlow and ai_edge_litert are imported inside the functions.
"""

from __future__ import annotations

import functools
import platform
import time

import numpy as np

__all__ = ["machine_key", "convert", "time_tflite", "time_model", "time_interleaved", "time_layer",
           "time_layers", "layer_model",
           "convert_many", "time_signatures",
           "time_invoke_overhead"]


def machine_key(runtime="litert", threads=1, dtype="float32"):
    """What a latency measurement depends on: CPU model, runtime version,
    threads, dtype (a dict of strings)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version
        ver = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - not installed: the key says so
        ver = "missing"
    return {"runtime": runtime, "runtime_version": ver, "cpu": cpu,
            "threads": str(int(threads)), "dtype": dtype}


def time_tflite(tflite, threads=1, warmup=5, runs=20, rounds=3, gap_s=0.0):
    """Latency (ms) of a ``.tflite`` (bytes or path) with batch-1 random input
    (``gap_s`` seconds between rounds spread them over time, so that a burst of
    other load on a shared machine spoils a few rounds, not the minimum)."""
    from remotetrimmer_tf.export.litert import LiteRTRunner

    runner = LiteRTRunner(tflite, num_threads=int(threads))
    x = np.random.default_rng(0).standard_normal(runner.input_shape).astype(np.float32)
    runner.set_input(x)
    for _ in range(warmup):
        runner.invoke()
    return _round_minima([runner.invoke], rounds, runs, gap_s)[0]


def _round_minima(calls, rounds, runs, gap_s=0.0, rewarm=0):
    """ms per call of each zero-argument ``calls[i]``: ``rounds`` rounds
    (``gap_s`` apart) alternate between them, in reverse order every other
    round, each call first invoked ``rewarm`` times untimed, then ``runs``
    timed times; per call the minimum over rounds of the per-round median."""
    best = [float("inf")] * len(calls)
    order = list(range(len(calls)))
    for r in range(int(rounds)):
        if gap_s and r:
            time.sleep(gap_s)
        for i in (order if r % 2 == 0 else order[::-1]):
            call, ts = calls[i], []
            for _ in range(int(rewarm)):
                call()
            for _ in range(int(runs)):
                t0 = time.perf_counter()
                call()
                ts.append(time.perf_counter() - t0)
            best[i] = min(best[i], float(np.median(ts)))
    return [b * 1e3 for b in best]


def convert(model, dtype="float32", representative_data=None):
    """The ``.tflite`` bytes :func:`time_model` times (``int8``: full-integer,
    calibrated on random inputs unless ``representative_data``)."""
    return _convert(model, dtype, representative_data)


def _convert(model, dtype, representative_data=None, int8_io=False):
    from remotetrimmer_tf.export.litert import convert_to_litert_bytes

    if dtype == "float32":
        return convert_to_litert_bytes(model)
    if dtype != "int8":
        raise ValueError(f"dtype must be 'float32' or 'int8', got {dtype!r}.")
    if representative_data is None:
        shape = (16,) + tuple(model.inputs[0].shape[1:])
        representative_data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return convert_to_litert_bytes(model, "int8", representative_data, int8_io=int8_io,
                                   num_calibration=len(representative_data))


def time_model(model, threads=1, dtype="float32", representative_data=None, **timing):
    """Convert a Keras model to LiteRT (``float32`` / ``int8``) and time it (ms).

    Example (needs ai_edge_litert; the figure depends on the machine):

    ```python
    ms = time_model(model, threads=1, dtype="int8")
    ```
    """
    return time_tflite(_convert(model, dtype, representative_data), threads, **timing)


def time_interleaved(models, threads=1, dtype="float32", representative_data=None,
                     rounds=40, runs=10, gap_s=0.025, rewarm=3):
    """Latency (ms) of several Keras models (or ``.tflite`` bytes) measured side
    by side: each is converted once, then ``rounds`` rounds alternate between them (order
    reversed every other round, ``rewarm`` untimed invokes first, since the
    previous model evicted this one's weights from cache); per model the
    minimum over rounds of the per-round median of ``runs`` invokes. What
    drifts on a machine over minutes (clock, other load) drifts for all of
    them alike, so their ratios hold where separate measurements do not.

    Example (needs ai_edge_litert; the figures depend on the machine):

    ```python
    small_ms, ref_ms = time_interleaved([small, reference], threads=1, dtype="int8")
    ```
    """
    from remotetrimmer_tf.export.litert import LiteRTRunner

    rng = np.random.default_rng(0)
    runners = []
    for m in models:
        tflite = m if isinstance(m, (bytes, bytearray)) else _convert(m, dtype, representative_data)
        runner = LiteRTRunner(tflite, num_threads=int(threads))
        runner.set_input(rng.standard_normal(runner.input_shape).astype(np.float32))
        for _ in range(5):
            runner.invoke()
        runners.append(runner)
    return _round_minima([r.invoke for r in runners], rounds, runs, gap_s, rewarm)


def layer_model(spec, n_in, n_out):
    """A one-layer Keras model: ``spec``'s layer at ``n_in`` -> ``n_out`` channels."""
    import keras

    cfg = dict(spec["config"])
    cfg.pop("name", None)
    for key in ("filters", "units"):
        if key in cfg:
            cfg[key] = int(n_out)
    if int(cfg.get("groups", 1) or 1) == int(spec["full"][0]) > 1:
        cfg["groups"] = int(n_in)   # depthwise written as Conv(groups=C): groups follow C
    layer = keras.saving.deserialize_keras_object(
        {"module": spec["module"], "class_name": spec["class_name"], "config": cfg,
         "registered_name": spec.get("registered_name")})
    inp = keras.Input(tuple(spec["in_shape"]) + (int(n_in),), batch_size=1)
    return keras.Model(inp, layer(inp))


def time_layer(spec, n_in, n_out, threads=1, dtype="float32", rounds=5, runs=10, **timing):
    """Latency (ms) of ``spec``'s layer alone at ``n_in`` -> ``n_out`` channels
    (random weights; int8 with int8 input/output, so no quantise ops are timed)."""
    model = layer_model(spec, n_in, n_out)
    return time_tflite(_convert(model, dtype, int8_io=dtype == "int8"), threads,
                       rounds=rounds, runs=runs, **timing)


def time_invoke_overhead(threads=1, dtype="float32", rounds=5, runs=10):
    """Latency (ms) of a one-op model (a ReLU on 1x1x8): the fixed cost of an
    invoke, which a layer timed alone pays and a layer inside a model does not."""
    return time_tflite(_convert(overhead_model(), dtype, int8_io=dtype == "int8"), threads,
                       rounds=rounds, runs=runs)


def _endpoint(model):
    return functools.partial(model.__call__, training=False)


def convert_many(models, dtype="float32", *, int8_io=False, calibration=8):
    """Convert several single-input Keras models into ONE ``.tflite`` with one
    signature per model (keys ``"m0"``, ``"m1"``, ...): one SavedModel write and
    one conversion instead of one per model -- what makes timing many layers
    cheap. ``int8`` signatures are calibrated on ``calibration`` random
    standard-normal inputs each."""
    import tempfile

    import keras
    import tensorflow as tf

    if dtype not in ("float32", "int8"):
        raise ValueError(f"dtype must be 'float32' or 'int8', got {dtype!r}.")
    keys = [f"m{i}" for i in range(len(models))]
    specs = {}
    with tempfile.TemporaryDirectory(prefix="rt_litert_many_") as tmp:
        archive = keras.export.ExportArchive()
        for key, m in zip(keys, models):
            archive.track(m)
            shape = (1,) + tuple(int(d) for d in m.inputs[0].shape[1:])
            specs[key] = shape
            archive.add_endpoint(key, _endpoint(m),
                                 input_signature=[tf.TensorSpec(shape, tf.float32, name="input")])
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=keys)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if dtype == "int8":
            rng = np.random.default_rng(0)

            def gen():
                for key in keys:
                    for _ in range(int(calibration)):
                        yield key, {"input": rng.standard_normal(specs[key]).astype(np.float32)}

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = gen
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        return converter.convert(), keys


def time_signatures(tflite, keys, threads=1, warmup=5, runs=10, rounds=5):
    """Latency (ms) of each signature of one ``.tflite``: rounds alternate
    between the signatures; per signature the minimum over rounds of the
    per-round median of ``runs`` invokes (load only adds time)."""
    from ai_edge_litert import interpreter as litert

    interp = litert.Interpreter(model_content=bytes(tflite), num_threads=int(threads))
    interp.allocate_tensors()
    rng = np.random.default_rng(0)
    calls = {}
    for key in keys:
        runner = interp.get_signature_runner(key)
        (name, detail), = runner.get_input_details().items()
        x = rng.standard_normal(detail["shape"])
        if detail["dtype"] != np.float32:
            info = np.iinfo(detail["dtype"])
            x = np.clip(np.round(x * 20), info.min, info.max)
        runner(**{name: x.astype(detail["dtype"])})   # allocates, sets the input once
        wrapper, index = getattr(runner, "_interpreter_wrapper", None), \
            getattr(runner, "_subgraph_index", None)
        if wrapper is not None and index is not None and hasattr(wrapper, "Invoke"):
            calls[key] = functools.partial(wrapper.Invoke, index)
        else:   # public API only: the call also resizes and sets the input
            calls[key] = functools.partial(runner, **{name: x.astype(detail["dtype"])})
        for _ in range(warmup):
            calls[key]()
    return _round_minima([calls[k] for k in keys], rounds, runs)


def overhead_model():
    """A one-op model (a ReLU on 1x1x8): the fixed cost of an invoke."""
    import keras

    inp = keras.Input((1, 1, 8), batch_size=1)
    return keras.Model(inp, keras.layers.ReLU()(inp))


def time_layers(cells, threads=1, dtype="float32", rounds=5, runs=10, chunk=48):
    """Latency (ms) of many one-layer models ``(spec, n_in, n_out)`` at once,
    each minus the fixed cost of an invoke measured alongside them (a one-op
    model in the same file), never below 0. Layers are converted ``chunk`` at a
    time into one multi-signature ``.tflite`` (int8 with int8 input/output, so
    no quantise ops are timed)."""
    out = []
    for s in range(0, len(cells), int(chunk)):
        part = cells[s:s + int(chunk)]
        models = [overhead_model()] + [layer_model(spec, a, b) for spec, a, b in part]
        tflite, keys = convert_many(models, dtype, int8_io=dtype == "int8")
        ms = time_signatures(tflite, keys, threads, rounds=rounds, runs=runs)
        out += [max(0.0, t - ms[0]) for t in ms[1:]]
    return out
