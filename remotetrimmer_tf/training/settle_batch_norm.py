"""SettleBatchNorm: every epoch of :func:`training.fit` ends with settled BN statistics.

Keras' BatchNormalization keeps running averages with momentum 0.99: after
``n`` steps the initial (0, 1) still weighs ``0.99**n`` (37 % after 100 steps),
and they lag the weights. A small remote-sensing folder gives tens of steps
per stage, so a freshly trained model can score at chance in evaluation mode.
This callback re-estimates the statistics of the BN layers training moved
(precise BN: one pass over training batches with the epoch's final weights,
no gradient; :func:`settle_bn`), then validates the model as it will be saved,
then lets the checkpoints save it; it also remembers the epoch with the best
``val_accuracy`` so that :func:`fit` can end with it.
"""
import math

import keras

from remotetrimmer_tf.training.bn_recalibration import settle_bn
from remotetrimmer_tf.utils.keras_models import copy_weights

__all__ = ["SettleBatchNorm", "settle_bn"]


class SettleBatchNorm(keras.callbacks.Callback):
    """Settle BN statistics, validate and track the best epoch, at every epoch end.

    Args:
        model: the model that is saved (``fit``'s float32 model).
        data: training batches to re-estimate on (augmentation-free), or
            ``None`` to leave the statistics as training left them.
        val: validation data run on ``model`` after settling (its compiled
            loss and accuracy become ``val_loss`` / ``val_accuracy`` in the
            epoch logs), or ``None`` (Keras' own validation, if any, is read).
        restore: remember the weights of the best ``val_accuracy`` epoch.
        batch_size: batch size for numpy ``data`` / ``val``.
        steps: at most this many batches of ``data`` per re-estimation
            (``None``: all).

    Example:

    ```python
    import keras, numpy as np
    from remotetrimmer_tf.training.settle_batch_norm import SettleBatchNorm
    inp = keras.Input((4, 4, 3))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x_, y_ = np.random.rand(32, 4, 4, 3).astype("float32"), np.arange(32) % 2
    settle = SettleBatchNorm(model, x_, val=(x_, y_), batch_size=16)
    model.fit(x_, y_, epochs=1, callbacks=[settle], verbose=0)
    print(settle.batches)   # 2
    ```
    """

    def __init__(self, model, data, val=None, restore=False, batch_size=64, steps=None):
        super().__init__()
        self._target = [model]   # a list: not tracked by Keras
        self.data, self.val = data, val
        self.restore = bool(restore)
        self.batch_size = int(batch_size)
        self.steps = steps
        self.batches = 0
        self.best, self.best_epoch, self.last_epoch = None, None, None
        self._best_weights, self._best_file = None, None

    def on_epoch_end(self, epoch, logs=None):
        model = self._target[0]
        if self.data is not None:
            self.batches = settle_bn(model, self.data, steps=self.steps,
                                     batch_size=self.batch_size, only_trainable=True,
                                     name="fit: `train`")
        if logs is not None and self.val is not None:
            if isinstance(self.val, (tuple, list)) and len(self.val) == 2:   # numpy (x, y)
                result = model.evaluate(self.val[0], self.val[1], batch_size=self.batch_size,
                                        verbose=0, return_dict=True)
            else:
                result = model.evaluate(self.val, verbose=0, return_dict=True)
            logs["val_loss"] = float(result["loss"])
            logs["val_accuracy"] = float(result["accuracy"])
        self.last_epoch = int(epoch)
        value = (logs or {}).get("val_accuracy")
        if self.restore and value is not None and math.isfinite(float(value)) and (
                self.best is None or float(value) > self.best):
            self.best, self.best_epoch = float(value), int(epoch)
            self._best_weights, self._best_file = model.get_weights(), None

    def resume_best(self, path, best, best_epoch):
        """A resumed run: the best epoch so far was saved to ``path``."""
        if self.restore and best is not None and best_epoch is not None:
            self.best, self.best_epoch = float(best), int(best_epoch)
            self._best_weights, self._best_file = None, path

    def restore_best(self, model):
        """Give ``model`` the best epoch's weights; returns that epoch (1-based)
        or ``None`` when ``restore`` is off or no epoch was validated."""
        if not self.restore or self.best_epoch is None:
            return None
        if self.best_epoch != self.last_epoch:
            if self._best_weights is not None:
                model.set_weights(self._best_weights)
            elif self._best_file is not None:
                copy_weights(model, keras.saving.load_model(self._best_file, compile=False))
        return self.best_epoch + 1
