"""Training precision: float32, or ``mixed_bfloat16`` where the CPU computes bf16 natively.

``recipe.precision`` (see ``training.recipes``) is ``"auto"``, ``"float32"`` or
``"mixed_bfloat16"``. ``"auto"`` picks ``mixed_bfloat16`` only when training
runs on the CPU with the TensorFlow backend (oneDNN's bf16 kernels; no
GPU/TPU visible) and the CPU has bf16 instructions (AMX-BF16 or AVX512-BF16,
read from ``/proc/cpuinfo`` at run time), else ``float32``; on a GPU the
choice stays float32. The library's recipes default to ``"float32"``; the
CLI configs (``configs/base.py``) default to ``"auto"``. In a mixed run the
validation metrics Keras logs (and ``best.keras``'s choice) are computed by
the bf16 model.

Mixed precision is applied to a *clone* of the model (:func:`with_policy`):
its variables stay float32, the layers compute in bfloat16, except the
layers that produce the model's outputs (the logits) which stay float32, so
the loss is computed in float32. Keras' ``BatchNormalization`` computes its
statistics in float32 under a bf16 policy. :func:`training.fit` trains the
clone and copies the weights back into the float32 model it was given, so
checkpoints, exports and the returned model are float32.

Backend-agnostic: only ``keras`` is imported.
"""
import os

import keras

from remotetrimmer_tf.utils.keras_models import copy_weights

__all__ = ["PRECISIONS", "cpu_bf16_flags", "resolve_precision", "compute_setup", "with_policy"]

PRECISIONS = ("auto", "float32", "mixed_bfloat16")
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's bf16 compute flags present (``amx_bf16``, ``avx512_bf16``); () if unknown.

    Example:

    ```python
    cpu_bf16_flags()   # ('avx512_bf16',) on an AMD Zen 4, () on most laptops
    ```
    """
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return tuple(f for f in _BF16_FLAGS if f in flags)
    except OSError:
        pass
    return ()


def _accelerator_visible():
    try:
        return bool(keras.distribution.list_devices("gpu")
                    or keras.distribution.list_devices("tpu"))
    except Exception:
        return False


def resolve_precision(precision="auto"):
    """``"float32"`` or ``"mixed_bfloat16"`` for a recipe's ``precision``.

    Args:
        precision: ``"auto"`` (bf16 on a bf16-capable CPU when no GPU/TPU is
            visible, TensorFlow backend; ``$REMOTETRIMMER_PRECISION`` overrides
            ``"auto"``),
            ``"float32"`` or ``"mixed_bfloat16"``.

    Example:

    ```python
    resolve_precision("auto")   # "mixed_bfloat16" on a CPU with AMX / AVX512-BF16
    ```
    """
    if precision not in PRECISIONS:
        raise ValueError(f"recipe.precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "auto":
        env = os.environ.get("REMOTETRIMMER_PRECISION", "").strip()
        if env:
            if env not in PRECISIONS[1:]:
                raise ValueError(f"REMOTETRIMMER_PRECISION must be one of {PRECISIONS[1:]}, "
                                 f"got {env!r}.")
            return env
        if (keras.backend.backend() == "tensorflow" and cpu_bf16_flags()
                and not _accelerator_visible()):
            return "mixed_bfloat16"
        return "float32"
    return precision


def compute_setup(precision="auto", distributed=False):
    """What a training run computes with, for reports: the resolved precision
    (``fit``'s rule: ``"auto"`` stays float32 under a distribution strategy),
    the CPU's bf16 flags and the backend's thread counts (TensorFlow: the
    intra- / inter-op pools, 0 = TensorFlow's default of one per core).

    Example:

    ```python
    compute_setup("auto")   # {"precision": "mixed_bfloat16", "cpu_bf16": [...], ...}
    ```
    """
    resolved = resolve_precision("float32" if distributed and precision == "auto"
                                 else precision)
    out = {"precision": resolved, "precision_requested": precision,
           "cpu_bf16": list(cpu_bf16_flags()), "backend": keras.backend.backend(),
           "cpu_count": os.cpu_count()}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
        out["intra_op_threads"] = int(intra or os.cpu_count() or 0)
        out["inter_op_threads"] = int(inter or os.cpu_count() or 0)
    return out


def with_policy(model, policy):
    """A clone of ``model`` whose layers compute under ``policy`` (weights copied).

    The layers that produce the model's outputs keep a float32 policy, so the
    outputs (logits) and the loss are float32. Variables are float32 under
    any mixed policy, so the weights copy one to one in both directions.

    Args:
        model: a built functional or sequential ``keras.Model``.
        policy: a dtype policy name, e.g. ``"mixed_bfloat16"``.

    Example:

    ```python
    fast = with_policy(model, "mixed_bfloat16")
    ```
    """
    outputs = {id(getattr(t, "_keras_history", (None,))[0]) for t in model.outputs} \
        if getattr(model, "outputs", None) else set()

    def clone_layer(layer):
        config = layer.get_config()
        if isinstance(layer, keras.Model):
            return with_policy(layer, policy)
        config["dtype"] = "float32" if id(layer) in outputs else policy
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    try:
        copy_weights(clone, model)
    except ValueError:
        raise ValueError(f"with_policy: could not clone '{model.name}' with the same "
                         "weights; train it with recipe.precision='float32'.") from None
    return clone
