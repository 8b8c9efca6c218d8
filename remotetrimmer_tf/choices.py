"""The lists of choices of the public options, in one place (no Keras import).

The configs (``configs/base.py``), ``pipeline.validate_config``, the
``Pruner`` and the tools read their choices here. Criteria and reductions
come from their registries: :func:`importances` is the built-ins plus every
criterion added with ``importance.register_importance`` in this process
(the registry is read, never imported: importing it would import Keras, and
a criterion can only have been registered if it is loaded).

Example:

>>> ROUND_MODES
('up', 'down', 'nearest')
>>> importances()[:3]
('cap', 'slim', 'l1')
"""
import sys

__all__ = ["BUILTIN_IMPORTANCES", "REDUCTIONS", "ROUND_MODES", "SCOPES", "QUANTIZE",
           "EVAL_SPLITS", "RUNTIMES", "DTYPES", "OBJECTIVES",
           "DEFAULT_OBJECTIVE", "LATENCY_MARGIN_MAX", "importances", "reductions"]

#: criteria of ``remotetrimmer_tf.importance`` (its registry holds exactly these
#: at import; tests/test_choices.py checks it)
BUILTIN_IMPORTANCES = ("cap", "slim", "l1", "l2", "fpgm", "taylor", "random")
#: keys of ``importance.reductions.REDUCTIONS`` (checked the same way)
REDUCTIONS = ("mean", "max", "sum", "prod", "first")
#: ``Pruner(round_mode=...)``
ROUND_MODES = ("up", "down", "nearest")
#: ``Pruner(scope=...)``
SCOPES = ("local", "global")
#: ``--config.export.quantize`` ("none": the float32 file)
QUANTIZE = ("none", "float16", "dynamic", "int8")
#: ``--config.evaluate.split``
EVAL_SPLITS = ("test", "val", "train")
#: latency budgets: ``Pruner(runtime=..., dtype=..., objective=...)``
RUNTIMES = ("litert",)
DTYPES = ("float32", "int8")
OBJECTIVES = ("importance", "macs", "uniform")
#: the default: at equal latency it kept the accuracy of the published widths
#: (UC Merced, 3 seeds, tools/results/reproduce/ucmerced_resnet18_cpu64_latency.md)
DEFAULT_OBJECTIVE = "uniform"
#: ``latency_margin`` (the fraction aimed under a latency target) is in [0, this)
LATENCY_MARGIN_MAX = 0.5


def importances():
    """The criterion names ``Pruner(importance=...)`` accepts now: the
    built-ins, then any registered with ``register_importance`` (sorted).

    Example:

    >>> "l1" in importances()
    True
    """
    registry = sys.modules.get("remotetrimmer_tf.importance")
    extra = sorted(set(registry.available()) - set(BUILTIN_IMPORTANCES)) if registry else []
    return BUILTIN_IMPORTANCES + tuple(extra)


def reductions():
    """The reduction names (``Pruner(reduction=...)``), from the registry
    when it is loaded.

    Example:

    >>> reductions()[0]
    'mean'
    """
    registry = sys.modules.get("remotetrimmer_tf.importance.reductions")
    if registry is None:
        return REDUCTIONS
    return REDUCTIONS + tuple(sorted(set(registry.REDUCTIONS) - set(REDUCTIONS)))
