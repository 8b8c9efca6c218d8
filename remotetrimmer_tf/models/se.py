"""Squeeze-and-excite channel gate (Hu et al., 2018) as used by RemoteTrimmer."""
import keras
from keras import ops

__all__ = ["SqueezeExcite"]


@keras.saving.register_keras_serializable(package="remotetrimmer_tf")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-excite gate: ``x * sigmoid(W2 · relu(W1 · GAP(x) + b1) + b2)``.

    The squeeze is a global average over every axis between the batch and the
    (last) channel axis, so the layer works on ``(batch, ..., C)`` inputs of
    rank 3 to 5 (channels-last). ``W1`` is ``(C, hidden)`` and ``W2`` is
    ``(hidden, C)``, both with bias; ``hidden = max(1, C // reduction)``
    unless ``hidden_units`` is given. For channel pruning the layer is
    channelwise: channel ``c`` owns row ``c`` of ``W1`` and column ``c`` of
    ``W2`` plus ``b2[c]``; the hidden width stays fixed (``hidden_units`` is
    stored in the config once built, so a pruned copy keeps it).

    Args:
        reduction: Channel reduction ratio of the bottleneck (16 as published).
        hidden_units: Explicit bottleneck width; overrides ``reduction``.
        kernel_initializer: Initializer of both kernels.
        bias_initializer: Initializer of both biases.
        **kwargs: Standard layer keyword arguments (``name``, ``dtype``...).

    Example:

    ```python
    x = keras.Input((8, 8, 32))
    y = SqueezeExcite(reduction=16, name="se")(x)   # same shape as x
    s = model.get_layer("se").gate(features)         # (batch, 32), in (0, 1)
    ```
    """

    def __init__(self, reduction=16, hidden_units=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(reduction, int) or isinstance(reduction, bool) or reduction < 1:
            raise ValueError(
                f"SqueezeExcite: reduction must be a positive int, got {reduction!r}.")
        if hidden_units is not None and (
                not isinstance(hidden_units, int) or hidden_units < 1):
            raise ValueError(
                "SqueezeExcite: hidden_units must be None or a positive int, "
                f"got {hidden_units!r}.")
        self.reduction = reduction
        self.hidden_units = hidden_units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                f"SqueezeExcite {self.name!r} needs an input of rank >= 3 "
                f"(batch, ..., channels), got shape {tuple(input_shape)}.")
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"SqueezeExcite {self.name!r}: the channel axis (last) must be "
                f"known, got shape {tuple(input_shape)}.")
        if self.hidden_units is None:
            self.hidden_units = max(1, int(channels) // self.reduction)
        hidden = self.hidden_units
        self.squeeze_kernel = self.add_weight(
            name="squeeze_kernel", shape=(channels, hidden),
            initializer=self.kernel_initializer)
        self.squeeze_bias = self.add_weight(
            name="squeeze_bias", shape=(hidden,), initializer=self.bias_initializer)
        self.excite_kernel = self.add_weight(
            name="excite_kernel", shape=(hidden, channels),
            initializer=self.kernel_initializer)
        self.excite_bias = self.add_weight(
            name="excite_bias", shape=(channels,), initializer=self.bias_initializer)

    def gate(self, x):
        """Per-sample channel attention ``s`` of shape ``(batch, C)``, in (0, 1)."""
        x = ops.convert_to_tensor(x, dtype=self.compute_dtype)
        dtype = x.dtype
        w1, b1, w2, b2 = (ops.cast(w, dtype) for w in (
            self.squeeze_kernel, self.squeeze_bias, self.excite_kernel, self.excite_bias))
        pooled = ops.mean(x, axis=tuple(range(1, len(x.shape) - 1)))
        hidden = ops.relu(ops.matmul(pooled, w1) + b1)
        return ops.sigmoid(ops.matmul(hidden, w2) + b2)

    def call(self, inputs):
        s = self.gate(inputs)
        for _ in range(len(inputs.shape) - 2):
            s = ops.expand_dims(s, 1)
        return inputs * ops.cast(s, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "reduction": self.reduction,
            "hidden_units": self.hidden_units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
