"""The core runs under KERAS_BACKEND=jax with TensorFlow absent.

The check runs in a fresh interpreter whose import system refuses
``tensorflow`` (as on a machine without it, such as the GPU box), then
asserts that no TensorFlow module was ever loaded.
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

SCRIPT = textwrap.dedent(
    r"""
    import importlib.abc, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_datasets"):
                raise ImportError(f"TensorFlow is absent here ({name})")
            return None

    sys.meta_path.insert(0, NoTensorFlow())

    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    import remotetrimmer_tf as rt
    from remotetrimmer_tf import training

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    y = (np.arange(16) % 3).astype("int32")

    model = rt.models.resnet18(num_classes=3, input_shape=(32, 32, 3), se=True)
    recipe = training.recipes.modern()
    recipe.epochs, recipe.batch_size, recipe.loss = 1, 8, "aml"
    training.fit(model, (x, y), recipe=recipe, verbose=0)

    attention = rt.collect_attention(model, [x[:8], x[8:]])
    plain = rt.fold_attention(model, attention)
    graph = rt.DependencyGraph(plain)
    assert any(g.prunable for g in graph.groups)
    pruned = rt.Pruner(plain, importance="slim", ratio=0.5).prune()
    assert rt.count_params(pruned) < rt.count_params(plain)
    assert rt.count_macs(pruned) < rt.count_macs(plain)
    pruned = rt.recalibrate_bn(pruned, [x[:8], x[8:]])
    recipe.distill_weight = 1.0   # fine-tune distilling from the unpruned parent
    kd = training.fit(pruned, (x, y), recipe=recipe, verbose=0, teacher=model)
    assert np.isfinite(kd["loss"][0]), kd
    loss = rt.AdaptiveMiningLoss()
    value = float(loss(y, pruned.predict(x, verbose=0)))
    assert np.isfinite(value), value
    leaked = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
    assert not leaked, leaked
    print("JAX-OK", value)
    """
)


@pytest.mark.slow
def test_core_runs_on_jax_without_tensorflow():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "JAX-OK" in proc.stdout


def test_import_does_not_import_tensorflow():
    code = ("import sys, remotetrimmer_tf; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
            "print('IMPORT-OK')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "IMPORT-OK" in proc.stdout
