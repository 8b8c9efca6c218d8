"""Architectures by name: our backbones and every keras.applications CNN.

``build(name, num_classes, input_shape)`` returns a fresh functional model
producing logits for the data's input size, channels and classes:

- ``resnet18`` / ``vgg16_bn``: ours (optional SE gates, ``se=True``);
- any ``keras.applications`` CNN by its class name (``MobileNetV2``,
  ``EfficientNetB0``, ``ResNet50``, ``ConvNeXtTiny``, ...), built with
  ``weights=None`` (never downloaded), ``include_top=True``,
  ``classifier_activation=None`` (logits) and, where the builder has the
  option, ``include_preprocessing=False`` (our loaders normalise), with
  BatchNorm momentum 0.99 (`BN_MOMENTUM`; keras.applications' 0.999 leaves
  the moving statistics of a short training from scratch unusable). Pass
  ``weights=PATH`` to load a local weights file (``.weights.h5``, or a
  ``.keras`` model whose weights are copied layer by layer).

The name list is static (`KERAS_APPLICATIONS`, checked against Keras by the
tests), so validating a name never imports Keras or TensorFlow.

Example:

```python
from remotetrimmer_tf.models import arch_registry

model = arch_registry.build("MobileNetV2", num_classes=4, input_shape=(64, 64, 3))
arch_registry.check_name("MobilenetV2")   # ValueError: did you mean MobileNetV2?
```
"""
import difflib

OURS = ("resnet18", "vgg16_bn")
KERAS_APPLICATIONS = (
    "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtSmall", "ConvNeXtTiny",
    "ConvNeXtXLarge", "DenseNet121", "DenseNet169", "DenseNet201",
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3",
    "EfficientNetB4", "EfficientNetB5", "EfficientNetB6", "EfficientNetB7",
    "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2",
    "EfficientNetV2B3", "EfficientNetV2L", "EfficientNetV2M", "EfficientNetV2S",
    "InceptionResNetV2", "InceptionV3", "MobileNet", "MobileNetV2",
    "MobileNetV3Large", "MobileNetV3Small", "NASNetLarge", "NASNetMobile",
    "ResNet101", "ResNet101V2", "ResNet152", "ResNet152V2", "ResNet50",
    "ResNet50V2", "VGG16", "VGG19", "Xception")
# Smallest input side keras.applications accepts without weights.
MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71,
            "NASNetLarge": 32, "NASNetMobile": 32}
ARCHS = OURS + KERAS_APPLICATIONS
# keras.applications builds its BatchNorms with momentum 0.999 (tuned for long
# ImageNet runs): after a short training from scratch their moving statistics
# still hold much of their initial values and inference-mode accuracy is at
# chance (measured: MobileNetV2, UC Merced 64x64, 30 epochs -> 4.8% test
# accuracy at 71% train accuracy). Models built here use Keras' default.
BN_MOMENTUM = 0.99


def names():
    """Every accepted architecture name."""
    return list(ARCHS)


def check_name(name):
    """Returns the canonical name (case-insensitive match) or raises.

    Raises:
        ValueError: one line with a did-you-mean suggestion.
    """
    if name in ARCHS:
        return name
    lower = {a.lower(): a for a in ARCHS}
    if isinstance(name, str) and name.lower() in lower:
        return lower[name.lower()]
    close = difflib.get_close_matches(str(name), ARCHS, n=1, cutoff=0.5) or \
        difflib.get_close_matches(str(name).lower(), list(lower), n=1, cutoff=0.5)
    hint = f"did you mean {lower.get(close[0], close[0])}? " if close else ""
    raise ValueError(
        f"unknown architecture {name!r}; {hint}use resnet18, vgg16_bn or a "
        "keras.applications CNN name (e.g. MobileNetV2, EfficientNetB0, ResNet50)")


def build(name, num_classes, input_shape, se=False, weights=None):
    """A fresh model of architecture ``name`` producing logits.

    Args:
        name: see `names()`.
        num_classes: output units.
        input_shape: ``(H, W, C)``; any channel count.
        se: SE gates (ours only; for keras.applications CNNs use
            `remotetrimmer_tf.models.insert_se_gates`).
        weights: None, or a local file: ``.weights.h5`` (``load_weights``),
            ``.keras`` (weights copied for every layer of the same name
            and shapes; a mismatch is an error naming the layer) or ``.npz``
            (`utils.npz_weights`: every weight by layer name, any float
            dtype, e.g. float16).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: unknown name, input too small, unusable weights file.
    """
    import inspect
    import keras
    name = check_name(name)
    input_shape = tuple(int(v) for v in input_shape)
    if name in OURS:
        from remotetrimmer_tf import models
        fn = {"resnet18": models.resnet18, "vgg16_bn": models.vgg16_bn}[name]
        model = fn(num_classes=int(num_classes), input_shape=input_shape,
                   se=bool(se))
    else:
        low = MIN_SIZE.get(name, 32)
        if min(input_shape[:2]) < low:
            raise ValueError(
                f"{name} needs inputs of at least {low}x{low}, got "
                f"{input_shape[0]}x{input_shape[1]}; raise "
                "--config.data.image_size or pick another architecture")
        fn = getattr(keras.applications, name)
        kwargs = dict(include_top=True, weights=None, input_shape=input_shape,
                      classes=int(num_classes))
        params = inspect.signature(fn).parameters
        if "classifier_activation" in params:
            kwargs["classifier_activation"] = None
        if "include_preprocessing" in params:
            kwargs["include_preprocessing"] = False
        model = fn(**kwargs)
        set_bn_momentum(model, BN_MOMENTUM)
    if weights:
        load_local_weights(model, weights)
    return model


def set_bn_momentum(model, momentum):
    """Sets the momentum of every BatchNormalization of ``model`` (in place;
    saved with the model's config)."""
    import keras
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
    return model


def load_local_weights(model, path):
    """Loads a local weights file into ``model`` (see `build`)."""
    import os
    import keras
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise ValueError(f"--config.model.weights={path}: no such file; pass a "
                         ".weights.h5, .keras or .npz file")
    if path.endswith(".npz"):   # utils.npz_weights (e.g. the float16 demo model)
        from remotetrimmer_tf.utils.npz_weights import load_weights_npz
        try:
            return load_weights_npz(model, path)
        except (ValueError, OSError) as e:
            raise ValueError(f"--config.model.weights={e}") from None
    if path.endswith(".keras"):
        src = keras.saving.load_model(path, compile=False)
        for layer in model.layers:
            try:
                other = src.get_layer(layer.name)
            except ValueError:
                continue
            w = other.get_weights()
            if [tuple(a.shape) for a in w] != [tuple(v.shape) for v in layer.weights]:
                raise ValueError(
                    f"--config.model.weights={path}: layer {layer.name!r} has "
                    "weights of other shapes than the built model; pass "
                    "weights of the same architecture and data shape")
            layer.set_weights(w)
        return model
    try:
        model.load_weights(path)
    except Exception as e:  # noqa: BLE001 - any loader failure is bad input
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ValueError(
            f"--config.model.weights={path} does not fit the built model "
            f"({type(e).__name__}: {msg}); pass weights of the same "
            "architecture, classes and input shape") from None
    return model
