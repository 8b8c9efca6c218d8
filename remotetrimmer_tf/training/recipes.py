"""Training recipes as ``ml_collections.ConfigDict``.

Fields (the WORKSPACE contract, plus the extensions marked *):

==================  ==========================================================
epochs              training epochs
batch_size          batch size for numpy input (a ``tf.data`` input is
                    already batched)
optimizer           ``"sgd"`` | ``"adamw"``
lr                  base (step / constant) or peak (onecycle / cosine) rate
momentum, nesterov  SGD momentum
weight_decay        weight-decay coefficient (conv / dense kernels only)
weight_decay_mode*  ``"l2"``: PyTorch-style coupled decay, the gradient of
                    ``0.5*wd*||W||^2`` is added to the loss gradient (what
                    ``torch.optim.SGD(weight_decay=...)`` does);
                    ``"decoupled"``: Keras/AdamW-style ``W -= lr*wd*W``.
schedule            ``"step"`` | ``"onecycle"`` | ``"cosine"`` | ``"constant"``
milestones, gamma   step schedule: x gamma at these fractions of training
warmup_fraction     onecycle ``pct_start`` / cosine linear warm-up fraction
augment             ``"none"`` | ``"flips_rot90"`` (``"flips"``)
label_smoothing     cross-entropy target smoothing (0 = off)
loss                ``"aml"`` | ``"ce"``
aml_r1, aml_r2      AML weights (../shared/METHOD.md §2)
distill_weight*     knowledge distillation from a teacher (``fit(teacher=)``):
                    adds ``distill_weight * T^2 * KL(p_teacher^T || p^T)`` to
                    the loss (0 = off; > 0 needs a teacher)
distill_temperature* the distillation temperature ``T`` (> 0)
seed                seeds shuffling, augmentation and Keras' global RNG
precision*          ``"auto"`` | ``"float32"`` | ``"mixed_bfloat16"``: the
                    compute precision of training (``training.precision``;
                    ``"auto"`` = bf16 on a CPU with AMX / AVX512-BF16 and no
                    GPU, float32 elsewhere); the trained model stays float32
==================  ==========================================================
"""
import ml_collections

__all__ = ["published", "modern", "get", "defaults", "resolve", "RECIPE_FIELDS"]

RECIPE_FIELDS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov",
                 "weight_decay", "weight_decay_mode", "schedule", "milestones",
                 "gamma", "warmup_fraction", "augment", "label_smoothing", "loss",
                 "aml_r1", "aml_r2", "distill_weight", "distill_temperature", "seed",
                 "precision")

_STAGES = ("train", "finetune")


def defaults():
    """The defaults every recipe starts from (plain SGD, no schedule).

    Example:

    ```python
    r = defaults(); r.epochs = 3
    ```
    """
    return ml_collections.ConfigDict(dict(
        epochs=1, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.0,
        nesterov=False, weight_decay=0.0, weight_decay_mode="l2",
        schedule="constant", milestones=(0.5, 0.75), gamma=0.1,
        warmup_fraction=0.0, augment="none", label_smoothing=0.0, loss="ce",
        aml_r1=1.0, aml_r2=1.0, distill_weight=0.0, distill_temperature=4.0, seed=0,
        precision="float32"))


def _check_stage(stage):
    if stage not in _STAGES:
        raise ValueError(f"stage must be one of {_STAGES}, got {stage!r}.")


def published(stage="train"):
    """The published RemoteTrimmer recipe (../shared/METHOD.md §3).

    SGD lr 0.01 without momentum or weight decay, x0.1 at 50% and 75% of the
    epochs, no augmentation, batch 64; 160 epochs from scratch with
    cross-entropy (``stage="train"``) or 40 epochs of AML fine-tuning
    (``stage="finetune"``).

    Example:

    ```python
    recipe = published("finetune")   # 40 epochs, loss="aml"
    ```
    """
    _check_stage(stage)
    r = defaults()
    r.epochs = 160 if stage == "train" else 40
    r.schedule = "step"
    r.loss = "ce" if stage == "train" else "aml"
    return r


def modern(stage="train"):
    """A modern recipe for the same network (../shared/METHOD.md §5 anchors: 97.4%).

    SGD momentum 0.9 Nesterov, PyTorch-style L2 weight decay 5e-4 on conv /
    dense kernels, one-cycle with peak lr 0.1 (batch 64, 25% warm-up), random
    flips + 90° rotations; 60 epochs from scratch (``"train"``, cross-entropy)
    or 30 epochs of AML fine-tuning (``"finetune"``).

    Example:

    ```python
    recipe = modern(); recipe.epochs = 30     # the shorter 30 + 15 variant
    ```
    """
    _check_stage(stage)
    r = defaults()
    r.epochs = 60 if stage == "train" else 30
    r.momentum = 0.9
    r.nesterov = True
    r.weight_decay = 5e-4
    r.weight_decay_mode = "l2"
    r.lr = 0.1
    r.schedule = "onecycle"
    r.warmup_fraction = 0.25
    r.augment = "flips_rot90"
    r.loss = "ce" if stage == "train" else "aml"
    return r


def get(name, stage="train"):
    """Recipe by name: ``"published"`` or ``"modern"``.

    Example:

    ```python
    recipe = get("modern", "finetune")
    ```
    """
    table = {"published": published, "modern": modern}
    if name not in table:
        raise ValueError(f"unknown recipe {name!r}; choose from {sorted(table)}.")
    return table[name](stage)


_CHOICES = {
    "optimizer": ("sgd", "adamw"),
    "schedule": ("step", "onecycle", "cosine", "constant"),
    "augment": ("none", "flips", "flips_rot90"),
    "loss": ("aml", "ce"),
    "weight_decay_mode": ("l2", "decoupled"),
    "precision": ("auto", "float32", "mixed_bfloat16"),
}


def resolve(recipe):
    """Validate a recipe mapping and fill missing fields from :func:`defaults`.

    Args:
        recipe: ``ConfigDict``, dict, or ``None`` (= defaults).

    Returns:
        a new ``ConfigDict`` (the input is not modified).

    Raises:
        ValueError: a field with a bad value, named in the message
            (``TypeError`` for a value of the wrong type).

    Example:

    ```python
    r = resolve({"epochs": 2, "lr": 0.05})
    ```
    """
    out = defaults()
    if recipe is None:
        return out
    if isinstance(recipe, ml_collections.ConfigDict):
        items = recipe.to_dict().items()
    elif hasattr(recipe, "items"):
        items = recipe.items()
    else:
        raise TypeError(f"recipe must be a mapping (ConfigDict or dict), got {type(recipe).__name__}.")
    for key, value in items:
        if key not in RECIPE_FIELDS:
            raise ValueError(f"recipe has unknown field {key!r}; known fields: "
                             f"{', '.join(RECIPE_FIELDS)}.")
        if key == "milestones":
            value = tuple(float(v) for v in value)
        out[key] = value
    for key, choices in _CHOICES.items():
        if out[key] not in choices:
            raise ValueError(f"recipe.{key} must be one of {choices}, got {out[key]!r}.")
    for key in ("epochs", "batch_size"):
        if int(out[key]) < 1:
            raise ValueError(f"recipe.{key} must be >= 1, got {out[key]}.")
    for key in ("lr", "momentum", "weight_decay", "label_smoothing", "aml_r1",
                "aml_r2", "warmup_fraction", "distill_weight"):
        if float(out[key]) < 0:
            raise ValueError(f"recipe.{key} must be >= 0, got {out[key]}.")
    if float(out.distill_temperature) <= 0:
        raise ValueError("recipe.distill_temperature must be > 0, got "
                         f"{out.distill_temperature}.")
    if not 0.0 <= float(out.warmup_fraction) < 1.0:
        raise ValueError(f"recipe.warmup_fraction must be in [0, 1), got {out.warmup_fraction}.")
    return out
