"""The registered ``Pruned*`` subclass of every keras-hub class.

For a keras-hub class ``X`` there is one subclass ``PrunedX``, registered with
Keras as ``remotetrimmer_tf>PrunedX``:

- backbones: ``PrunedResNetBackbone(PrunedBackbone, ResNetBackbone)``
  (``models.pruned_backbone``: its config is its graph);
- tasks: ``PrunedResNetImageClassifier(PrunedTask, ResNetImageClassifier)``
  (``models.pruned_task``) with ``backbone_cls = PrunedResNetBackbone``;
- other classes tied to a backbone (preprocessors, image converters,
  tokenizers: anything with a ``backbone_cls``): a plain subclass with
  ``backbone_cls`` set to the pruned backbone class.

keras-hub matches a preset's backbone class to a task or preprocessor class
through ``backbone_cls``, so ``keras_hub.models.ImageClassifier.from_preset(dir)``,
``ResNetImageClassifier.from_preset(dir)`` and
``ImageClassifierPreprocessor.from_preset(dir)`` all find these. They are
made for every keras-hub class as soon as both ``remotetrimmer_tf`` and
``keras_hub`` are imported (``_keras_registration``), so a fresh process loads
a pruned preset after ``import remotetrimmer_tf``; call
:func:`register_pruned_classes` again after defining your own Backbone
subclass. keras-hub is imported only when a function here runs.

Example:
    >>> import keras_hub
    >>> cls = pruned_class(keras_hub.models.ResNetBackbone)
    >>> cls.__name__, issubclass(cls, keras_hub.models.ResNetBackbone)
    ('PrunedResNetBackbone', True)
    >>> pruned_class(keras_hub.models.ResNetImageClassifier).backbone_cls is cls
    True
"""

from __future__ import annotations

import keras

from remotetrimmer_tf.models.pruned_backbone import PrunedBackbone
from remotetrimmer_tf.models.pruned_task import PrunedTask

__all__ = ["pruned_class", "register_pruned_classes", "is_pruned_class"]

PACKAGE = "remotetrimmer_tf"
_PRUNED = {}          # source class -> its pruned subclass


def _hub():
    import keras_hub
    return keras_hub


def is_pruned_class(cls) -> bool:
    """True for a class made by :func:`pruned_class`."""
    return isinstance(cls, type) and "_pruned_source" in vars(cls)


def _tied_to_backbone(cls):
    bb = getattr(cls, "backbone_cls", None)
    return isinstance(bb, type) and issubclass(bb, _hub().models.Backbone)


def _short_name(cls):
    name = keras.saving.get_registered_name(cls)
    pkg, _, short = name.rpartition(">")
    return short if pkg in ("", "keras_hub") else f"{pkg}_{short}".replace(">", "_")


def _make(cls):
    models = _hub().models
    name = "Pruned" + _short_name(cls)
    attrs = {"__module__": __name__, "_pruned_source": cls,
             "__doc__": f"A pruned {cls.__name__} (remotetrimmer_tf): see "
                        "remotetrimmer_tf.models.pruned_classes."}
    if issubclass(cls, models.Backbone):
        bases = (PrunedBackbone, cls)
    else:
        bases = (PrunedTask, cls) if issubclass(cls, models.Task) else (cls,)
        attrs["backbone_cls"] = pruned_class(cls.backbone_cls)
    new = type(name, bases, attrs)
    return keras.saving.register_keras_serializable(package=PACKAGE, name=name)(new)


def pruned_class(cls):
    """The registered ``Pruned*`` subclass of a keras-hub class (made once).

    Args:
        cls: a keras-hub ``Backbone`` subclass, or a class with a
            ``backbone_cls`` (task, preprocessor, converter, tokenizer). A
            class that already is a pruned one is returned as it is.

    Returns:
        The subclass; ``None`` for a class tied to no backbone (the base
        ``ImageClassifier``, a plain Keras layer).
    """
    if cls is None or is_pruned_class(cls):
        return cls
    got = _PRUNED.get(cls)
    if got is None:
        if not issubclass(cls, _hub().models.Backbone) and not _tied_to_backbone(cls):
            return None
        got = _PRUNED[cls] = _make(cls)
    return got


def register_pruned_classes():
    """Make and register the ``Pruned*`` class of every registered keras-hub
    Backbone and every class tied to one (call it after registering your own
    Backbone subclass, before ``from_preset`` of a pruned preset of it).

    Returns:
        How many pruned classes exist.
    """
    base = _hub().models.Backbone
    for obj in set(keras.saving.get_custom_objects().values()):
        if not isinstance(obj, type) or is_pruned_class(obj):
            continue
        if (issubclass(obj, base) and obj is not base) or _tied_to_backbone(obj):
            pruned_class(obj)
    return len(_PRUNED)
