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
