"""remotetrimmer_tf: RemoteTrimmer structural channel pruning for Keras 3.

Public API only. Names are resolved lazily so that ``import remotetrimmer_tf``
never imports TensorFlow (the core runs under ``KERAS_BACKEND=jax`` without it).

Example:

```python
import remotetrimmer_tf as rt

model = rt.models.resnet18(10, (64, 64, 3), se=True)
# ... train `model`, then Channel Attention Pruning: collect the mean SE
# attention over training batches, fold it into BN, prune by |gamma'|.
pruned = rt.Pruner(model, importance="cap", ratio=0.7).prune(train_batches)
# the same, step by step:
attention = rt.collect_attention(model, train_batches)
plain = rt.fold_attention(model, attention)
pruned = rt.Pruner(plain, importance="slim", ratio=0.7).prune()
```
"""
import importlib

from remotetrimmer_tf import _keras_registration
from remotetrimmer_tf.version import __version__  # noqa: F401 (setup.py reads it)

# Registers our Keras classes (SqueezeExcite, AdaptiveMiningLoss, schedules,
# augmentation) as soon as Keras is imported, so that a plain
# ``keras.saving.load_model(path)`` works after ``import remotetrimmer_tf``.
_keras_registration.install()

# public name -> module that defines it
_EXPORTS = {
    "DependencyGraph": "remotetrimmer_tf.graph",
    "ChannelGroup": "remotetrimmer_tf.graph",
    "Member": "remotetrimmer_tf.graph",
    "LayerHandler": "remotetrimmer_tf.graph",
    "register_handler": "remotetrimmer_tf.graph",
    "register_activation": "remotetrimmer_tf.graph",
    "functional_view": "remotetrimmer_tf.graph",
    "prune_channels": "remotetrimmer_tf.surgeon",
    "count_macs": "remotetrimmer_tf.cost",
    "count_params": "remotetrimmer_tf.cost",
    "SqueezeExcite": "remotetrimmer_tf.models",
    "insert_se_gates": "remotetrimmer_tf.models",
    "replace_head": "remotetrimmer_tf.models",
    "build_arch": "remotetrimmer_tf.models",
    "collect_attention": "remotetrimmer_tf.attention",
    "fold_attention": "remotetrimmer_tf.attention",
    "get_importance": "remotetrimmer_tf.importance",
    "register_importance": "remotetrimmer_tf.importance",
    "run_pipeline": "remotetrimmer_tf.pipeline",
    "Pruner": "remotetrimmer_tf.pruner",
    "prune_in_rounds": "remotetrimmer_tf.iterative",
    "PlanCost": "remotetrimmer_tf.cost",
    "ScoredGroups": "remotetrimmer_tf.planning",
    "LatencyModel": "remotetrimmer_tf.latency",
    "recalibrate_bn": "remotetrimmer_tf.training.bn_recalibration",
    "AdaptiveMiningLoss": "remotetrimmer_tf.losses",
}
_SUBMODULES = ("models", "graph", "importance", "training", "data", "export",
               "pipeline", "attention", "surgeon", "cost", "metrics", "losses", "pruner",
               "planning", "budget", "latency")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"remotetrimmer_tf.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'remotetrimmer_tf' has no attribute {name!r}")


def __dir__():
    return __all__
