"""Plans recorded before the planning layer was split out of the Pruner
(``tools/record_plans.py`` wrote ``tests/data/plan_recording.json``), and the
same cases replayed by ``tests/test_plan_equivalence.py``: ratio (local,
global, rounded), target_macs, target_params and the latency search with a
fixed, deterministic fake timing model, on ResNet-18, MobileNetV2, a keras-hub
backbone nested in a classifier and two small toys (grouped / depthwise /
concat / split).

Only public API is used (``Pruner(...).plan()``, ``budget_report``), so the
recording and the replay read the same thing.
"""

from __future__ import annotations

import hashlib
import math
import pathlib

import keras
import numpy as np

from helpers import load_tool

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORDING = ROOT / "tests" / "data" / "plan_recording.json"


# ------------------------------------------------------------------ models
def _resnet18():
    from remotetrimmer_tf.models import resnet18
    keras.utils.set_random_seed(0)
    return resnet18(10, (64, 64, 3))


def _mobilenet_v2():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None,
                                          classes=5, alpha=0.35)


def _hub_resnet():
    zoo = load_tool("keras_hub_zoo")
    return zoo.nested(zoo.backbone("ResNetV1 bottleneck"))


def _toy_grouped():
    """Grouped conv (groups=4), depthwise written both ways, a concat."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    i = keras.Input((16, 16, 3))
    a = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same")(i)))
    g = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same", groups=4)(a)))
    d = L.DepthwiseConv2D(3, padding="same")(g)
    e = L.Conv2D(32, 3, padding="same", groups=32)(d)
    c = L.Conv2D(24, 1)(a)
    x = L.Concatenate()([e, c])
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(40, 1)(x)))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(5)(x), name="toy_grouped")


def _toy_split():
    """Depthwise, concat, a channel split (sections), a residual add."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    i = keras.Input((16, 16, 3))
    a = L.ReLU()(L.BatchNormalization()(L.Conv2D(48, 3, padding="same")(i)))
    p, q = keras.ops.split(a, 2, axis=-1)
    p = L.Conv2D(24, 3, padding="same")(p)
    q = L.DepthwiseConv2D(3, padding="same")(q)
    x = L.Concatenate()([p, q])
    x = L.Add()([x, L.Conv2D(48, 1)(a)])
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 3, strides=2, padding="same")(x)))
    x = L.SeparableConv2D(32, 3, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(5)(x), name="toy_split")


def _toy_concat():
    """Depthwise, a concat of a conv and a depthwise branch, a residual add
    (no sections: every concat input is a whole group)."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    i = keras.Input((16, 16, 3))
    a = L.ReLU()(L.BatchNormalization()(L.Conv2D(40, 3, padding="same")(i)))
    p = L.Conv2D(24, 3, padding="same")(a)
    q = L.DepthwiseConv2D(3, padding="same")(L.Conv2D(40, 1)(a))
    x = L.Concatenate()([p, q])
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(48, 3, strides=2, padding="same")(x)))
    x = L.Add()([x, L.Conv2D(48, 1, strides=2)(a)])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(5)(x), name="toy_concat")


MODELS = {"resnet18": _resnet18, "mobilenet_v2": _mobilenet_v2, "hub_resnet": _hub_resnet,
          "toy_grouped": _toy_grouped, "toy_split": _toy_split, "toy_concat": _toy_concat}


# ------------------------------------------------------------------ fake timing
def fake_layer(spec, n_in, n_out):
    """A blocked kernel: cost in 16-channel tiles, 0.01 µs per tile-pixel
    (a depthwise layer: its one width)."""
    pixels = math.prod(spec["in_shape"]) or 1
    if spec["class_name"].startswith("Depthwise"):
        n_in = 16
    return 1e-5 * pixels * math.ceil(n_in / 16) * math.ceil(n_out / 16)


def fake_model(model):
    """The same cost over every counted layer call of a whole model, times 1.1."""
    from remotetrimmer_tf.graph.functional_view import functional_view, graph_of
    from remotetrimmer_tf.cost import layer_calls, layer_macs
    total = 0.0
    for layer, _, i, o in layer_calls(graph_of(functional_view(model, check=False))):
        if layer_macs(layer, i, o):
            total += fake_layer({"in_shape": list(i[1:-1]), "class_name": type(layer).__name__},
                                i[-1], o[-1])
    return 1.1 * total


def latency_model(tmp):
    from remotetrimmer_tf.latency import LatencyModel
    return LatencyModel(layer_timer=fake_layer, model_timer=fake_model,
                        key={"m": "plan-recording"}, cache_dir=str(tmp))


# ------------------------------------------------------------------ cases
def _cases():
    out = {}
    ratio = [("local_r05", {"ratio": 0.5}),
             ("local_r03_round8_down_min4", {"ratio": 0.3, "round_to": 8,
                                             "round_mode": "down", "min_channels": 4}),
             ("global_r05", {"ratio": 0.5, "scope": "global"}),
             ("global_r06_round8", {"ratio": 0.6, "scope": "global", "round_to": 8})]
    budget = [("macs_local_040", {"target_macs": 0.40}),
              ("macs_global_050", {"target_macs": 0.50, "scope": "global"}),
              ("params_local_050", {"target_params": 0.50}),
              ("params_global_030_round8", {"target_params": 0.30, "scope": "global",
                                            "round_to": 8})]
    latency = [("latency_uniform_040", {"target_latency_ms": 0.40, "objective": "uniform"}),
               ("latency_importance_035", {"target_latency_ms": 0.35,
                                           "objective": "importance"}),
               ("latency_macs_030", {"target_latency_ms": 0.30, "objective": "macs"})]
    for model in ("resnet18", "mobilenet_v2", "hub_resnet", "toy_grouped", "toy_split"):
        kinds = ratio if model == "toy_grouped" else ratio + budget
        for name, kw in kinds:
            out[f"{model}/{name}"] = (model, "l1", kw)
    out["resnet18/slim_global_r05_ties"] = ("resnet18", "slim", {"ratio": 0.5, "scope": "global"})
    for model in ("resnet18", "toy_concat"):
        for name, kw in latency:
            out[f"{model}/{name}"] = (model, "l1", kw)
    out["mobilenet_v2/latency_uniform_050"] = ("mobilenet_v2", "l1",
                                               {"target_latency_ms": 0.5, "min_channels": 8})
    return out


CASES = _cases()


def _absolute(model, kw, tmp):
    """Fractions of the unpruned model -> absolute targets (+ the fake runtime)."""
    from remotetrimmer_tf.cost import count_macs, count_params
    kw = dict(kw)
    if "target_macs" in kw:
        kw["target_macs"] = int(count_macs(model) * kw["target_macs"])
    if "target_params" in kw:
        kw["target_params"] = int(count_params(model, trainable_only=True) * kw["target_params"])
    if "target_latency_ms" in kw:
        kw["target_latency_ms"] = fake_model(model) * kw["target_latency_ms"]
        kw["latency_model"] = latency_model(tmp)
    return kw


def pack(keep, sizes):
    """``{group: hex bitmask of the kept channels}``."""
    out = {}
    for gi, idx in sorted(keep.items()):
        mask = np.zeros(sizes[gi], bool)
        mask[np.asarray(idx, np.int64)] = True
        out[str(gi)] = f"{sizes[gi]}:" + np.packbits(mask).tobytes().hex()
    return out


_REPORT = ("kind", "target", "achieved", "unpruned", "min_reachable", "ratio", "evaluations",
           "predicted_ms", "measured_ms", "unpruned_ms", "macs", "widths", "rounds",
           "uniform_ratio", "met")


def run_case(name, tmp, built=None):
    """``{"plan": packed plan, "report": budget report fields}`` of one case."""
    from remotetrimmer_tf.pruner import Pruner
    model_name, importance, kw = CASES[name]
    built = built if built is not None else {}
    if model_name not in built:
        built[model_name] = MODELS[model_name]()
    model = built[model_name]
    pruner = Pruner(model, importance=importance, **_absolute(model, kw, tmp))
    keep = pruner.plan()
    sizes = {g.index: g.size for g in pruner.graph.groups}
    rep = pruner.budget_report or {}
    report = {k: rep[k] for k in _REPORT if k in rep}
    if "widths" in report:
        report["widths"] = {str(k): int(v) for k, v in report["widths"].items()}
    return {"plan": pack(keep, sizes), "report": report}


def digest(record):
    return hashlib.sha1(repr(sorted(record["plan"].items())).encode()).hexdigest()[:12]
