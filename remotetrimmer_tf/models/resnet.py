"""ResNet-18 (He et al., 2016) in the torchvision topology, with optional SE gates."""
import keras
from keras import layers

from remotetrimmer_tf.models.se import SqueezeExcite

__all__ = ["resnet18"]

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") for convs,
# uniform(+-1/sqrt(fan_in)) for the classifier, BN momentum 0.1 / eps 1e-5.
_CONV_INIT = {"class_name": "VarianceScaling",
              "config": {"scale": 2.0, "mode": "fan_out",
                         "distribution": "untruncated_normal"}}
_DENSE_INIT = {"class_name": "VarianceScaling",
               "config": {"scale": 1.0 / 3.0, "mode": "fan_in",
                          "distribution": "uniform"}}
_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _conv(x, filters, kernel, stride, name):
    """torchvision-exact conv: symmetric zero padding ``kernel // 2``."""
    pad = kernel // 2
    if stride == 1 or pad == 0:
        padding = "same" if pad else "valid"
    else:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding,
                         use_bias=False, kernel_initializer=_CONV_INIT,
                         name=name)(x)


def _basic_block(x, filters, stride, name, se, reduction):
    shortcut = x
    y = _conv(x, filters, 3, stride, f"{name}_conv1")
    y = layers.BatchNormalization(**_BN, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    if se:
        y = SqueezeExcite(reduction, name=f"{name}_se1")(y)
    y = _conv(y, filters, 3, 1, f"{name}_conv2")
    # zero-initialised last BN: every residual branch starts as the identity
    y = layers.BatchNormalization(**_BN, gamma_initializer="zeros",
                                  name=f"{name}_bn2")(y)
    if se:
        y = SqueezeExcite(reduction, name=f"{name}_se2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 kernel_initializer=_CONV_INIT,
                                 name=f"{name}_down_conv")(x)
        shortcut = layers.BatchNormalization(**_BN, name=f"{name}_down_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet18(  # long: the published topology; mostly docstring
        num_classes=10, input_shape=(64, 64, 3), se=False, reduction=16,
             name=None):
    """ResNet-18 as in torchvision, returning logits; optional SE gates.

    Topology: 7×7 stride-2 stem conv → BN → ReLU → 3×3 stride-2 max-pool,
    four stages of two basic blocks (64, 128, 256, 512 channels; stages 2-4
    start with stride 2 and a 1×1 conv + BN shortcut), global average pool,
    ``Dense(num_classes)`` named ``fc`` (logits). Convs have no bias; paddings
    are torchvision's (symmetric), so weights port one to one. The last BN of
    every block (``*_bn2``) starts with γ = 0.

    With ``se=True`` a :class:`SqueezeExcite` gate sits where the published
    RemoteTrimmer code puts one: after the stem's BN+ReLU (``stem_se``), after
    each block's bn1+ReLU (``*_se1``) and after each block's bn2, before the
    residual add (``*_se2``); the shortcut BNs have none. For 10 classes at
    64×64 this adds exactly 178,740 parameters (11,181,642 → 11,360,382).

    Layer names: ``stem_conv, stem_bn, stem_relu, stem_se, stem_pool``,
    ``stage{s}_block{b}_{conv1,bn1,relu1,se1,conv2,bn2,se2,down_conv,down_bn,
    add,out}``, ``avgpool``, ``fc``.

    Args:
        num_classes: Number of output logits.
        input_shape: ``(H, W, C)`` channels-last input shape.
        se: Insert squeeze-and-excite gates (for CAP).
        reduction: SE bottleneck reduction (16 as published).
        name: Model name (default ``"resnet18"`` or ``"resnet18_se"``).

    Returns:
        A functional ``keras.Model``.

    Example:

    ```python
    model = resnet18(10, (64, 64, 3), se=True)
    logits = model(images)   # (batch, 10)
    ```
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"resnet18: num_classes must be a positive int, got {num_classes!r}.")
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            f"resnet18: input_shape must be (H, W, C) channels-last, got {input_shape!r}.")
    inputs = keras.Input(tuple(input_shape), name="input")
    x = _conv(inputs, 64, 7, 2, "stem_conv")
    x = layers.BatchNormalization(**_BN, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    if se:
        x = SqueezeExcite(reduction, name="stem_se")(x)
    # torchvision pads the max-pool with -inf; after ReLU (and the SE gate)
    # every value is >= 0, so zero padding gives the same result.
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in (1, 2):
            stride = 2 if (stage > 1 and block == 1) else 1
            x = _basic_block(x, filters, stride, f"stage{stage}_block{block}",
                             se, reduction)
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=_DENSE_INIT,
                           bias_initializer=_DENSE_INIT, name="fc")(x)
    return keras.Model(inputs, outputs,
                       name=name or ("resnet18_se" if se else "resnet18"))
