"""Training-time augmentation for overhead scenes (backend-agnostic).

Aerial / satellite scenes have no "up": every element of the dihedral group
D4 (4 rotations by 90° x optional mirror) is an equally valid view. Flipping
horizontally, flipping vertically and transposing, each with probability 1/2,
draws uniformly from those 8 views, so it equals "random flips + random rot90".

The layer is the identity at inference (``training`` false/None), and
:func:`training.fit` runs it in a wrapper model, never inside the saved model.
"""
import keras
import numpy as np
from keras import ops

__all__ = ["RandomFlipRot90", "Augment", "make_augment"]


@keras.saving.register_keras_serializable(package="remotetrimmer_tf")
class RandomFlipRot90(keras.layers.Layer):
    """Random horizontal/vertical flips and 90° rotations of NHWC images.

    Every sample independently gets one of the 8 dihedral transforms (with
    ``rot90=True``) or one of the 4 flip combinations (``rot90=False``).

    Args:
        horizontal: allow left-right flips.
        vertical: allow up-down flips.
        rot90: allow 90° rotations (needs square images, H == W).
        seed: int seed for reproducible draws (``None``: unseeded).
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Example:

    ```python
    aug = RandomFlipRot90(seed=0)
    y = aug(images, training=True)   # (batch, 64, 64, 3) -> same shape
    same = aug(images)               # identity at inference
    ```
    """

    def __init__(self, horizontal=True, vertical=True, rot90=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.horizontal = bool(horizontal)
        self.vertical = bool(vertical)
        self.rot90 = bool(rot90)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self._table = None

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.__class__.__name__} '{self.name}' expects NHWC "
                             f"images of rank 4, got shape {tuple(input_shape)}.")
        h, w = input_shape[1], input_shape[2]
        if self.rot90 and h is not None and w is not None and h != w:
            raise ValueError(f"{self.__class__.__name__} '{self.name}': 90° rotations "
                             f"need square images, got {h}x{w}; pass rot90=False.")
        self._table = _index_table(h, w) if (h and w) else None
        self._table_hw = (h, w)
        super().build(input_shape)

    def call(self, inputs, training=None, draws=None):
        """Args: inputs (NHWC); training; draws: optional ``(batch, 3)``
        uniforms in [0, 1) to use instead of drawing from the layer's seed
        generator (the tf.data path draws them statelessly per batch)."""
        if not training:
            return inputs
        x = inputs
        batch = ops.shape(x)[0]
        if draws is None:
            draws = keras.random.uniform((batch, 3), seed=self.seed_generator)
        if self._table is not None and tuple(x.shape[1:3]) == self._table_hw:
            return self._gather(x, draws)
        if self.horizontal:
            x = ops.where(ops.reshape(draws[:, 0] < 0.5, (-1, 1, 1, 1)),
                          ops.flip(x, axis=2), x)
        if self.vertical:
            x = ops.where(ops.reshape(draws[:, 1] < 0.5, (-1, 1, 1, 1)),
                          ops.flip(x, axis=1), x)
        if self.rot90:
            x = ops.where(ops.reshape(draws[:, 2] < 0.5, (-1, 1, 1, 1)),
                          ops.transpose(x, (0, 2, 1, 3)), x)
        return x

    def _gather(self, x, draws):
        """One gather per batch: each sample's pixels read through the index map
        of its drawn transform (the same result as flip, flip, transpose in turn)."""
        batch = ops.shape(x)[0]
        code = ops.zeros((batch,), "int32")
        for bit, (allowed, col) in enumerate(((self.horizontal, 0), (self.vertical, 1),
                                              (self.rot90, 2))):
            if allowed:
                code = code + (2 ** bit) * ops.cast(draws[:, col] < 0.5, "int32")
        pixels = self._table.shape[1]
        idx = ops.take(ops.convert_to_tensor(self._table), code, axis=0)
        idx = idx + ops.expand_dims(ops.arange(batch, dtype="int32") * pixels, 1)
        flat = ops.reshape(x, (-1, ops.shape(x)[-1]))
        out = ops.take(flat, ops.reshape(idx, (-1,)), axis=0)
        return ops.reshape(out, ops.shape(x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"horizontal": self.horizontal, "vertical": self.vertical,
                       "rot90": self.rot90, "seed": self.seed})
        return config


def _index_table(h, w):
    """``(8, h*w)`` int32: for transform ``t = hflip + 2*vflip + 4*transpose``, the
    flat source pixel of every output pixel (flips first, then the transpose);
    transposed entries only exist for square images."""
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    table = np.zeros((8, h * w), np.int32)
    for t in range(8):
        i, j = ii, jj
        if t & 4:
            if h != w:
                continue
            i, j = j, i
        if t & 2:
            i = h - 1 - i
        if t & 1:
            j = w - 1 - j
        table[t] = (i * w + j).reshape(-1)
    return table


Augment = RandomFlipRot90


def make_augment(name, seed=None):
    """Return the augmentation layer for ``recipe.augment`` (``None`` for none).

    Args:
        name: ``"none"`` or ``"flips_rot90"`` (also ``"flips"``: no rotation).
        seed: int seed for the layer.

    Example:

    ```python
    aug = make_augment("flips_rot90", seed=0)
    ```
    """
    if name in (None, "none", ""):
        return None
    if name == "flips_rot90":
        return RandomFlipRot90(seed=seed, name="augment")
    if name == "flips":
        return RandomFlipRot90(rot90=False, seed=seed, name="augment")
    raise ValueError(f"recipe.augment must be 'none', 'flips' or 'flips_rot90'; got {name!r}.")
