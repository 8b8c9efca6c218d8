"""``fit`` and ``evaluate``: train / fine-tune a classifier with a recipe.

Backend-agnostic: only ``keras`` and numpy are imported (no TensorFlow), so
numpy ``(x, y)`` input works under ``KERAS_BACKEND=jax`` without TensorFlow;
``tf.data.Dataset`` input works on the TensorFlow backend.

What :func:`fit` does:

1. Resolves the recipe (``training.recipes``) and seeds Python, numpy and
   Keras' RNG with ``recipe.seed``.
2. Builds the optimizer + learning-rate schedule; the schedule spans
   ``epochs * steps_per_epoch`` steps (from the data size, or
   ``steps_per_epoch``).
3. Trains a wrapper ``x -> model(augment(x))`` that shares ``model``'s
   variables (the augmentation never enters the saved model). With
   ``weight_decay_mode="l2"`` the wrapper adds ``0.5*wd*sum ||W||^2`` over the
   conv / dense kernels to the training loss (exactly PyTorch's coupled SGD
   weight decay; BN and biases are not decayed) as an ``add_loss`` term; the
   reported training ``loss`` includes it, ``val_loss`` does not.
4. Compiles ``model`` itself with the same optimizer, loss and accuracy
   metric, so every checkpoint is a complete, resumable ``.keras`` file.
5. With ``workdir``: ``best.keras`` (best ``val_accuracy``, or training
   ``accuracy`` without ``val``), ``last.keras`` + ``state.json`` after every
   epoch, ``log.csv``. Running ``fit`` again with the same ``workdir``
   resumes from ``last.keras`` (weights, optimizer state incl. the schedule
   step) at epoch ``state.json["epoch"]``; a finished run is not retrained.
   The numpy shuffling order is a function of (seed, epoch), so a resumed run
   without augmentation equals an uninterrupted one (tested); the
   augmentation's random state is not checkpointed, so with augmentation a
   resumed run draws different flips/rotations after the restart.
"""
import json
import math
import os
import random
import sys

import keras
import numpy as np
from keras import ops

from remotetrimmer_tf import losses as losses_lib   # a module: no circle at import
from remotetrimmer_tf.training import callbacks as cbs
from remotetrimmer_tf.training.settle_batch_norm import SettleBatchNorm, settle_bn as _settle_bn
from remotetrimmer_tf.training import recipes as recipes_lib
from remotetrimmer_tf.training.augment import make_augment
from remotetrimmer_tf.training.precision import resolve_precision, with_policy
from remotetrimmer_tf.training.schedules import make_schedule
from remotetrimmer_tf.training import strategy as strategy_lib
from remotetrimmer_tf.training.strategy import strategy_scope
from remotetrimmer_tf.utils.keras_models import (clone_with_weights, copy_weights,
                                                 infer_from_logits)

__all__ = ["fit", "FitHistory", "evaluate", "make_optimizer", "make_loss", "infer_from_logits",
           "distillation_loss",
           "ArrayBatches", "decayed_variables", "set_seed"]


# --------------------------------------------------------------------------- utils
def set_seed(seed):
    """Seed Python, numpy and Keras' global RNG (and TF only if already loaded).

    Example:

    ```python
    set_seed(0)
    ```
    """
    seed = int(seed)
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    # keras.utils.set_random_seed would import TensorFlow if it is installed.
    random.seed(seed)
    np.random.seed(seed)
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils
        global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
        global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    except (ImportError, AttributeError):  # pragma: no cover - Keras internals moved
        keras.utils.set_random_seed(seed)


def decayed_variables(model):
    """The variables weight decay applies to: conv / dense / separable kernels.

    BatchNorm gamma/beta, biases and other variables are excluded.
    """
    return [v for v in model.trainable_variables
            if v.name.split("/")[-1].split(":")[0].endswith("kernel")]


def make_loss(recipe, from_logits=True):
    """Loss for ``recipe.loss``: ``"aml"`` (AdaptiveMiningLoss) or ``"ce"``.

    Example:

    ```python
    loss = make_loss(recipes.published("finetune"))
    ```
    """
    return _loss_of(recipes_lib.resolve(recipe), from_logits)


def _loss_of(recipe, from_logits):
    """:func:`make_loss` of an already resolved recipe."""
    smoothing = float(recipe.label_smoothing)
    if recipe.loss == "aml":
        return losses_lib.AdaptiveMiningLoss(r1=float(recipe.aml_r1),
                                             r2=float(recipe.aml_r2),
                                             from_logits=from_logits,
                                             label_smoothing=smoothing)
    if smoothing == 0.0:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    # Sparse CE with smoothing = AML with only the cross-entropy term.
    return losses_lib.AdaptiveMiningLoss(r1=0.0, r2=1.0, from_logits=from_logits,
                                         label_smoothing=smoothing, name="cross_entropy")


def make_optimizer(recipe, steps_per_epoch, model=None):
    """Optimizer with the recipe's learning-rate schedule.

    Args:
        recipe: recipe mapping.
        steps_per_epoch: optimizer steps per epoch (for the schedule length).
        model: needed for ``weight_decay_mode="decoupled"`` to exclude non-kernel
            variables from decay (with ``"l2"`` the decay is added to the loss by
            :func:`fit`, not by the optimizer).

    Example:

    ```python
    opt = make_optimizer(recipes.modern(), steps_per_epoch=296)
    ```
    """
    return _optimizer_of(recipes_lib.resolve(recipe), steps_per_epoch, model)


def _optimizer_of(recipe, steps_per_epoch, model=None):
    """:func:`make_optimizer` of an already resolved recipe."""
    lr = make_schedule(recipe, steps_per_epoch)
    wd = float(recipe.weight_decay)
    decoupled = wd > 0 and (recipe.weight_decay_mode == "decoupled")
    if recipe.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=float(recipe.momentum),
                                   nesterov=bool(recipe.nesterov),
                                   weight_decay=wd if decoupled else None)
    else:
        opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=wd if decoupled else 0.0)
    if decoupled and model is not None:
        keep = {id(v) for v in decayed_variables(model)}
        opt.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if id(v) not in keep])
    return opt


class ArrayBatches(keras.utils.PyDataset):
    """Batches of numpy ``(x, y)``, reshuffled every epoch from ``seed``.

    The permutation of epoch ``e`` is ``default_rng([seed, e]).permutation(n)``,
    so a resumed run sees the same order as an uninterrupted one.

    Args:
        x, y: arrays with the same first dimension.
        batch_size: batch size (the last batch may be smaller).
        seed: int to shuffle, ``None`` to keep the order.
        epoch: index of the first epoch (for resuming).
    """

    def __init__(self, x, y, batch_size, seed=None, epoch=0):
        super().__init__()
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}.")
        if len(x) == 0:
            raise ValueError("training data is empty.")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.seed = seed
        self.epoch = int(epoch)
        self._order = None

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def _indices(self):
        if self._order is None:
            rng = np.random.default_rng([int(self.seed), self.epoch])
            self._order = rng.permutation(len(self.x))
        return self._order

    def __getitem__(self, index):
        start, stop = index * self.batch_size, (index + 1) * self.batch_size
        if self.seed is None:
            return self.x[start:stop], self.y[start:stop]
        idx = self._indices()[start:stop]
        return self.x[idx], self.y[idx]

    def on_epoch_end(self):
        self.epoch += 1
        self._order = None


def _is_array_pair(data):
    return (isinstance(data, (tuple, list)) and len(data) == 2
            and all(hasattr(a, "shape") and hasattr(a, "__len__") and
                    isinstance(a, np.ndarray) for a in data))


def _is_tf_dataset(data):
    return (keras.backend.backend() == "tensorflow" and hasattr(data, "element_spec")
            and hasattr(data, "map") and hasattr(data, "prefetch"))


def _augment_dataset(ds, augment, seed):
    """``ds`` with ``augment`` applied to the images of every batch, prefetched.

    Batch ``i`` draws its transforms statelessly from ``(seed, i)``: the same
    draws in every run, whatever the map's parallelism. (A stateful draw —
    the layer's seed generator — made TensorFlow's op determinism turn every
    parallel map upstream into a sequential one, printing an "E0000 ...
    NodeDef mentions attribute use_unbounded_threadpool" line.)"""
    import tensorflow as tf  # TF-only path (tf.data input), imported lazily

    def fn(step, batch):
        x, rest = batch[0], tuple(batch[1:])
        key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(step, tf.int64)])
        draws = tf.random.stateless_uniform((tf.shape(x)[0], 3), seed=key)
        return (augment(x, training=True, draws=draws),) + rest
    return ds.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True).prefetch(tf.data.AUTOTUNE)


def _train_stream(train_data, steps_per_epoch, spe, recipe, distributed):
    """``(train_data, fit steps, augment)`` as Keras' fit reads them; ``augment``
    is ``None`` when it moved into the tf.data pipeline."""
    augment = make_augment(recipe.augment, seed=int(recipe.seed))
    fit_steps = steps_per_epoch
    if steps_per_epoch is None and _is_tf_dataset(train_data):
        # One iterator for the whole run: a finite dataset is repeated and
        # cut into epochs of its own length, so the prefetch keeps running
        # across epoch boundaries (measured: Keras' new iterator per epoch
        # cost ~10 ms a step of the pruned ResNet-18 on 2 cores at 8 steps
        # an epoch; tools/bench_train.py). The same under a strategy, so
        # that one process and N workers draw the same epochs.
        train_data, fit_steps = train_data.repeat(), spe
    if augment is not None and not distributed and _is_tf_dataset(train_data):
        # In the input pipeline, overlapped with the step (measured: the
        # same gather inside the training graph costs ~20% of a ResNet-18
        # step on a 2-core CPU, in tf.data next to nothing).
        train_data = _augment_dataset(train_data, augment, recipe.seed)
        augment = None
    return train_data, fit_steps, augment


def _steps_of(data, name):
    """Number of batches of a tf.data / PyDataset / sized iterable, or None."""
    if hasattr(data, "cardinality"):
        n = int(data.cardinality())
        return n if n > 0 else None
    if hasattr(data, "__len__"):
        return len(data)
    return None


def _log_probs(z, from_logits, temperature):
    """log softmax(z / T) for logits, or of log(p) / T for probabilities."""
    z = ops.cast(z, "float32")
    if not from_logits:
        z = ops.log(ops.clip(z, 1e-7, 1.0))
    return ops.log_softmax(z / temperature, axis=-1)


def distillation_loss(student, teacher, temperature=4.0, student_from_logits=True,
                      teacher_from_logits=True):
    """Hinton's knowledge-distillation term ``T^2 * KL(p_t^T || p_s^T)``, batch mean.

    ``p^T = softmax(z / T)``; the ``T^2`` keeps its gradient scale independent
    of ``T``. The teacher's output carries no gradient.

    Args:
        student, teacher: ``(batch, classes)`` logits (or probabilities when the
            matching ``*_from_logits`` is False).
        temperature: ``T > 0``.

    Example:

    ```python
    kd = distillation_loss(student_logits, teacher_logits, temperature=4.0)
    ```
    """
    t = float(temperature)
    log_ps = _log_probs(student, student_from_logits, t)
    log_pt = ops.stop_gradient(_log_probs(teacher, teacher_from_logits, t))
    kl = ops.sum(ops.exp(log_pt) * (log_pt - log_ps), axis=-1)
    return (t * t) * ops.mean(kl)


class _Trainer(keras.Model):
    """``x -> inner(augment(x))`` sharing ``inner``'s variables.

    With ``l2 > 0`` it adds ``0.5 * l2 * sum ||W||^2`` over the inner model's
    kernels as an ``add_loss`` term while training, so Keras scales it like any
    regularization loss (e.g. by 1/replicas under ``tf.distribute``). With a
    frozen ``teacher`` it adds ``distill_weight * distillation_loss`` between
    the teacher's and the inner model's outputs on the same augmented batch.
    """

    def __init__(self, inner, augment=None, l2=0.0, teacher=None, distill_weight=0.0,
                 temperature=4.0, from_logits=True, teacher_from_logits=True, **kwargs):
        super().__init__(name=kwargs.pop("name", "trainer"), **kwargs)
        self.inner = inner
        self.augment = augment
        self.l2 = float(l2)
        self.teacher = teacher
        self.distill_weight = float(distill_weight)
        self.temperature = float(temperature)
        self.from_logits = bool(from_logits)
        self.teacher_from_logits = bool(teacher_from_logits)

    def call(self, x, training=False):
        if training and self.l2 > 0:
            # (the variable list is not stored on self: Keras would track it)
            decay = decayed_variables(self.inner)
            if decay:
                penalty = ops.sum(ops.stack([ops.sum(ops.square(ops.cast(v, "float32")))
                                             for v in decay]))
                self.add_loss(ops.cast(0.5 * self.l2, "float32") * penalty)
        if self.augment is not None:
            x = self.augment(x, training=training)
        y = self.inner(x, training=training)
        if training and self.teacher is not None and self.distill_weight > 0:
            kd = distillation_loss(y, self.teacher(x, training=False), self.temperature,
                                   self.from_logits, self.teacher_from_logits)
            self.add_loss(ops.cast(self.distill_weight, "float32") * kd)
        return y


class _SyncWeights(keras.callbacks.Callback):
    """Copies the trained (mixed-precision) model's weights into the float32
    model at every epoch end, before the checkpoints save it."""

    def __init__(self, src, dst):
        super().__init__()
        self._src, self._dst = [src], [dst]   # lists: not tracked by Keras

    def on_epoch_end(self, epoch, logs=None):
        copy_weights(self._dst[0], self._src[0])


def _frozen_teacher(teacher, student):
    """A frozen copy of ``teacher`` (the user's model is not modified)."""
    if not isinstance(teacher, keras.Model):
        raise TypeError(f"fit: `teacher` must be a keras.Model, got {type(teacher).__name__}.")
    s_in, t_in = tuple(student.input_shape[1:]), tuple(teacher.input_shape[1:])
    s_out, t_out = tuple(student.output_shape[1:]), tuple(teacher.output_shape[1:])
    if s_in != t_in or s_out != t_out:
        raise ValueError(f"fit: teacher '{teacher.name}' maps {t_in} -> {t_out} but the "
                         f"model '{student.name}' maps {s_in} -> {s_out}; distillation "
                         "needs the same input and number of classes.")
    frozen = clone_with_weights(teacher)
    frozen.trainable = False
    return frozen


def _resolve_jit(jit_compile):
    if jit_compile != "auto":
        return jit_compile
    if keras.backend.backend() == "tensorflow":
        # XLA is slow to compile and often slower on CPU: use it only on GPU/TPU.
        try:
            accel = keras.distribution.list_devices("gpu") or keras.distribution.list_devices("tpu")
        except Exception:
            accel = []
        return "auto" if accel else False
    return "auto"


def _restore(workdir, inner, trainer, optimizer):
    """Load last.keras into ``inner`` and the optimizer; return state dict."""
    with open(os.path.join(workdir, "state.json")) as f:
        state = json.load(f)
    last = keras.saving.load_model(os.path.join(workdir, "last.keras"), compile=True)
    try:
        copy_weights(inner, last)
    except ValueError as e:
        raise ValueError(f"fit: {workdir}/last.keras holds a different model than the "
                         "one being trained; use a new workdir or delete it.") from e
    src = getattr(last, "optimizer", None)
    if src is not None and src.variables:
        if len(src.variables) != len(optimizer.variables) or any(
                tuple(a.shape) != tuple(b.shape) for a, b in zip(src.variables, optimizer.variables)):
            raise ValueError(f"fit: the optimizer state in {workdir}/last.keras does not "
                             "match this recipe's optimizer; use a new workdir.")
        for dst, value in zip(optimizer.variables, src.variables):
            dst.assign(ops.convert_to_numpy(value))
    return state


def _backup_epoch(backup_dir):
    """Epochs done according to a ``BackupAndRestore`` folder, or None."""
    path = os.path.join(os.fspath(backup_dir), "training_metadata.json")
    try:
        with open(path) as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fit(  # long: the training run in order; half of it is its docstring
        model, train, val=None, recipe=None, workdir=None, callbacks=(), verbose="auto",
        strategy=None, initial_epoch=0, steps_per_epoch=None, from_logits=None,
        tensorboard=False, resume=True, jit_compile="auto", teacher=None,
        backup_dir=None, settle_bn="auto", settle_steps=50, restore_best="auto"):
    """Train ``model`` in place with a recipe; return the Keras history dict.

    Training ends with settled BatchNorm statistics: Keras' running averages
    (momentum 0.99) need hundreds of steps to forget their initial (0, 1), so a
    short run on a small folder would otherwise leave a model that scores at
    chance in evaluation mode. ``settle_bn`` re-estimates them with the
    current weights ("precise BN": one pass over training batches, no
    gradient) before each epoch's validation and checkpoints.

    Args:
        model: a built ``keras.Model`` (trained in place; with a ``strategy`` a
            copy is trained inside the strategy scope and its weights copied back).
        train: numpy ``(x, y)`` (any backend; reshuffled each epoch with
            ``recipe.seed``, batched with ``recipe.batch_size``) or a batched
            ``tf.data.Dataset`` / ``keras.utils.PyDataset`` of
            ``(images, int labels)``.
        val: validation data in the same forms, or ``None``.
        recipe: mapping (see ``training.recipes``); ``None`` = defaults.
        workdir: folder for ``best.keras``, ``last.keras``, ``state.json``,
            ``log.csv`` (and ``tb/``); enables resuming.
        callbacks: extra Keras callbacks.
        verbose: Keras ``fit`` verbosity.
        strategy: ``None``, a ``tf.distribute.Strategy`` or a
            ``keras.distribution.Distribution`` (see ``training.strategy``).
        initial_epoch: epoch to start from (overridden by a resumed workdir).
        steps_per_epoch: batches per epoch; required for infinite datasets.
        from_logits: whether the model outputs logits (``None``: inferred from
            the last layer).
        tensorboard: also write TensorBoard logs to ``workdir/tb`` (needs TF).
        resume: continue from ``workdir/last.keras`` if present.
        jit_compile: passed to ``compile`` (``"auto"``: XLA off on CPU for TF).
        teacher: a trained ``keras.Model`` with the same input and classes
            (e.g. the unpruned parent) to distill from; needs
            ``recipe.distill_weight > 0``. A frozen copy is used: the teacher
            itself is not modified.
        backup_dir: folder for ``keras.callbacks.BackupAndRestore`` (the
            pipeline passes one under ``multi_worker``): the training state
            (weights, optimizer, epoch) is backed up after every epoch, and a
            ``fit`` restarted after a crash or a killed worker resumes from
            it instead of from scratch; the backup is deleted when training
            finishes. Under ``multi_worker`` each worker needs its own folder.
        settle_bn: ``"epoch"``: re-estimate the BN statistics of the trainable
            BatchNormalization layers after every epoch, before validation
            (then run on the model as saved) and checkpoints; ``"end"``: once,
            after training; ``"off"``: keep Keras' running averages;
            ``"auto"``: ``"epoch"``, or ``"end"`` under a ``strategy``.
        settle_steps: training batches per re-estimation (``None``: all of
            ``train``); numpy input uses a fixed random subset.
        restore_best: with ``val``, end with the weights of the epoch with the
            best ``val_accuracy`` (``"auto"``: when ``val`` is given);
            otherwise the last epoch's weights are kept.

    Returns:
        dict ``{metric: [per-epoch values]}`` (``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``) of the epochs run by this call
        (``{}`` if a resumed ``workdir`` had already finished), a
        :class:`FitHistory` whose ``bn_settle`` / ``bn_batches`` say how the
        BN statistics were settled and ``kept_epoch`` / ``kept_by`` which
        epoch's weights the model holds.

    Example:

    ```python
    from remotetrimmer_tf import training
    hist = training.fit(model, (x_train, y_train), (x_val, y_val),
                        recipe=training.recipes.modern(), workdir="runs/r18")
    ```
    """
    _check_model(model)
    recipe = recipes_lib.resolve(recipe)   # the one resolution; helpers get it resolved
    set_seed(recipe.seed)
    _check_teacher(teacher, recipe)
    if from_logits is None:
        from_logits = infer_from_logits(model)
    distributed = strategy is not None
    settle = _settle_mode(settle_bn, distributed)
    restore = _restore_mode(restore_best, val)
    # under "epoch" validation runs on the float32 model as saved, after the
    # BN statistics are settled (a callback), not inside Keras' fit
    keras_val = val if settle != "epoch" else None
    train_data, val_data, spe = _fit_data(train, keras_val, recipe, steps_per_epoch, strategy)
    own_val = _as_val(val, recipe) if keras_val is None else None
    settle_data = _settle_source(train, settle_steps, recipe) if settle != "off" else None
    # "auto" picks bf16 on a single CPU process only; under a distribution
    # strategy (untested with the bf16 clone) it stays float32
    policy = resolve_precision("float32" if distributed and recipe.precision == "auto"
                               else recipe.precision)
    with strategy_scope(strategy):
        inner, keeper = _fit_models(model, policy, strategy)
        train_data, fit_steps, augment = _train_stream(
            train_data, steps_per_epoch, spe, recipe, distributed)
        jit = _resolve_jit(jit_compile)
        trainer, optimizer, loss = _compiled_trainer(
            inner, keeper, augment, recipe, spe, from_logits, teacher, policy, strategy, jit)
        settler = SettleBatchNorm(keeper, settle_data if settle == "epoch" else None,
                                  own_val, restore, int(recipe.batch_size),
                                  steps=settle_steps)
        initial_epoch, all_callbacks = _fit_callbacks(
            workdir, resume, recipe, inner, keeper, trainer, optimizer,
            val if val is not None else val_data,
            initial_epoch, tensorboard, callbacks, backup_dir, verbose, settler)
        if isinstance(train_data, ArrayBatches):
            train_data.epoch = int(initial_epoch)
            train_data._order = None
        history = {}
        if initial_epoch < int(recipe.epochs):
            hist = trainer.fit(train_data, validation_data=val_data, epochs=int(recipe.epochs),
                               initial_epoch=int(initial_epoch),
                               steps_per_epoch=fit_steps, callbacks=all_callbacks,
                               verbose=verbose, shuffle=False)
            history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        # multi_worker: BN moving statistics are per replica; every worker ends
        # with the chief's (as DDP's broadcast buffers), so all workers agree.
        strategy_lib.sync_from_chief(strategy, inner)
    if keeper is not inner and not history:
        # no epoch ran in this call, so no epoch end synced the float32 model
        # (e.g. a backup restored into `inner` had every epoch done)
        copy_weights(keeper, inner)
    kept = settler.restore_best(keeper)
    if distributed:
        copy_weights(model, keeper)
        model.compile(optimizer=_optimizer_of(recipe, spe), loss=loss,
                      metrics=["accuracy"], jit_compile=jit)
    batches = settler.batches
    if settle == "end":
        batches = _settle_bn(model, settle_data, steps=settle_steps, only_trainable=True,
                             batch_size=int(recipe.batch_size), name="fit: `train`")
    return FitHistory(history, bn_settle=settle, bn_batches=batches, kept_epoch=kept)


class FitHistory(dict):
    """What :func:`fit` returns: the Keras history dict ``{metric: [values]}``
    plus how it ended: ``bn_settle`` (``"epoch"`` / ``"end"`` / ``"off"``),
    ``bn_batches`` (training batches of the last BN re-estimation; 0: none),
    ``kept_epoch`` (1-based epoch whose weights were restored, ``None``: the
    last) and ``kept_by``."""

    def __init__(self, history, bn_settle="off", bn_batches=0, kept_epoch=None):
        super().__init__(history)
        self.bn_settle, self.bn_batches = bn_settle, int(bn_batches or 0)
        self.kept_epoch = kept_epoch

    @property
    def kept_by(self):
        """``"val_accuracy"`` when the best epoch was restored, else ``"last"``."""
        return "val_accuracy" if self.kept_epoch else "last"

    def summary(self):
        """The JSON-able facts (for reports)."""
        return {"bn_settle": self.bn_settle, "bn_batches": self.bn_batches,
                "kept_epoch": self.kept_epoch, "kept_by": self.kept_by}


_SETTLE_MODES = ("auto", "epoch", "end", "off")


def _settle_mode(settle_bn, distributed):
    if settle_bn is True:
        settle_bn = "auto"
    if settle_bn in (False, None):
        settle_bn = "off"
    if settle_bn not in _SETTLE_MODES:
        raise ValueError(f"fit: settle_bn must be one of {_SETTLE_MODES}, got {settle_bn!r}.")
    if settle_bn == "auto":
        return "end" if distributed else "epoch"
    if settle_bn == "epoch" and distributed:
        raise ValueError("fit: settle_bn='epoch' is not available under a distribution "
                         "strategy; use 'end' (or 'auto').")
    return settle_bn


def _restore_mode(restore_best, val):
    if restore_best == "auto":
        return val is not None
    if restore_best and val is None:
        raise ValueError("fit: restore_best=True needs `val` (the best epoch is chosen "
                         "by val_accuracy).")
    return bool(restore_best)


def _settle_source(train, steps, recipe):
    """The training batches BN statistics are re-estimated on (at most
    ``steps`` of them are used): numpy input: a fixed random subset
    (``recipe.seed``); otherwise ``train`` as it iterates."""
    if steps is not None and int(steps) < 1:
        raise ValueError(f"fit: settle_steps must be >= 1 or None, got {steps}.")
    if _is_array_pair(train):
        x = train[0]
        n = len(x) if steps is None else min(len(x), int(steps) * int(recipe.batch_size))
        return x[np.random.default_rng([int(recipe.seed), 7]).permutation(len(x))[:n]]
    if isinstance(train, keras.utils.PyDataset):
        return _PyDatasetBatches(train)
    return train


class _PyDatasetBatches:
    """The batches of a PyDataset by its indexing (iterating one never ends)."""

    def __init__(self, data):
        self.data = data

    def __iter__(self):
        return (self.data[i] for i in range(len(self.data)))


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"fit: `model` must be a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError("fit: `model` must be built (call it once or give it an Input).")


def _check_teacher(teacher, recipe):
    distill_weight = float(recipe.distill_weight)
    if teacher is not None and distill_weight <= 0:
        raise ValueError("fit: a `teacher` was given but recipe.distill_weight is 0; set "
                         "it > 0 (e.g. 1.0) to distill, or drop the teacher.")
    if teacher is None and distill_weight > 0:
        raise ValueError(f"fit: recipe.distill_weight is {distill_weight} but no `teacher` "
                         "was given; pass teacher= (e.g. the unpruned model) or set it to 0.")


def _fit_data(train, val, recipe, steps_per_epoch, strategy):
    """(train_data, val_data, steps per epoch) in the forms Keras ``fit`` reads."""
    batch_size = int(recipe.batch_size)
    if _is_array_pair(train):
        train_data = ArrayBatches(train[0], train[1], batch_size, seed=int(recipe.seed))
    elif isinstance(train, (tuple, list)):
        raise TypeError("fit: `train` must be numpy (x, y), a tf.data.Dataset or a "
                        "keras.utils.PyDataset; got a tuple of "
                        f"{[type(a).__name__ for a in train]}.")
    else:
        train_data = train
    val_data = _as_val(val, recipe)
    spe = steps_per_epoch or _steps_of(train_data, "train")
    if not spe:
        raise ValueError("fit: cannot tell how many batches `train` has (infinite or "
                         "unknown cardinality); pass steps_per_epoch=.")
    # multi-worker: every worker keeps its share of each global batch
    return (strategy_lib.prepare_dataset(strategy, train_data),
            strategy_lib.prepare_dataset(strategy, val_data), int(spe))


def _as_val(val, recipe):
    """Validation data in a form Keras reads (numpy pairs batched, in order)."""
    if _is_array_pair(val):
        return ArrayBatches(val[0], val[1], int(recipe.batch_size), seed=None)
    return val


def _fit_models(model, policy, strategy):
    """``(inner, keeper)``: ``inner`` is what is trained; ``keeper`` (float32,
    = inner unless mixed precision) is what checkpoints save and resumes load.
    Called inside the strategy scope."""
    distributed = strategy is not None
    if policy != "float32":
        inner = with_policy(model, policy)
        keeper = clone_with_weights(model) if distributed else model
    else:
        inner = clone_with_weights(model) if distributed else model
        keeper = inner
    strategy_lib.sync_from_chief(strategy, inner)   # no-op unless multi_worker
    return inner, keeper


def _compiled_trainer(inner, keeper, augment, recipe, spe, from_logits, teacher, policy,
                      strategy, jit):
    """The compiled :class:`_Trainer` around ``inner`` (augmentation, L2, KD),
    its optimizer and loss; ``keeper`` is compiled with the same optimizer."""
    optimizer = _optimizer_of(recipe, spe, model=inner)
    l2 = float(recipe.weight_decay) if recipe.weight_decay_mode == "l2" else 0.0
    frozen = _frozen_teacher(teacher, inner) if teacher is not None else None
    if frozen is not None:
        strategy_lib.sync_from_chief(strategy, frozen)
    if frozen is not None and policy != "float32":
        frozen = with_policy(frozen, policy)
        frozen.trainable = False
    trainer_cls = strategy_lib.trainer_class(_Trainer, strategy)
    trainer = trainer_cls(inner, augment, l2=l2, teacher=frozen,
                          distill_weight=float(recipe.distill_weight),
                          temperature=float(recipe.distill_temperature),
                          from_logits=from_logits,
                          teacher_from_logits=(infer_from_logits(teacher)
                                               if teacher is not None else True))
    loss = _loss_of(recipe, from_logits)
    trainer.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=jit)
    # Build the optimizer on the inner model's variable order, so its state
    # saves/loads with the inner model (same variable objects as trainer's).
    optimizer.build(inner.trainable_variables)
    keeper.compile(optimizer=optimizer, loss=_loss_of(recipe, from_logits),
                   metrics=["accuracy"], jit_compile=jit)
    return trainer, optimizer, loss


def _fit_callbacks(workdir, resume, recipe, inner, keeper, trainer, optimizer, val_data,
                   initial_epoch, tensorboard, callbacks, backup_dir, verbose, settler):
    """``(initial_epoch, callbacks)``: resume from ``workdir`` / ``backup_dir``;
    the weight sync, BN settling + validation, checkpoint, log and backup
    callbacks, in the order each needs the one before."""
    all_callbacks = [_SyncWeights(inner, keeper)] if keeper is not inner else []
    all_callbacks.append(settler)
    if workdir is not None:
        initial_epoch, saving = _workdir_callbacks(
            os.fspath(workdir), resume, int(recipe.epochs), inner, keeper, trainer,
            optimizer, val_data, initial_epoch, tensorboard, verbose, settler)
        all_callbacks += saving
    all_callbacks += list(callbacks)
    if backup_dir is not None:
        backed_up = _backup_epoch(backup_dir)
        if backed_up is not None:   # BackupAndRestore will resume there
            initial_epoch = backed_up
        # First: an epoch counts as done once backed up, so a kill between
        # it and the log/checkpoints never makes a restart repeat an epoch.
        all_callbacks.insert(0, keras.callbacks.BackupAndRestore(
            os.fspath(backup_dir), double_checkpoint=True))
        if not trainer.built:   # BackupAndRestore restores into a built model
            trainer(ops.zeros((1,) + tuple(inner.input_shape[1:])), training=False)
    return initial_epoch, all_callbacks


def _workdir_callbacks(workdir, resume, epochs, inner, keeper, trainer, optimizer, val_data,
                       initial_epoch, tensorboard, verbose, settler):
    """Resume from ``workdir/last.keras``; best / last checkpoints, CSV log."""
    os.makedirs(workdir, exist_ok=True)
    state, all_callbacks = {}, []
    if resume and os.path.exists(os.path.join(workdir, "state.json")) and \
            os.path.exists(os.path.join(workdir, "last.keras")):
        state = _restore(workdir, keeper, trainer, optimizer)
        if keeper is not inner:
            copy_weights(inner, keeper)
        initial_epoch = int(state.get("epoch", 0))
        if verbose:
            print(f"fit: resuming {workdir} at epoch {initial_epoch}/{epochs}")
    monitor = "val_accuracy" if val_data is not None else "accuracy"
    best = cbs.BestCheckpoint(os.path.join(workdir, "best.keras"), keeper,
                              monitor=monitor, mode="max", best=state.get("best"))
    if state.get("best_epoch"):
        best.best_epoch = int(state["best_epoch"]) - 1
        settler.resume_best(os.path.join(workdir, "best.keras"), state.get("best"),
                            best.best_epoch)
    all_callbacks += [best,
                      cbs.LastCheckpoint(workdir, keeper, best_checkpoint=best,
                                         extra_state={"epochs": epochs}),
                      cbs.csv_logger(os.path.join(workdir, "log.csv"),
                                     append=initial_epoch > 0)]
    if tensorboard:
        all_callbacks.append(cbs.tensorboard(os.path.join(workdir, "tb")))
    return initial_epoch, all_callbacks


# ----------------------------------------------------------------------- evaluate
def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def evaluate(model, data, batch_size=64, steps=None, from_logits=None):
    """Accuracy and mean cross-entropy of ``model`` on ``data``.

    Args:
        model: a Keras classifier (logits or softmax output).
        data: numpy ``(x, y)`` with integer labels, a batched ``tf.data.Dataset``
            or an iterable of ``(x, y)`` batches.
        batch_size: batch size for numpy input.
        steps: evaluate at most this many batches.
        from_logits: ``None`` = inferred from the last layer.

    Returns:
        ``{"accuracy": float, "loss": float}`` (loss = cross-entropy, in nats,
        averaged over samples).

    Example:

    ```python
    evaluate(model, (x_test, y_test))   # {'accuracy': 0.97, 'loss': 0.11}
    ```
    """
    if from_logits is None:
        from_logits = infer_from_logits(model)
    batch_size = int(batch_size)
    if _is_array_pair(data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"evaluate: x and y lengths differ ({len(x)} vs {len(y)}).")
        batches = ((x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size))
    elif hasattr(data, "__iter__"):
        batches = data
    else:
        raise TypeError("evaluate: `data` must be numpy (x, y), a tf.data.Dataset or an "
                        f"iterable of (x, y) batches; got {type(data).__name__}.")
    correct, total, nll = 0, 0, 0.0
    for i, batch in enumerate(batches):
        if steps is not None and i >= steps:
            break
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("evaluate: every batch must be (x, y[, sample_weight]).")
        xb, yb = batch[0], batch[1]
        out = np.asarray(ops.convert_to_numpy(model.predict_on_batch(xb)), dtype=np.float64)
        yb = np.asarray(yb)
        if yb.ndim == out.ndim and yb.shape[-1] == out.shape[-1] and out.shape[-1] > 1:
            yb = yb.argmax(-1)  # one-hot labels
        yb = yb.reshape(-1).astype(np.int64)
        if from_logits:
            logp = _log_softmax(out)
        else:
            logp = np.log(np.clip(out, 1e-12, 1.0))
        nll -= float(logp[np.arange(len(yb)), yb].sum())
        correct += int((out.argmax(-1) == yb).sum())
        total += len(yb)
    if total == 0:
        raise ValueError("evaluate: `data` yielded no samples.")
    return {"accuracy": correct / total, "loss": nll / total}
