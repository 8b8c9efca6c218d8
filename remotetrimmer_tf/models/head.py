"""Replace a model's classifier for another class count.

``replace_head(model, num_classes)`` returns a copy of a functional model
whose classifier — the last ``Dense`` on the path to the output, possibly
followed by activation / softmax / dropout layers — has ``num_classes``
units and freshly initialised weights; every other layer keeps its weights.
The input model is not modified.

Example:

```python
import keras
from remotetrimmer_tf.models import replace_head

base = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3),
                                      classes=10)
model = replace_head(base, 4)        # same backbone, a fresh 4-way head
```
"""
import copy

import keras

from remotetrimmer_tf.utils.keras_json import map_keras_tensors
from remotetrimmer_tf.utils.keras_models import custom_objects

_PASS = (keras.layers.Activation, keras.layers.Softmax, keras.layers.Dropout,
         keras.layers.ReLU, keras.layers.Identity)


def output_classes(model):
    """The model's output width (last axis of its first output), or None."""
    try:
        return int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError):
        return None


def find_classifier(model):
    """The name of the classifier ``Dense`` layer of a functional model.

    Walks back from the (single) output through activation, softmax,
    dropout and identity layers.

    Raises:
        ValueError: the model has several outputs, or no Dense layer there.
    """
    if len(getattr(model, "outputs", None) or ()) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(model.outputs or ())} outputs; "
            "replacing the head needs a single-output classifier")
    tensor = model.outputs[0]
    while True:
        layer = tensor._keras_history[0]
        if isinstance(layer, keras.layers.Dense):
            return layer.name
        if isinstance(layer, _PASS) and len(layer._inbound_nodes) == 1:
            tensor = layer._inbound_nodes[0].input_tensors[0]
            continue
        raise ValueError(
            f"model {model.name!r}: the output comes from {layer.name!r} "
            f"({type(layer).__name__}), not from a Dense classifier; replace "
            "the head yourself or end the model with a Dense layer")


def replace_head(model, num_classes, seed=None):
    """Copy of ``model`` with a fresh ``num_classes``-unit classifier.

    Args:
        model: a functional ``keras.Model`` ending in a Dense classifier.
        num_classes: units of the new head.
        seed: seed of the new head's initialiser (None: Keras' default).

    Returns:
        A new ``keras.Model`` (same layer names; the head keeps its name,
        activation and bias setting).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    head = find_classifier(model)
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        name = entry.get("name") or entry["config"]["name"]
        if name == head:
            entry["config"]["units"] = num_classes
            init = {"module": "keras.initializers", "class_name": "GlorotUniform",
                    "config": {"seed": seed}, "registered_name": None}
            entry["config"]["kernel_initializer"] = init
            entry.pop("build_config", None)
        elif entry.get("inbound_nodes"):
            entry["inbound_nodes"] = _resize_refs(entry["inbound_nodes"], head, num_classes)
    cls = keras.Sequential if isinstance(model, keras.Sequential) else keras.Model
    new = cls.from_config(config, custom_objects=custom_objects(model))
    for layer in new.layers:
        if layer.name != head:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return new


def _resize_refs(obj, head, units):
    """Copy of ``obj`` whose Keras-tensor references to the head carry the
    new width."""
    def resize(t):
        shape = t["config"].get("shape")
        if not shape or t["config"]["keras_history"][0] != head:
            return t
        return {**t, "config": {**t["config"], "shape": list(shape[:-1]) + [units]}}
    return map_keras_tensors(obj, resize)
