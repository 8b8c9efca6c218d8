"""Former name of :mod:`remotetrimmer_tf.cost` (MAC / parameter counting),
kept so that ``from remotetrimmer_tf.metrics import count_macs`` still works."""
from remotetrimmer_tf.cost import (call_macs, call_view, channels_of, count_macs,  # noqa: F401
                                   count_params, layer_calls, layer_macs, layer_nodes)

__all__ = ["count_macs", "count_params", "layer_macs", "layer_calls", "call_macs",
           "call_view", "layer_nodes", "channels_of"]
