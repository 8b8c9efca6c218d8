"""Adaptive Mining Loss (AML) for fine-tuning pruned scene classifiers.

With ``p = softmax(z)`` (or ``p = z`` when ``from_logits=False``), one-hot
labels ``y`` and ``K`` classes, every sample gets

    d    = (1/K) * sum_k |p_k - y_k|                  (0 <= d <= 2/K)
    loss = r1 * exp(d + d**2) + r2 * CE(z, y)

and the batch loss is the mean over samples, i.e.
``AML = r1 * mean_batch(exp(d + d^2)) + r2 * mean_batch(CE)`` (../shared/METHOD.md §2).
Cross-entropy uses a numerically stable log-softmax (``z - logsumexp(z)``), so
logits of ``±1e4`` give finite values and gradients.

Only ``keras`` / ``keras.ops`` are used: the loss runs on every backend.

Saving: the class is registered as ``"remotetrimmer_tf>AdaptiveMiningLoss"``.
After ``import remotetrimmer_tf`` (which registers the package's Keras
classes as soon as Keras is imported), a compiled model reloads with a plain
``keras.saving.load_model(path)``. Without importing the package, Keras raises
``TypeError`` (it cannot locate the loss); ``load_model(path, compile=False)``
still loads the architecture and weights.
"""
import warnings

import keras
from keras import ops

__all__ = ["AdaptiveMiningLoss"]

_EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="remotetrimmer_tf")
class AdaptiveMiningLoss(keras.losses.Loss):
    """Adaptive Mining Loss: ``r1 * exp(d + d^2) + r2 * cross-entropy``.

    Labels may be sparse integers (shape ``(batch,)`` or ``(batch, 1)``) or
    one-hot / soft (shape ``(batch, K)``, same as the predictions).

    Args:
        r1: weight of the mining term ``exp(d + d^2)``; ``>= 0``.
        r2: weight of the cross-entropy term; ``>= 0``.
        from_logits: ``True`` if predictions are logits (softmax applied
            here), ``False`` if they are already probabilities. Pass it
            explicitly: left out, it is ``True`` as before, with a
            ``DeprecationWarning`` (Keras losses default to ``False``; the
            keyword will become required). Saved models and configs carry
            the value, so they load unchanged and silently.
        label_smoothing: in ``[0, 1)``; smooths the targets of the
            cross-entropy term only (the mining distance ``d`` always uses the
            hard labels). 0 reproduces the paper.
        reduction: Keras loss reduction (default ``"sum_over_batch_size"``,
            i.e. the batch mean as in the paper).
        name: loss name.
        dtype: loss computation dtype (default: Keras' float policy).

    Example:

    ```python
    import numpy as np
    import remotetrimmer_tf as rt

    loss = rt.AdaptiveMiningLoss(r1=1.0, r2=1.0, from_logits=True)
    value = loss(np.array([0, 2]), np.random.randn(2, 3).astype("float32"))
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    ```
    """

    def __init__(self, r1=1.0, r2=1.0, from_logits=None, label_smoothing=0.0,
                 reduction="sum_over_batch_size", name="adaptive_mining_loss",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        for arg, value in (("r1", r1), ("r2", r2)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"AdaptiveMiningLoss: `{arg}` must be a number, "
                                f"got {value!r}.")
            if value < 0:
                raise ValueError(f"AdaptiveMiningLoss: `{arg}` must be >= 0, "
                                 f"got {value}.")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError("AdaptiveMiningLoss: `label_smoothing` must be in "
                             f"[0, 1), got {label_smoothing}.")
        self.r1 = float(r1)
        self.r2 = float(r2)
        if from_logits is None:
            warnings.warn(
                "AdaptiveMiningLoss: from_logits defaults to True (logits), unlike "
                "Keras losses (False); pass from_logits=True (or False) explicitly: "
                "the keyword will become required.", DeprecationWarning, stacklevel=2)
            from_logits = True
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def _one_hot(self, y_true, y_pred):
        num_classes = y_pred.shape[-1]
        if num_classes is None:
            raise ValueError("AdaptiveMiningLoss: the class axis (last axis) of "
                             "the predictions must have a static size.")
        pred_rank = len(y_pred.shape)
        true_rank = len(y_true.shape)
        if true_rank == pred_rank and y_true.shape[-1] != 1:
            if y_true.shape[-1] not in (None, num_classes):
                raise ValueError(
                    "AdaptiveMiningLoss: one-hot labels have "
                    f"{y_true.shape[-1]} classes but the predictions have "
                    f"{num_classes}; got labels {tuple(y_true.shape)} and "
                    f"predictions {tuple(y_pred.shape)}.")
            return ops.cast(y_true, y_pred.dtype), num_classes
        if true_rank == pred_rank:  # (batch, 1) sparse labels
            y_true = ops.squeeze(y_true, axis=-1)
        elif true_rank != pred_rank - 1:
            raise ValueError(
                "AdaptiveMiningLoss: labels must be sparse integers of shape "
                "(batch,) / (batch, 1) or one-hot of shape (batch, K) matching "
                f"the predictions; got labels {tuple(y_true.shape)} and "
                f"predictions {tuple(y_pred.shape)}.")
        y_true = ops.cast(y_true, "int32")
        return ops.one_hot(y_true, num_classes, dtype=y_pred.dtype), num_classes

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        if "float" not in str(y_pred.dtype):
            y_pred = ops.cast(y_pred, "float32")
        y_true = ops.convert_to_tensor(y_true)
        one_hot, num_classes = self._one_hot(y_true, y_pred)

        if self.from_logits:
            log_p = y_pred - ops.logsumexp(y_pred, axis=-1, keepdims=True)
            probs = ops.exp(log_p)
        else:
            probs = y_pred
            log_p = ops.log(ops.clip(y_pred, _EPSILON, 1.0))

        loss = None
        if self.r1 != 0.0:
            d = ops.mean(ops.abs(probs - one_hot), axis=-1)
            loss = self.r1 * ops.exp(d + ops.square(d))
        if self.r2 != 0.0 or loss is None:
            target = one_hot
            if self.label_smoothing:
                target = (target * (1.0 - self.label_smoothing)
                          + self.label_smoothing / num_classes)
            ce = -ops.sum(target * log_p, axis=-1)
            ce = self.r2 * ce
            loss = ce if loss is None else loss + ce
        return loss

    def get_config(self):
        config = super().get_config()
        config.update({"r1": self.r1, "r2": self.r2,
                       "from_logits": self.from_logits,
                       "label_smoothing": self.label_smoothing})
        return config
