"""Vision transformers written in Keras, as users write them (for
``tools/bench_transformers.py``): the keras.io "Image classification with
Vision Transformer" example (``Patches`` / ``PatchEncoder`` layers, Flatten
head), a functional pre-norm ViT, a post-norm one with ``key_dim != value_dim``,
one with grouped-query attention and a gated (SiLU) MLP, one whose class
token, position table and layer scales are the user's own layers without a
handler (proven channel-wise: ``graph/handlers/probed.py``), and a subclassed
``keras.Model``. Small sizes, random weights.

``image_vit`` builds the classic ViT classifier at any size (patchify
convolution, a learned class token and position table, pre-norm blocks of
``MultiHeadAttention`` and a GELU MLP, class-token head), with per-layer head
counts and MLP widths; ``tools/eurosat_vit.py`` trains it on EuroSAT.
"""

from __future__ import annotations

import keras
from keras import layers as L
from keras import ops

from remotetrimmer_tf.graph import LayerHandler, WeightAxes, register_handler

SIZE, PATCH, WIDTH, CLASSES = 32, 8, 32, 5


class Patches(L.Layer):
    """keras.io: images -> (batch, patches, patch pixels)."""

    def __init__(self, patch_size, **kw):
        super().__init__(**kw)
        self.patch_size = patch_size

    def call(self, images):
        shape = ops.shape(images)
        n = (shape[1] // self.patch_size) * (shape[2] // self.patch_size)
        patches = ops.image.extract_patches(images, size=self.patch_size)
        return ops.reshape(patches, (shape[0], n, self.patch_size ** 2 * shape[3]))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


class PatchEncoder(L.Layer):
    """keras.io: a Dense projection plus a learned position embedding."""

    def __init__(self, num_patches, projection_dim, **kw):
        super().__init__(**kw)
        self.num_patches = num_patches
        self.projection = L.Dense(projection_dim)
        self.position_embedding = L.Embedding(num_patches, projection_dim)

    def call(self, patch):
        positions = ops.expand_dims(ops.arange(0, self.num_patches, 1), axis=0)
        return self.projection(patch) + self.position_embedding(positions)


def keras_io_vit():
    inp = keras.Input((SIZE, SIZE, 3))
    x = PatchEncoder((SIZE // PATCH) ** 2, WIDTH)(Patches(PATCH)(inp))
    for _ in range(2):
        h = L.LayerNormalization(epsilon=1e-6)(x)
        a = L.MultiHeadAttention(num_heads=4, key_dim=WIDTH, dropout=0.1)(h, h)
        x2 = L.Add()([a, x])
        h = L.LayerNormalization(epsilon=1e-6)(x2)
        for units in (2 * WIDTH, WIDTH):
            h = L.Dropout(0.1)(L.Dense(units, activation=keras.activations.gelu)(h))
        x = L.Add()([h, x2])
    x = L.Dropout(0.5)(L.Flatten()(L.LayerNormalization(epsilon=1e-6)(x)))
    x = L.Dense(64, activation="gelu")(x)
    return keras.Model(inp, L.Dense(CLASSES)(x), name="keras_io_vit")


def _patchify(inp):
    x = L.Conv2D(WIDTH, PATCH, strides=PATCH, name="patchify")(inp)
    return L.Reshape(((SIZE // PATCH) ** 2, WIDTH), name="tokens")(x)


def functional_vit(norm="pre", attention="mha", mlp="gelu", value_dim=None):
    inp = keras.Input((SIZE, SIZE, 3))
    x = _patchify(inp)
    for i in range(2):
        def attend(h):
            if attention == "gqa":
                return L.GroupQueryAttention(WIDTH // 4, 4, 2, name=f"attn{i}")(h, h)
            return L.MultiHeadAttention(4, WIDTH // 4, value_dim=value_dim,
                                        name=f"attn{i}")(h, h)

        def feed(h):
            if mlp == "gated":
                h = ops.silu(L.Dense(2 * WIDTH, name=f"gate{i}")(h)) * \
                    L.Dense(2 * WIDTH, name=f"up{i}")(h)
            else:
                h = L.Dense(2 * WIDTH, activation="gelu", name=f"fc{i}")(h)
            return L.Dense(WIDTH, name=f"down{i}")(h)
        if norm == "pre":
            x = x + attend(L.LayerNormalization()(x))
            x = x + feed(L.LayerNormalization()(x))
        else:
            x = L.LayerNormalization()(x + attend(x))
            x = L.LayerNormalization()(x + feed(x))
    x = L.GlobalAveragePooling1D()(L.LayerNormalization()(x))
    return keras.Model(inp, L.Dense(CLASSES, name="head")(x), name=f"vit_{norm}_{attention}")


@keras.saving.register_keras_serializable("keras_vits")
class OwnClassToken(L.Layer):
    """A user's class token: no handler is registered for it."""

    def build(self, shape):
        self.token = self.add_weight(name="token", shape=(1, 1, shape[-1]),
                                     initializer="random_normal")

    def call(self, x):
        token = ops.repeat(ops.cast(self.token, x.dtype), ops.shape(x)[0], axis=0)
        return ops.concatenate([token, x], axis=1)


@keras.saving.register_keras_serializable("keras_vits")
class OwnPositionTable(L.Layer):
    """A user's learned position table (tokens, width): no handler."""

    def build(self, shape):
        self.table = self.add_weight(name="table", shape=(1, shape[1], shape[2]),
                                     initializer="random_normal")

    def call(self, x):
        return x + ops.cast(self.table, x.dtype)


@keras.saving.register_keras_serializable("keras_vits")
class OwnLayerScale(L.Layer):
    """A user's CaiT-style layer scale (per-channel gamma): no handler."""

    def build(self, shape):
        self.gamma = self.add_weight(name="gamma", shape=(shape[-1],),
                                     initializer=keras.initializers.Constant(0.1))

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)


def own_layers_vit():
    """Class token, position table and layer scales as the user's own layers
    (no handler for any of them); pre-norm MHA blocks, class-token head."""
    inp = keras.Input((SIZE, SIZE, 3))
    x = OwnPositionTable(name="position")(OwnClassToken(name="class_token")(_patchify(inp)))
    for i in range(2):
        h = L.LayerNormalization()(x)
        h = L.MultiHeadAttention(4, WIDTH // 4, name=f"attn{i}")(h, h)
        x = x + OwnLayerScale(name=f"scale_attn{i}")(h)
        h = L.Dense(2 * WIDTH, activation="gelu", name=f"fc{i}")(L.LayerNormalization()(x))
        h = OwnLayerScale(name=f"scale_fc{i}")(h)
        x = x + OwnLayerScale(name=f"scale_mlp{i}")(L.Dense(WIDTH, name=f"down{i}")(h))
    x = L.LayerNormalization()(x)[:, 0]
    return keras.Model(inp, L.Dense(CLASSES, name="head")(x), name="vit_own_layers")


class Block(L.Layer):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.ln1, self.ln2 = L.LayerNormalization(), L.LayerNormalization()
        self.attn = L.MultiHeadAttention(4, WIDTH // 4)
        self.fc1, self.fc2 = L.Dense(2 * WIDTH, activation="gelu"), L.Dense(WIDTH)

    def call(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h)
        return x + self.fc2(self.fc1(self.ln2(x)))


class MyViT(keras.Model):
    """``class MyViT(keras.Model)`` whose call composes layers and keras.ops."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.patch = L.Conv2D(WIDTH, PATCH, strides=PATCH)
        self.blocks = [Block() for _ in range(2)]
        self.norm, self.head = L.LayerNormalization(), L.Dense(CLASSES)

    def call(self, x):
        x = self.patch(x)
        x = ops.reshape(x, (-1, x.shape[1] * x.shape[2], x.shape[3]))
        for block in self.blocks:
            x = block(x)
        return self.head(ops.mean(self.norm(x), axis=1))


def subclassed_vit():
    model = MyViT(name="my_vit")
    model(ops.zeros((1, SIZE, SIZE, 3)))
    return model


@keras.saving.register_keras_serializable("keras_vits")
class ClassTokenPosition(L.Layer):
    """Prepends a learned class token to ``(batch, tokens, width)`` and adds a
    learned ``(tokens + 1, width)`` position table."""

    def build(self, input_shape):
        tokens, width = int(input_shape[1]), int(input_shape[2])
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.class_token = self.add_weight(name="class_token", shape=(1, 1, width),
                                           initializer=init)
        self.position = self.add_weight(name="position", shape=(1, tokens + 1, width),
                                        initializer=init)

    def call(self, x):
        token = ops.cast(self.class_token, x.dtype)
        token = ops.broadcast_to(token, (ops.shape(x)[0], 1, ops.shape(x)[2]))
        return ops.concatenate([token, x], axis=1) + ops.cast(self.position, x.dtype)

    def compute_output_shape(self, shape):
        return (shape[0], None if shape[1] is None else shape[1] + 1, shape[2])


class ClassTokenPositionHandler(LayerHandler):
    """Channel-wise: both tables are sliced on their last (channel) axis."""

    def propagate(self, node, ctx):
        ctx.channelwise(node, node.in_maps[0])
        return [node.in_maps[0]]

    def weight_axes(self, layer):
        return {0: WeightAxes(out_axis=-1, in_axis=-1), 1: WeightAxes(out_axis=-1, in_axis=-1)}


register_handler(ClassTokenPosition, ClassTokenPositionHandler())


def _per_layer(value, depth, name):
    values = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * depth
    if len(values) != depth or min(values) < 1:
        raise ValueError(f"image_vit: {name} must be a positive int or {depth} positive ints "
                         f"(one per layer), got {value!r}.")
    return values


def image_vit(image_size=64, patch=8, depth=6, width=192, heads=3, key_dim=64, mlp_dim=768,
              classes=10, dropout=0.0, name="vit"):
    """The classic ViT classifier, pre-norm, written with keras.layers.

    ``(image_size / patch)²`` patch tokens (a ``Conv2D`` patchify) plus a
    learned class token, a learned position table, ``depth`` blocks of
    ``x + MHA(LN(x))`` and ``x + Dense(GELU(Dense(LN(x))))``, a final
    LayerNormalization and a ``Dense`` head on the class token. ``heads`` and
    ``mlp_dim`` are one int or one per layer (a pruned model's widths).
    Layers are named ``block{i}_attn`` / ``block{i}_fc1`` / ``block{i}_fc2``.
    """
    heads, mlp_dim = _per_layer(heads, depth, "heads"), _per_layer(mlp_dim, depth, "mlp_dim")
    if image_size % patch:
        raise ValueError(f"image_vit: image_size {image_size} is not a multiple of patch {patch}.")
    tokens = (image_size // patch) ** 2
    inp = keras.Input((image_size, image_size, 3))
    x = L.Conv2D(width, patch, strides=patch, name="patchify")(inp)
    x = ClassTokenPosition(name="class_position")(L.Reshape((tokens, width), name="tokens")(x))
    for i in range(depth):
        h = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        h = L.MultiHeadAttention(heads[i], key_dim, dropout=dropout, name=f"block{i}_attn")(h, h)
        x = L.Add(name=f"block{i}_add1")([x, h])
        h = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        h = L.Dense(mlp_dim[i], activation="gelu", name=f"block{i}_fc1")(h)
        h = L.Dense(width, name=f"block{i}_fc2")(L.Dropout(dropout, name=f"block{i}_drop")(h))
        x = L.Add(name=f"block{i}_add2")([x, h])
    x = L.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    return keras.Model(inp, L.Dense(classes, name="head")(x[:, 0]), name=name)


def layer_widths(model, depth):
    """``(heads per layer, MLP width per layer)`` of an ``image_vit`` (or its pruned copy)."""
    return ([int(model.get_layer(f"block{i}_attn").num_heads) for i in range(depth)],
            [int(model.get_layer(f"block{i}_fc1").units) for i in range(depth)])


MODELS = {
    "keras.io ViT example (Patches, PatchEncoder, Flatten head)": keras_io_vit,
    "functional ViT, pre-norm MHA, GELU MLP": functional_vit,
    "functional ViT, post-norm, key_dim != value_dim": lambda: functional_vit("post", value_dim=4),
    "functional ViT, GQA, gated SiLU MLP": lambda: functional_vit(attention="gqa", mlp="gated"),
    "functional ViT, own class-token / position / layer-scale layers (no handler)":
        own_layers_vit,
    "subclassed ViT (class MyViT(keras.Model))": subclassed_vit,
}
