"""Serializable learning-rate schedules (backend-agnostic, ``keras.ops`` only).

All schedules take the optimizer step (``optimizer.iterations``) and know the
total number of steps (``epochs * steps_per_epoch``), so a resumed run whose
optimizer restored ``iterations`` continues on the same curve.

- :class:`MultiStepDecay`: ``lr * gamma**(number of boundaries passed)``; the
  published recipe (x0.1 at 50% and 75% of training).
- :class:`OneCycle`: PyTorch ``OneCycleLR`` (cosine annealing, no momentum
  cycling): warm up from ``max_lr/div_factor`` to ``max_lr`` over
  ``pct_start`` of the steps, then anneal to ``max_lr/(div_factor*final_div_factor)``.
- :class:`WarmupCosine`: linear warm-up from 0 to ``peak_lr`` then cosine
  decay to ``min_lr``.
"""
import math

import keras
from keras import ops

__all__ = ["MultiStepDecay", "OneCycle", "WarmupCosine", "make_schedule"]


def _check_total(cls, total_steps):
    if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
        raise ValueError(f"{cls}: `total_steps` must be a positive int, got "
                         f"{total_steps!r}.")


@keras.saving.register_keras_serializable(package="remotetrimmer_tf")
class MultiStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Step decay: multiply the rate by ``gamma`` at each milestone.

    Args:
        initial_learning_rate: rate before the first milestone.
        total_steps: total optimizer steps of the run.
        milestones: fractions of ``total_steps`` in ``(0, 1)`` (sorted).
        gamma: multiplicative factor at each milestone.
        steps_per_epoch: if given, every boundary is rounded to a whole epoch
            (``round(m * epochs) * steps_per_epoch``), like PyTorch's
            epoch-based ``MultiStepLR``.

    Example:

    ```python
    lr = MultiStepDecay(0.01, total_steps=160 * 296, milestones=(0.5, 0.75),
                        gamma=0.1, steps_per_epoch=296)
    opt = keras.optimizers.SGD(learning_rate=lr)
    ```
    """

    def __init__(self, initial_learning_rate, total_steps, milestones=(0.5, 0.75),
                 gamma=0.1, steps_per_epoch=None, name="MultiStepDecay"):
        _check_total("MultiStepDecay", total_steps)
        milestones = tuple(float(m) for m in milestones)
        if any(not 0.0 < m < 1.0 for m in milestones) or list(milestones) != sorted(milestones):
            raise ValueError("MultiStepDecay: `milestones` must be sorted fractions "
                             f"in (0, 1), got {milestones}.")
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = int(total_steps)
        self.milestones = milestones
        self.gamma = float(gamma)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        self.name = name
        if self.steps_per_epoch:
            epochs = self.total_steps / self.steps_per_epoch
            self.boundaries = tuple(int(round(m * epochs)) * self.steps_per_epoch
                                    for m in milestones)
        else:
            self.boundaries = tuple(int(round(m * self.total_steps)) for m in milestones)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.initial_learning_rate, "float32")
        for boundary in self.boundaries:
            lr = ops.where(step >= boundary, lr * self.gamma, lr)
        return lr

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "total_steps": self.total_steps,
                "milestones": list(self.milestones), "gamma": self.gamma,
                "steps_per_epoch": self.steps_per_epoch, "name": self.name}


@keras.saving.register_keras_serializable(package="remotetrimmer_tf")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle schedule (cosine annealing), as PyTorch ``OneCycleLR``.

    Args:
        max_learning_rate: peak rate.
        total_steps: total optimizer steps of the run.
        pct_start: fraction of steps spent warming up, in ``(0, 1)``.
        div_factor: initial rate is ``max_learning_rate / div_factor``.
        final_div_factor: final rate is ``initial / final_div_factor``.

    Example:

    ```python
    lr = OneCycle(0.1, total_steps=60 * 296, pct_start=0.25)
    opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    ```
    """

    def __init__(self, max_learning_rate, total_steps, pct_start=0.25,
                 div_factor=25.0, final_div_factor=1e4, name="OneCycle"):
        _check_total("OneCycle", total_steps)
        if not 0.0 < float(pct_start) < 1.0:
            raise ValueError(f"OneCycle: `pct_start` must be in (0, 1), got {pct_start}.")
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        initial = self.max_learning_rate / self.div_factor
        final = initial / self.final_div_factor
        # PyTorch: phase ends at pct_start*total - 1 and total - 1.
        up_end = max(float(self.pct_start * self.total_steps) - 1.0, 1.0)
        down_end = max(float(self.total_steps - 1), up_end + 1.0)

        def cos_anneal(start, end, pct):
            return end + (start - end) / 2.0 * (ops.cos(math.pi * pct) + 1.0)

        up_pct = ops.clip(step / up_end, 0.0, 1.0)
        down_pct = ops.clip((step - up_end) / (down_end - up_end), 0.0, 1.0)
        up = cos_anneal(initial, self.max_learning_rate, up_pct)
        down = cos_anneal(self.max_learning_rate, final, down_pct)
        return ops.where(step <= up_end, up, down)

    def get_config(self):
        return {"max_learning_rate": self.max_learning_rate,
                "total_steps": self.total_steps, "pct_start": self.pct_start,
                "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor, "name": self.name}


@keras.saving.register_keras_serializable(package="remotetrimmer_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_learning_rate`` then cosine decay to ``min``.

    Args:
        peak_learning_rate: rate at the end of the warm-up.
        total_steps: total optimizer steps of the run.
        warmup_steps: steps of linear warm-up from 0 (``>= 0``).
        min_learning_rate: rate at the last step.

    Example:

    ```python
    lr = WarmupCosine(0.1, total_steps=10_000, warmup_steps=500)
    ```
    """

    def __init__(self, peak_learning_rate, total_steps, warmup_steps=0,
                 min_learning_rate=0.0, name="WarmupCosine"):
        _check_total("WarmupCosine", total_steps)
        if not 0 <= int(warmup_steps) < int(total_steps):
            raise ValueError("WarmupCosine: `warmup_steps` must be in "
                             f"[0, total_steps), got {warmup_steps}.")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_learning_rate = float(min_learning_rate)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        warmup = self.peak_learning_rate * ops.minimum((step + 1.0) / warm, 1.0)
        decay_len = float(max(self.total_steps - self.warmup_steps, 1))
        pct = ops.clip((step - self.warmup_steps) / decay_len, 0.0, 1.0)
        cosine = self.min_learning_rate + 0.5 * (
            self.peak_learning_rate - self.min_learning_rate) * (1.0 + ops.cos(math.pi * pct))
        return ops.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate,
                "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_learning_rate": self.min_learning_rate, "name": self.name}


def make_schedule(recipe, steps_per_epoch):
    """Build the learning-rate schedule a recipe asks for.

    Args:
        recipe: mapping with ``lr, epochs, schedule, milestones, gamma,
            warmup_fraction`` (see ``training.recipes``).
        steps_per_epoch: optimizer steps per epoch (> 0).

    Returns:
        a ``LearningRateSchedule`` or a float (``schedule="constant"``).

    Example:

    ```python
    lr = make_schedule(recipes.modern(), steps_per_epoch=296)
    ```
    """
    steps_per_epoch = int(steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError(f"make_schedule: steps_per_epoch must be >= 1, got {steps_per_epoch}.")
    total = int(recipe["epochs"]) * steps_per_epoch
    name = recipe["schedule"]
    lr = float(recipe["lr"])
    if name == "constant":
        return lr
    if name == "step":
        return MultiStepDecay(lr, total, tuple(recipe["milestones"]),
                              float(recipe["gamma"]), steps_per_epoch=steps_per_epoch)
    if name == "onecycle":
        return OneCycle(lr, total, pct_start=float(recipe["warmup_fraction"]) or 0.25)
    if name == "cosine":
        return WarmupCosine(lr, total, int(round(float(recipe["warmup_fraction"]) * total)))
    raise ValueError(f"recipe.schedule must be one of 'step', 'onecycle', 'cosine', "
                     f"'constant'; got {name!r}.")
