"""The sweep over every public class of ``keras.layers`` (tools/layer_sweep.py):
each one it can build in a tiny CNN context prunes exactly or is refused in
one line naming the layer, also with ``unknown="freeze"``; never a crash from
inside Keras / TensorFlow, never a model that fails when called."""

import keras
import pytest
from helpers import load_tool

sweep = load_tool("layer_sweep")

# one representative per family in the fast tier; the whole of keras.layers is slow
FAST = ("Rescaling", "Activation", "LSTM", "Bidirectional", "Lambda", "Conv2D", "Dense",
        "Normalization", "PReLU", "Concatenate", "Add")


def _check(rows):
    bad = [r for r in rows if r["result"] in ("BROKEN", "CRASH")]
    assert not bad, "\n".join(f"{r['layer']} {r['variant']}: {r['result']} {r['detail']}"
                              for r in bad)
    for r in rows:
        if r["result"] == "exact":
            assert r.get("freeze") in ("exact", "refused"), r
        if r["result"] == "refused":
            assert "'" in r["detail"] and "\n" not in r["detail"], r


def test_representative_layers_prune_exactly_or_refuse():
    rows = sweep.sweep(keras, only=set(FAST))
    assert {r["layer"] for r in rows} == set(FAST)
    _check(rows)
    exact = {(r["layer"], r["variant"]) for r in rows if r["result"] == "exact"}
    for case in [("Rescaling", "per-channel"), ("Activation", "lambda"),
                 ("Activation", "partial"), ("LSTM", ""), ("Lambda", "scale"),
                 ("Dense", "lora"), ("Conv2D", "grouped")]:
        assert case in exact, case


@pytest.mark.slow
def test_every_keras_layer_prunes_exactly_or_refuses():
    rows = sweep.sweep(keras)
    _check(rows)
    unbuildable = [r for r in rows if r["result"] == "not buildable"]
    assert len(unbuildable) < len(rows) / 3
