"""keras-hub layers that are not composites (registered by name: keras-hub is
never imported here). Composite keras-hub blocks (MBConv, FusedMBConv,
DepthwiseConvBlock, HGNetV2 stages...) need no handler: ``functional_view``
inlines them into their sub-layers and ops."""

from __future__ import annotations

from .passthrough import PassThroughHandler
from .registry import register_handler

# scale * x + bias with two scalar weights: channel-wise, nothing to slice
register_handler("keras_hub.src.models.hgnetv2.hgnetv2_layers.HGNetV2LearnableAffineBlock",
                 PassThroughHandler())
