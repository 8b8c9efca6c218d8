"""Keras callbacks used by :func:`training.fit` (backend-agnostic).

- :class:`BestCheckpoint`: saves the *inner* model (not the augmentation
  wrapper being trained) to ``.keras`` whenever the monitored metric improves.
- :class:`LastCheckpoint`: saves ``last.keras`` and ``state.json`` (epochs
  done) after every epoch so that ``fit(..., workdir=...)`` can resume.
- :class:`ProgressLogger`: one line per epoch with the learning rate.
- :func:`csv_logger`, :func:`tensorboard` (TensorBoard needs TensorFlow).

Every file is written atomically (``utils.files.atomic_path``: a temporary
name in the same folder, then renamed), so a crash never leaves a
half-written file.
"""
import math
import os
import time
import warnings

import keras
import numpy as np

from remotetrimmer_tf.utils.files import atomic_path, write_json_atomic

__all__ = ["BestCheckpoint", "LastCheckpoint", "ProgressLogger", "csv_logger",
           "tensorboard", "save_keras", "save_model_atomic",
           "current_learning_rate"]


def save_keras(model, path):
    """``model.save(path)`` without Keras' numpy-2 ``__array__`` DeprecationWarning
    (only that warning is silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=".*__array__.*copy.*")
        model.save(path)


def save_model_atomic(model, path):
    """Save ``model`` to ``path`` (``.keras``) atomically (``utils.files``).

    Example:

    ```python
    save_model_atomic(model, "runs/a/best.keras")
    ```
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"checkpoint path must end with '.keras', got {path!r}.")
    with atomic_path(path) as tmp:
        save_keras(model, tmp)


def current_learning_rate(optimizer):
    """The optimizer's learning rate at its current step, as a float."""
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except Exception:  # pragma: no cover - exotic optimizers
        return float("nan")


class BestCheckpoint(keras.callbacks.Callback):
    """Save ``inner_model`` whenever ``monitor`` improves.

    Args:
        path: ``.keras`` file to (over)write.
        inner_model: the model to save (``fit`` passes the user's model, not
            the augmentation wrapper it trains).
        monitor: log key, e.g. ``"val_accuracy"``.
        mode: ``"max"`` or ``"min"``.
        verbose: print a line on every save.

    Example:

    ```python
    cb = BestCheckpoint("runs/a/best.keras", model, monitor="val_accuracy")
    ```
    """

    def __init__(self, path, inner_model, monitor="val_accuracy", mode="max",
                 verbose=0, best=None):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"BestCheckpoint: mode must be 'max' or 'min', got {mode!r}.")
        self.path = os.fspath(path)
        self.inner_model = inner_model
        self.monitor = monitor
        self.mode = mode
        self.verbose = verbose
        self.best = best
        self.best_epoch = None

    def _improved(self, value):
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            warnings.warn(f"BestCheckpoint: metric {self.monitor!r} not in logs "
                          f"({sorted(logs)}); nothing saved.", stacklevel=2)
            return
        value = float(logs[self.monitor])
        if math.isfinite(value) and self._improved(value):
            self.best, self.best_epoch = value, epoch
            save_model_atomic(self.inner_model, self.path)
            if self.verbose:
                print(f"epoch {epoch + 1}: {self.monitor} improved to {value:.4f}, "
                      f"saved {self.path}")


class LastCheckpoint(keras.callbacks.Callback):
    """Save ``last.keras`` + ``state.json`` in ``workdir`` after every epoch.

    ``state.json`` holds ``{"epoch": epochs_done, "best": ..., "monitor": ...}``.
    The model is saved compiled, so its optimizer state (momentum buffers,
    step count → schedule position) is restored on resume.

    Args:
        workdir: folder for the files.
        inner_model: the model to save.
        best_checkpoint: optional :class:`BestCheckpoint` whose best value is
            recorded, so a resumed run keeps the best-so-far.

    Example:

    ```python
    cb = LastCheckpoint("runs/a", model)
    ```
    """

    def __init__(self, workdir, inner_model, best_checkpoint=None, extra_state=None):
        super().__init__()
        self.workdir = os.fspath(workdir)
        self.inner_model = inner_model
        self.best_checkpoint = best_checkpoint
        self.extra_state = dict(extra_state or {})

    def on_epoch_end(self, epoch, logs=None):
        save_model_atomic(self.inner_model, os.path.join(self.workdir, "last.keras"))
        state = dict(self.extra_state, epoch=int(epoch) + 1)
        if self.best_checkpoint is not None:
            state["best"] = self.best_checkpoint.best
            state["best_epoch"] = (None if self.best_checkpoint.best_epoch is None
                                   else int(self.best_checkpoint.best_epoch) + 1)
            state["monitor"] = self.best_checkpoint.monitor
        write_json_atomic(os.path.join(self.workdir, "state.json"), state)


class ProgressLogger(keras.callbacks.Callback):
    """Print one compact line per epoch: metrics, learning rate, seconds.

    Args:
        optimizer: optimizer whose learning rate to show (default: the
            trained model's).
        print_fn: function taking a string (default ``print``).

    Example:

    ```python
    fit(model, train, recipe=r, callbacks=[ProgressLogger()], verbose=0)
    ```
    """

    def __init__(self, optimizer=None, print_fn=print):
        super().__init__()
        self.optimizer = optimizer
        self.print_fn = print_fn
        self._t0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        opt = self.optimizer or getattr(self.model, "optimizer", None)
        parts = [f"epoch {epoch + 1}"]
        parts += [f"{k}={float(v):.4f}" for k, v in sorted(logs.items())
                  if np.ndim(v) == 0]
        if opt is not None:
            parts.append(f"lr={current_learning_rate(opt):.3g}")
        if self._t0 is not None:
            parts.append(f"{time.perf_counter() - self._t0:.1f}s")
        self.print_fn("  ".join(parts))


def csv_logger(path, append=False):
    """Keras ``CSVLogger`` writing one row per epoch to ``path``."""
    return keras.callbacks.CSVLogger(os.fspath(path), append=append)


def tensorboard(log_dir):
    """Keras ``TensorBoard`` callback (Keras writes the events through
    TensorFlow's summary API, so TensorFlow must be installed)."""
    return keras.callbacks.TensorBoard(log_dir=os.fspath(log_dir))
