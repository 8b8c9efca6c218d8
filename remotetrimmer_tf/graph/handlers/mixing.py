"""Keras layers that read all channels together: known, frozen with a reason.

A layer without a handler is refused (or frozen with ``unknown="freeze"``).
These built-in layers are known to combine the channels, so their channels
are frozen with the reason at once, and the rest of the model still prunes
without ``unknown="freeze"``: attention over the channel axis (``Attention``,
``AdditiveAttention``, ``Dot``), an L2 norm over the channels
(``UnitNormalization``), wrappers that own weights of their own
(``SpectralNormalization``), and image preprocessing that treats the image's
channels as a whole (colour jitter, grayscale, auto-contrast, mix-ups...).
``RepeatVector`` only repeats its input: its channels pass through.
"""
from __future__ import annotations

from keras import layers

from .registry import LayerHandler, register_handler


class MixingHandler(LayerHandler):
    """Frozen: ``why`` names what the layer does across channels."""

    def __init__(self, why="combines the channels"):
        self.why = why

    def propagate(self, node, ctx):
        return ctx.opaque(node, f"layer '{node.name}' ({type(node.layer).__name__}) "
                                f"{self.why}")


class UnitNormalizationHandler(LayerHandler):
    """L2 normalisation: over the channel axis it mixes; over others it passes."""

    def propagate(self, node, ctx):
        rank = len(node.in_shapes[0])
        axis = getattr(node.layer, "axis", -1)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if all(node.axis(a) % rank != rank - 1 for a in axes):
            return [node.in_maps[0]]
        return ctx.opaque(node, f"layer '{node.name}' (UnitNormalization) divides by "
                                "the norm over the channels")


class RepeatVectorHandler(LayerHandler):
    """``(N, C) -> (N, n, C)``: channel c stays channel c."""

    def propagate(self, node, ctx):
        return [node.in_maps[0]]


_MIXING = {
    "Attention": "scores queries against keys over the channel axis",
    "AdditiveAttention": "scores queries against keys over the channel axis",
    "Dot": "takes dot products over an axis",
    "SpectralNormalization": "normalises its wrapped kernel by its spectral norm",
}
_IMAGE = ("AugMix", "RandAugment", "AutoContrast", "CutMix", "MixUp", "RandomColorJitter",
          "RandomColorDegeneration", "RandomElasticTransform", "RandomErasing",
          "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert",
          "RandomPerspective", "RandomPosterization", "RandomSaturation",
          "RandomSharpness", "RandomShear", "Solarization", "Equalization",
          "ContrastLimitedAdaptiveHistogramEqualization")

for _n, _why in _MIXING.items():
    if hasattr(layers, _n):
        register_handler(getattr(layers, _n), MixingHandler(_why))
for _n in _IMAGE:
    if hasattr(layers, _n):
        register_handler(getattr(layers, _n),
                         MixingHandler("is image preprocessing over the channels as a whole"))
register_handler(layers.UnitNormalization, UnitNormalizationHandler())
register_handler(layers.RepeatVector, RepeatVectorHandler())
