"""Backbones with optional squeeze-and-excite gates, and the SE gate layer.

``resnet18`` and ``vgg16_bn`` return functional Keras models producing logits;
``SqueezeExcite`` is the serializable gate whose mean attention CAP folds into
the preceding BatchNormalization.
"""
from remotetrimmer_tf.models.resnet import resnet18
from remotetrimmer_tf.models.se import SqueezeExcite
from remotetrimmer_tf.models.vgg import vgg16_bn
from remotetrimmer_tf.models import se_handler  # noqa: F401  (registers the graph handler)
from remotetrimmer_tf.models.arch_registry import build as build_arch
from remotetrimmer_tf.models.head import replace_head
from remotetrimmer_tf.models.se_insert import insert_se_gates

__all__ = ["resnet18", "vgg16_bn", "SqueezeExcite", "build_arch", "replace_head",
           "insert_se_gates"]
