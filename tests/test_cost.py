"""count_macs / count_params against hand-computed values."""

import keras
import pytest
from keras import layers as L

from remotetrimmer_tf.cost import count_macs, count_params


def test_conv_dense_depthwise_separable_macs():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="c")(inp)                    # 8*8*9*3*4
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)    # 8*8*9*8
    x = L.SeparableConv2D(5, 3, strides=2, padding="same")(x)          # 4*4*(9*8 + 8*5)
    x = L.BatchNormalization()(x)
    x = L.Conv2DTranspose(2, 2, strides=2)(x)                          # 4*4*4*5*2
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(7)(x)                                                # 2*7
    model = keras.Model(inp, out)
    expected = 8 * 8 * 9 * 3 * 4 + 8 * 8 * 9 * 8 + 4 * 4 * (9 * 8 + 8 * 5) \
        + 4 * 4 * 4 * 5 * 2 + 2 * 7
    assert count_macs(model) == expected


def test_conv1d_dense_on_sequence_and_nested():
    sub_in = keras.Input((10, 4))
    sub = keras.Model(sub_in, L.Dense(6)(sub_in))                      # 10*4*6
    inp = keras.Input((12, 2))
    x = L.Conv1D(4, 3)(inp)                                             # 10*3*2*4
    model = keras.Model(inp, sub(x))
    assert count_macs(model) == 10 * 3 * 2 * 4 + 10 * 4 * 6


def test_count_params_trainable_and_all():
    inp = keras.Input((4,))
    x = L.Dense(3)(inp)                      # 15
    x = L.BatchNormalization()(x)            # 6 trainable + 6 moving stats
    model = keras.Model(inp, x)
    assert count_params(model) == 21
    assert count_params(model, trainable_only=False) == 27


def test_unknown_spatial_size_is_a_clear_error():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, L.Conv2D(4, 3)(inp))
    with pytest.raises(ValueError, match="fixed input shape"):
        count_macs(model)
