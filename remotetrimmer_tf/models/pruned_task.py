"""``PrunedTask``: a keras-hub task around a pruned backbone, from its graph.

A task's constructor builds its head from its config (``num_classes``,
``pooling``...). When pruning narrowed a layer of the head itself
(``MobileNetImageClassifier``'s ``classifier_conv`` of ``num_features``
channels, a VGG classifier's hidden Dense), that config no longer describes
the head. The registered ``Pruned*`` task classes
(``PrunedMobileNetImageClassifier(PrunedTask, MobileNetImageClassifier)``,
made by ``models.pruned_classes``) then take ``graph=``: the task's
functional graph with the backbone as a slot, rebuilt around the backbone
object, so ``save_to_preset`` / ``from_preset`` keep the pruned head. Without
``graph=`` they are the task class itself (its own ``__init__``).

Example:
    >>> thin = Pruner(task, importance="l1", ratio=0.5).prune()  # doctest: +SKIP
    >>> isinstance(thin, type(task))                             # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy

import keras

__all__ = ["PrunedTask", "backbone_slot", "input_names"]

PACKAGE = "remotetrimmer_tf"


def input_names(backbone):
    """Names of the backbone's input layers."""
    return tuple(t._keras_history[0].name for t in keras.tree.flatten(backbone.inputs))


def _task_base():
    import keras_hub
    return keras_hub.models.Task


def _slot(kind, name, inbound_nodes):
    return {"module": None, "class_name": kind, "registered_name": f"{PACKAGE}>{kind}",
            "config": {"name": name}, "name": name, "inbound_nodes": inbound_nodes}


def backbone_slot(functional, backbone_name, input_names=()):
    """``functional`` (a task's graph config) with its nested backbone entry
    replaced by a slot that ``PrunedTask`` fills with the backbone object, and
    the inputs named ``input_names`` (the backbone's) by the backbone's own
    inputs (a keras-hub task reads ``backbone.input``)."""
    functional = copy.deepcopy(functional)
    layers = functional["layers"]
    found = False
    for i, entry in enumerate(layers):
        if entry.get("name") == backbone_name:
            layers[i] = _slot("BackboneSlot", backbone_name, entry["inbound_nodes"])
            found = True
        elif entry.get("class_name") == "InputLayer" and entry.get("name") in input_names:
            layers[i] = _slot("InputSlot", entry["name"], [])
    if not found:
        raise ValueError(f"the task's graph has no layer '{backbone_name}' (its backbone)")
    return functional


def _build_graph(functional, backbone):
    inputs = {t._keras_history[0].name: t._keras_history[0]
              for t in keras.tree.flatten(backbone.inputs)}

    class BackboneSlot:
        @classmethod
        def from_config(cls, config):
            return backbone

    class InputSlot:
        @classmethod
        def from_config(cls, config):
            return inputs[config["name"]]

    scope = {f"{PACKAGE}>BackboneSlot": BackboneSlot, f"{PACKAGE}>InputSlot": InputSlot}
    with keras.saving.custom_object_scope(scope):
        graph = keras.Model.from_config(copy.deepcopy(functional))
    return graph.input, graph.output


class PrunedTask:
    """Mixin for a keras-hub task subclass that may be built from its graph.

    Args:
        graph: the task's functional config with the backbone as a slot
            (:func:`backbone_slot`); ``None``: the task's own constructor
            runs with the other arguments.
        attributes: plain values of the source task's config (``num_classes``,
            ``activation``...), set before ``compile`` reads them; a value that
            described a pruned width (``num_features``) is the source's, the
            graph is what the task computes.
        backbone, preprocessor, name...: as for the task.

    Example:
        >>> type(thin).from_config(thin.get_config())              # doctest: +SKIP
    """

    def __init__(self, *args, graph=None, attributes=None, **kwargs):
        if graph is None:
            super().__init__(*args, **kwargs)
            return
        self.backbone = kwargs.pop("backbone")
        self.preprocessor = kwargs.pop("preprocessor", None)
        for key, value in (attributes or {}).items():
            setattr(self, key, value)
        inputs, outputs = _build_graph(graph, self.backbone)
        _task_base().__init__(self, inputs=inputs, outputs=outputs, **kwargs)
        self.pruned_attributes = dict(attributes or {})

    def get_config(self):
        if getattr(self, "pruned_attributes", None) is None:
            return super().get_config()
        config = _task_base().get_config(self)
        helper = keras.Model(self.input, self.output, name=self.name)
        graph = backbone_slot(helper.get_config(), self.backbone.name,
                              input_names(self.backbone))
        config.update({"graph": graph,
                       "attributes": dict(self.pruned_attributes)})
        return config
