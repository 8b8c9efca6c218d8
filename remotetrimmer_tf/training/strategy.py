"""Distribution strategies for users who outgrow one device.

``get_strategy(name)`` returns, per Keras backend:

==============  ==========================================  ===========================
name            TensorFlow backend (``tf.distribute``)      JAX backend (``keras.distribution``)
==============  ==========================================  ===========================
``default``     ``None`` (no distribution)                  ``None``
``mirrored``    ``MirroredStrategy(devices)``               ``DataParallel`` over all local devices
``multi_worker`` ``MultiWorkerMirroredStrategy()``          ``keras.distribution.initialize()`` +
                (cluster from ``TF_CONFIG``)                ``DataParallel`` over all processes' devices
``tpu``         ``TPUStrategy`` (``TPUClusterResolver(tpu)``) ``DataParallel`` (JAX sees TPUs natively)
==============  ==========================================  ===========================

Pass the result to ``training.fit(..., strategy=...)``; fit builds the
training copy of the model, the optimizer and the metrics inside
:func:`strategy_scope` and copies the trained weights back into your model.

TensorFlow is imported only inside these functions (never at module import).
"""
import contextlib

import keras

__all__ = ["get_strategy", "strategy_scope", "is_distributed", "STRATEGIES"]

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def get_strategy(name="default", devices=None, tpu=None):
    """Create the distribution object for ``name`` on the current backend.

    Args:
        name: one of ``"default"``, ``"mirrored"``, ``"multi_worker"``, ``"tpu"``.
        devices: optional device list (``mirrored``): TF device strings such as
            ``["/cpu:0", "/cpu:1"]``, or JAX devices.
        tpu: TPU address / name for ``TPUClusterResolver`` (TF backend).

    Returns:
        ``None`` for ``"default"``; a ``tf.distribute.Strategy`` (TF backend) or a
        ``keras.distribution.Distribution`` (JAX backend).

    Raises:
        ValueError: unknown name, or a distributed name on a backend that has none.

    Example:

    ```python
    strategy = get_strategy("mirrored")
    rt.training.fit(model, train, recipe=recipe, strategy=strategy)
    ```
    """
    if name is None or name == "default":
        return None
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {STRATEGIES}.")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # TF-only path, imported lazily

        if name == "mirrored":
            return tf.distribute.MirroredStrategy(devices=devices)
        if name == "multi_worker":
            return tf.distribute.MultiWorkerMirroredStrategy()
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if backend == "jax":
        if name == "multi_worker":
            keras.distribution.initialize()
        if devices is None:
            devices = keras.distribution.list_devices()
        return keras.distribution.DataParallel(devices=devices)
    raise ValueError(f"strategy {name!r} is not supported on the {backend!r} backend; "
                     "use KERAS_BACKEND=tensorflow (tf.distribute) or jax "
                     "(keras.distribution), or strategy='default'.")


def is_distributed(strategy):
    """True if ``strategy`` is a TF strategy or a Keras distribution."""
    return strategy is not None


def strategy_scope(strategy):
    """Context manager making ``strategy`` current (no-op for ``None``).

    Works for ``tf.distribute.Strategy`` (``.scope()``) and
    ``keras.distribution.Distribution`` (``.scope()``).

    Example:

    ```python
    with strategy_scope(get_strategy("mirrored")):
        model = build()
    ```
    """
    if strategy is None:
        return contextlib.nullcontext()
    scope = getattr(strategy, "scope", None)
    if scope is None:
        raise TypeError("strategy must be a tf.distribute.Strategy, a "
                        "keras.distribution.Distribution or None; got "
                        f"{type(strategy).__name__}.")
    return scope()


# --- reproducible runs (issue 14): seeding + deterministic kernels -----------
def make_deterministic(seed, kernels=True):
    """Seeds every RNG and asks the backend for deterministic kernels.

    Seeds Python, numpy and Keras (``training.set_seed``); on the
    TensorFlow backend also turns on ``tf.config.experimental.
    enable_op_determinism()`` (process-wide: reductions, convolutions and
    tf.data run in a fixed order). JAX on CPU is deterministic already.

    Args:
        seed: int.
        kernels: also turn on deterministic kernels (TF op determinism; it
            cannot be turned off again in this process). False only seeds.

    Returns:
        A dict for the run report: ``{"seed", "backend", "op_determinism"}``
        (``op_determinism`` is a string naming what failed, if it could not
        be turned on).

    Example:

    ```python
    make_deterministic(0)   # same seed + same machine -> bitwise-equal models
    ```
    """
    from remotetrimmer_tf.training.fit import set_seed  # no TF import on JAX
    backend = keras.backend.backend()
    set_seed(int(seed))
    info = {"seed": int(seed), "backend": backend, "op_determinism": backend != "tensorflow"}
    if not kernels:
        info["op_determinism"] = "off (deterministic=False)"
    elif backend == "tensorflow":
        import tensorflow as tf  # TF-only path, imported lazily
        try:
            tf.config.experimental.enable_op_determinism()
            info["op_determinism"] = True
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            info["op_determinism"] = f"not available ({type(e).__name__}: {e})"
    return info
