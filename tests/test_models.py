"""Backbones (ResNet-18, VGG16-BN) and the SqueezeExcite gate."""
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

from remotetrimmer_tf.models import SqueezeExcite, resnet18, vgg16_bn


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(scope="module")
def resnets():
    return resnet18(10, (64, 64, 3)), resnet18(10, (64, 64, 3), se=True)


def test_resnet18_parameter_counts_match_published(resnets):
    plain, se = resnets
    assert trainable(plain) == 11_181_642
    assert trainable(se) == 11_360_382
    se_params = sum(trainable_w for trainable_w in (
        sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        for layer in se.layers if isinstance(layer, SqueezeExcite)))
    assert se_params == 178_740


def test_resnet18_topology_and_names(resnets):
    plain, se = resnets
    names = {layer.name for layer in plain.layers}
    for n in ("stem_conv", "stem_bn", "stem_pool", "stage1_block1_conv1",
              "stage1_block1_bn1", "stage1_block1_bn2", "stage1_block1_add",
              "stage2_block1_down_conv", "stage2_block1_down_bn", "avgpool", "fc"):
        assert n in names, n
    assert "stage1_block1_down_conv" not in names       # identity shortcut
    assert plain.get_layer("stem_conv").kernel.shape == (7, 7, 3, 64)
    assert plain.get_layer("stem_conv").strides == (2, 2)
    assert plain.get_layer("stem_pool").output.shape[1:] == (16, 16, 64)
    assert plain.get_layer("stage4_block2_out").output.shape[1:] == (2, 2, 512)
    assert plain.output.shape[1:] == (10,)
    assert all(not layer.use_bias for layer in plain.layers
               if isinstance(layer, keras.layers.Conv2D))
    # zero-initialised last BN of every block, the others start at 1
    for layer in plain.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma = layer.gamma.numpy()
            expected = 0.0 if layer.name.endswith("_bn2") else 1.0
            np.testing.assert_array_equal(gamma, expected, err_msg=layer.name)
    gates = [layer.name for layer in se.layers if isinstance(layer, SqueezeExcite)]
    assert len(gates) == 17 and gates[0] == "stem_se"
    assert "stage2_block1_se2" in gates and not any("down" in g for g in gates)
    # se2 sits between bn2 and the residual add
    add = se.get_layer("stage3_block1_add")
    assert add.input[0]._keras_history.operation.name == "stage3_block1_se2"


def test_vgg16_bn_structure():
    plain = vgg16_bn(10, (32, 32, 3))
    se = vgg16_bn(10, (32, 32, 3), se=True)
    convs = [l for l in plain.layers if isinstance(l, keras.layers.Conv2D)]
    bns = [l for l in plain.layers if isinstance(l, keras.layers.BatchNormalization)]
    pools = [l for l in plain.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 256,
                                          512, 512, 512, 512, 512, 512]
    assert len(bns) == 13 and len(pools) == 5
    assert plain.get_layer("fc1").units == 512 and plain.output.shape[1:] == (10,)
    gates = [l for l in se.layers if isinstance(l, SqueezeExcite)]
    assert len(gates) == 13
    expected_se = sum(2 * c * (c // 16) + c // 16 + c for c in
                      [c.filters for c in convs])
    assert trainable(se) - trainable(plain) == expected_se
    assert vgg16_bn(5, (32, 32, 3), hidden_units=0).get_layer("fc").kernel.shape == (512, 5)


def test_squeeze_excite_math():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 5, 32)).astype("float32")
    layer = SqueezeExcite(reduction=16)
    y = keras.ops.convert_to_numpy(layer(x))
    w1, b1, w2, b2 = layer.get_weights()
    assert w1.shape == (32, 2) and w2.shape == (2, 32)
    pooled = x.mean(axis=(1, 2))
    s = 1.0 / (1.0 + np.exp(-(np.maximum(pooled @ w1 + b1, 0) @ w2 + b2)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.gate(x)), s,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, x * s[:, None, None, :], rtol=1e-5, atol=1e-6)
    # rank 3 (sequences) works as well
    seq = SqueezeExcite(4)(x[:, 0])
    assert seq.shape == (3, 5, 32)


def test_squeeze_excite_config_and_keras_roundtrip(tmp_path):
    layer = SqueezeExcite(reduction=8, name="gate")
    inp = keras.Input((6, 6, 16))
    model = keras.Model(inp, SqueezeExcite(8, name="gate")(inp))
    config = model.get_layer("gate").get_config()
    assert config["reduction"] == 8 and config["hidden_units"] == 2
    clone = SqueezeExcite.from_config(config)
    assert clone.reduction == 8 and clone.hidden_units == 2
    assert layer.hidden_units is None          # resolved at build time only
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 16)).astype("float32")
    path = tmp_path / "se.keras"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=".*__array__.*copy.*")
        model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("gate"), SqueezeExcite)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-6)


def test_squeeze_excite_hidden_units_fixed_when_channels_shrink():
    layer = SqueezeExcite(16, hidden_units=4)
    layer.build((None, 4, 4, 19))
    assert layer.squeeze_kernel.shape == (19, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcite(0)
    with pytest.raises(ValueError, match="hidden_units"):
        SqueezeExcite(16, hidden_units=0)
    with pytest.raises(ValueError, match="rank"):
        SqueezeExcite(4)(keras.ops.ones((2, 8)))
    with pytest.raises(ValueError, match="num_classes"):
        resnet18(0)
    with pytest.raises(ValueError, match="input_shape"):
        vgg16_bn(10, (32, 32))


JAX_SCRIPT = textwrap.dedent(r"""
    import importlib.abc, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_datasets"):
                raise ImportError(f"TensorFlow is absent here ({name})")

    sys.meta_path.insert(0, NoTensorFlow())
    import numpy as np, keras
    assert keras.backend.backend() == "jax"
    from remotetrimmer_tf.models import SqueezeExcite
    from remotetrimmer_tf.attention import collect_attention, fold_attention
    from remotetrimmer_tf.pruner import Pruner

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False)(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = SqueezeExcite(4, name="se")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    rng = np.random.default_rng(0)
    model.get_layer("se").set_weights(
        [rng.normal(0, 1, w.shape) for w in model.get_layer("se").get_weights()])
    xs = np.repeat(rng.normal(size=(1, 8, 8, 3)).astype("float32"), 4, axis=0)
    att = collect_attention(model, xs)
    folded = fold_attention(model, att)
    err = np.abs(np.asarray(model(xs)) - np.asarray(folded(xs))).max()
    assert err < 1e-5, err
    small = Pruner(model, "cap", 0.5).prune(xs)
    assert small.get_layer("bn").gamma.shape == (4,)
    ys = np.arange(4) % 3
    small = Pruner(folded, "taylor", 0.5, steps=1).prune((xs, ys))
    assert small.get_layer("bn").gamma.shape == (4,)
    assert not any(m.split(".")[0] == "tensorflow" for m in sys.modules)
    print("JAX-OK")
""")


@pytest.mark.slow
def test_attention_folding_and_pruning_under_jax_without_tensorflow():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT], env=env, cwd=root,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "JAX-OK" in proc.stdout, proc.stderr[-3000:]
