"""``PrunedBackbone``: a keras-hub Backbone whose config is its functional graph.

A pruned keras-hub backbone can no longer be described by its constructor
(``ResNetBackbone(stackwise_num_filters=[64, 128, ...])`` gives every block
the same width; pruning gives each layer its own). ``PrunedBackbone`` is the
mixin of the registered ``Pruned*`` backbone classes
(``PrunedResNetBackbone(PrunedBackbone, ResNetBackbone)``, made by
``models.pruned_classes``): an instance *is* a ``ResNetBackbone``
(``isinstance`` holds, ``save_to_preset`` works) whose config is
``{"functional": <Keras functional config>, "pyramid_outputs": {...},
"attributes": {...}}`` and whose ``__init__`` rebuilds that graph instead of
running ``ResNetBackbone.__init__``. keras-hub is imported only when one is
built.

Example:
    >>> import keras_hub                                          # doctest: +SKIP
    >>> thin = Pruner(backbone, importance="l1", ratio=0.5).prune()  # doctest: +SKIP
    >>> isinstance(thin, type(backbone)), isinstance(thin, PrunedBackbone)  # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import copy

import keras

__all__ = ["PrunedBackbone", "CARRIED_ATTRIBUTES"]

# plain values copied from the source backbone: what tasks read off a backbone
# (``ImageClassifier`` reads ``data_format``); never a width
CARRIED_ATTRIBUTES = ("data_format", "image_shape", "stage_names", "out_features")


def _hub_base(name):
    import keras_hub
    return getattr(keras_hub.models, name)


def _build_graph(functional, pyramid_refs):
    """``(inputs, outputs, pyramid tensors)`` of a functional config (the
    pyramid outputs given as ``[layer name, node index, tensor index]``)."""
    cfg = copy.deepcopy(functional)
    cfg["output_layers"] = {"o": cfg["output_layers"], "p": dict(pyramid_refs)}
    graph = keras.Model.from_config(cfg)
    return graph.input, graph.output["o"], dict(graph.output["p"])


class PrunedBackbone:
    """Mixin for a keras-hub ``Backbone`` subclass whose config is its graph.

    Never used alone: ``models.pruned_classes.pruned_class`` puts it before
    a keras-hub backbone class. ``__init__`` skips the source class'
    constructor, builds the functional graph from ``functional`` (a Keras
    functional config) and runs ``keras_hub.models.Backbone.__init__`` on it.

    Args:
        functional: the graph (``keras.Model(...).get_config()``).
        pyramid_outputs: ``{"P2": [layer name, node index, tensor index]}``:
            the tensors behind ``pyramid_outputs`` (feature-pyramid backbones).
        attributes: plain attributes of the source backbone that tasks read
            (``data_format``, ``image_shape``...).
        source_class: the registered name of the class that was pruned.
        dtype, name, trainable: as for any keras-hub ``Backbone``.

    Example:
        >>> cfg = thin.get_config()                               # doctest: +SKIP
        >>> type(thin).from_config(cfg)                           # doctest: +SKIP
    """

    def __init__(self, functional, pyramid_outputs=None, attributes=None,
                 source_class=None, dtype=None, **kwargs):
        inputs, outputs, pyramid = _build_graph(functional, pyramid_outputs or {})
        _hub_base("Backbone").__init__(self, inputs=inputs, outputs=outputs,
                                       dtype=dtype, **kwargs)
        self.source_class = source_class
        for key, value in (attributes or {}).items():
            setattr(self, key, tuple(value) if isinstance(value, list) else value)
        if isinstance(self, _hub_base("FeaturePyramidBackbone")):
            self.pyramid_outputs = pyramid

    def get_config(self):
        config = _hub_base("Backbone").get_config(self)
        pyramid = dict(getattr(self, "pyramid_outputs", None) or {})
        helper = keras.Model(self.input, {"o": self.output, "p": pyramid}, name=self.name)
        functional = helper.get_config()
        refs = functional["output_layers"]
        functional["output_layers"] = refs["o"]
        attributes = {k: getattr(self, k) for k in CARRIED_ATTRIBUTES
                      if getattr(self, k, None) is not None}
        config.update({"functional": functional, "pyramid_outputs": refs["p"],
                       "attributes": attributes,
                       "source_class": self.source_class})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.get(config["dtype"])
        return cls(**config)
