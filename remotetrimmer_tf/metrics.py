"""Former name of :mod:`remotetrimmer_tf.cost` (MAC / parameter counting),
kept so that ``from remotetrimmer_tf.metrics import count_macs`` still works."""
from remotetrimmer_tf.cost import count_macs, count_params, layer_calls, layer_macs  # noqa: F401

__all__ = ["count_macs", "count_params", "layer_macs", "layer_calls"]
