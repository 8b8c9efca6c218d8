"""VGG16 with batch normalisation (Simonyan & Zisserman, 2015), optional SE gates."""
import keras
from keras import layers

from remotetrimmer_tf.models.resnet import _BN, _CONV_INIT, _DENSE_INIT
from remotetrimmer_tf.models.se import SqueezeExcite

__all__ = ["vgg16_bn"]

_CFG = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16_bn(  # long: the published topology; mostly docstring
        num_classes=10, input_shape=(64, 64, 3), se=False, reduction=16,
             hidden_units=512, dropout=0.5, name=None):
    """VGG16-BN for small scene images, returning logits; optional SE gates.

    Features: torchvision's 13 ``conv3×3 → BN → ReLU`` layers in five blocks
    (64, 64 | 128, 128 | 256 ×3 | 512 ×3 | 512 ×3), each block ended by a
    2×2 max-pool. Convs have no bias (a bias before BN is redundant; torchvision
    keeps one, which only adds 4,224 dead parameters).

    Classifier: torchvision's 7×7×512 → 4096 → 4096 head (~120 M parameters)
    is meant for 224×224 ImageNet inputs; at 64×64 the features are 2×2×512.
    We use the compact head common to small-input VGGs (CIFAR-style):
    ``GlobalAveragePooling → Dense(hidden_units) → ReLU → Dropout(dropout) →
    Dense(num_classes)``. ``fc1`` is a prunable channel group; the logits
    layer ``fc`` is never pruned. ``hidden_units=0`` gives ``GAP → fc``.

    With ``se=True`` a :class:`SqueezeExcite` gate follows every BN+ReLU
    (13 gates, ``block{b}_se{k}``).

    Layer names: ``block{b}_{conv,bn,relu,se}{k}``, ``block{b}_pool``,
    ``avgpool``, ``fc1``, ``fc1_relu``, ``dropout``, ``fc``.

    Args:
        num_classes: Number of output logits.
        input_shape: ``(H, W, C)`` channels-last, H and W divisible by 32.
        se: Insert squeeze-and-excite gates (for CAP).
        reduction: SE bottleneck reduction (16 as published).
        hidden_units: Width of the hidden classifier layer (0: none).
        dropout: Dropout rate of the hidden classifier layer.
        name: Model name (default ``"vgg16_bn"`` or ``"vgg16_bn_se"``).

    Returns:
        A functional ``keras.Model``.

    Example:

    ```python
    model = vgg16_bn(10, (64, 64, 3), se=True)
    ```
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"vgg16_bn: num_classes must be a positive int, got {num_classes!r}.")
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            f"vgg16_bn: input_shape must be (H, W, C) channels-last, got {input_shape!r}.")
    inputs = keras.Input(tuple(input_shape), name="input")
    x = inputs
    for b, widths in enumerate(_CFG, start=1):
        for k, filters in enumerate(widths, start=1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                              kernel_initializer=_CONV_INIT,
                              name=f"block{b}_conv{k}")(x)
            x = layers.BatchNormalization(**_BN, name=f"block{b}_bn{k}")(x)
            x = layers.ReLU(name=f"block{b}_relu{k}")(x)
            if se:
                x = SqueezeExcite(reduction, name=f"block{b}_se{k}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    if hidden_units:
        x = layers.Dense(hidden_units, kernel_initializer=_DENSE_INIT,
                         bias_initializer=_DENSE_INIT, name="fc1")(x)
        x = layers.ReLU(name="fc1_relu")(x)
        if dropout:
            x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=_DENSE_INIT,
                           bias_initializer=_DENSE_INIT, name="fc")(x)
    return keras.Model(inputs, outputs,
                       name=name or ("vgg16_bn_se" if se else "vgg16_bn"))
