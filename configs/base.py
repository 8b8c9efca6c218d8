"""The full config schema of `python -m remotetrimmer_tf.prune`, with defaults.

Every field exists here, so every field can be overridden on the command line
as `--config.<section>.<field>=value` (the config is locked: a misspelt field
is an error, never a silently ignored setting). Experiment files build on
`get_config()` / `experiment()` and change values only.

Sections:
  data        dataset name ("eurosat" | "uc_merced" | "folder" | "tfds:<builder>"),
              folder, classes, image size, batch size, split, normalisation.
  model       architecture (resnet18 | vgg16_bn | any keras.applications CNN
              name), SE gates, classes, local weights, head replacement.
  train       training recipe for the unpruned model (see `recipe()`).
  attention   how many batches to average the SE gates over (None = all).
  prune       importance criterion, ratio or budget (MACs, params, latency),
              scope, rounding, ignored layers, rounds (iterative pruning).
  recalibrate BN-statistics re-estimation after pruning (steps, 0 = off).
  finetune    fine-tuning recipe of the pruned model (Adaptive Mining Loss).
  evaluate    which split the accuracies are measured on.
  export      formats (LiteRT, SavedModel, ONNX, OpenVINO) and LiteRT quantisations
              to write, and whether to check them against Keras.

Example:
  python -m remotetrimmer_tf.prune --config=configs/eurosat_resnet18_modern.py \
      --config.prune.ratio=0.5 --config.finetune.epochs=10
"""
import pathlib
import sys

from ml_collections import config_dict

from remotetrimmer_tf import choices

ARCHS = ("resnet18", "vgg16_bn")   # experiment() presets; model.arch takes more
DATASETS = ("eurosat", "uc_merced")
# The choices of the options live in remotetrimmer_tf.choices (keras-free).
IMPORTANCES = choices.BUILTIN_IMPORTANCES
REDUCTIONS = choices.REDUCTIONS
SCOPES = choices.SCOPES
QUANTIZE = choices.QUANTIZE
RECIPES = ("published", "modern")

# Input size of the published experiments (EuroSAT is natively 64x64; UC Merced
# is about 256x256). Class counts and normalisation come from the dataset
# registry (remotetrimmer_tf.data), not from configs.
DATASET_IMAGE_SIZE = {"eurosat": 64, "uc_merced": 256}


def _recipes_module():
    """`remotetrimmer_tf.training.recipes` (pure ml_collections).

    Loaded from its file when the training package is not imported yet, so
    that reading a config does not import Keras/TensorFlow (bad flags are
    then reported in a fraction of a second).
    """
    name = "remotetrimmer_tf.training.recipes"
    if name in sys.modules:
        return sys.modules[name]
    import remotetrimmer_tf
    from remotetrimmer_tf.pipeline import load_module_file
    path = pathlib.Path(remotetrimmer_tf.__file__).parent / "training" / "recipes.py"
    return load_module_file("remotetrimmer_configs_recipes", path)


def recipe(kind="published", stage="train", *, epochs=None):
    """A training recipe: `remotetrimmer_tf.training.recipes.get(kind, stage)`
    plus the config-only fields `steps_per_epoch`, `tensorboard`, `settle_bn`
    and `settle_steps`.

    Args:
      kind: "published" (RemoteTrimmer paper: plain SGD lr 0.01, x0.1 at 50%
        and 75% of the epochs, no augmentation; 160 train / 40 fine-tune
        epochs) or "modern" (SGD momentum 0.9 + Nesterov, weight decay 5e-4,
        one-cycle, flips + rot90; 60 / 30 epochs).
      stage: "train" (cross-entropy) or "finetune" (Adaptive Mining Loss).
      epochs: overrides the recipe's number of epochs.

    Returns:
      A `ConfigDict` with the recipe fields of the interface contract, plus
      `steps_per_epoch` (None = one pass over the training split; a small
      number bounds each epoch, for smoke tests), `tensorboard`, and
      `settle_bn` / `settle_steps` (how BatchNorm statistics are settled at
      the end of every epoch; `training.fit`).

    Example:
      >>> recipe("modern", "finetune", epochs=15).loss
      'aml'
    """
    recipes = _recipes_module()
    if kind not in RECIPES:
        raise ValueError(f"recipe kind {kind!r} is not one of {RECIPES}")
    r = recipes.get(kind, stage)
    if epochs is not None:
        r.epochs = int(epochs)
    # CLI default: bf16 compute where the CPU has it (TF backend, no GPU);
    # --config.train.precision=float32 (and finetune) turns it off.
    r.precision = "auto"
    r.steps_per_epoch = config_dict.placeholder(int)
    r.tensorboard = True   # TensorBoard logs in <workdir>/logs/<stage>/tb
    # BatchNorm statistics re-estimated with each epoch's final weights before
    # validation and checkpoints ("precise BN" over settle_steps training
    # batches): "auto" | "epoch" | "end" | "off" (training.fit's settle_bn)
    r.settle_bn = "auto"
    r.settle_steps = 50
    return r


def get_config():
    """The full schema with its defaults (EuroSAT, ResNet-18 + SE, published).

    Returns:
      A `ConfigDict`; the CLI locks it, so only existing fields can be set.
    """
    c = config_dict.ConfigDict()
    c.name = "base"
    # Seeded stages with deterministic kernels (TF op determinism): the same
    # command on the same machine gives bitwise-identical models. False
    # keeps the seeds but lets TensorFlow pick faster non-deterministic kernels.
    c.deterministic = True

    c.data = config_dict.ConfigDict()
    c.data.name = "eurosat"
    # None: the default lookup of `remotetrimmer_tf.data` (TFDS / known folders).
    c.data.data_dir = config_dict.placeholder(str)
    c.data.image_size = 64
    c.data.batch_size = 64        # batches of the non-training passes
    c.data.seed = 0
    c.data.train_fraction = 0.7   # the published random 70/30 train/test split
    # Share of the train split carved out for validation during training
    # (0: no validation set; accuracies are always measured on the test split).
    c.data.val_fraction = 0.0
    # Unreadable / empty / truncated images stop the run (exit 2, naming the
    # file); True leaves them out instead, and the report lists them.
    c.data.skip_bad_files = False
    # Your own data (data.name="folder": data_dir/<class>/*; "tfds:<builder>":
    # any TFDS image-classification builder, data_dir = its manual dir).
    c.data.classes = config_dict.placeholder(str)  # "a,b,c"; None: subfolders
    c.data.mean = config_dict.placeholder(str)     # "m1,m2,m3"; None: measured
    c.data.std = config_dict.placeholder(str)      # on the train split
    c.data.download = False   # tfds:<builder> only: let TFDS download it
    # Band tiles (GeoTIFF / .npy folders, tfds:eurosat/all): the bands to keep,
    # 0-based, in this order ("3,2,1"); None: every band.
    c.data.bands = config_dict.placeholder(tuple)

    c.model = config_dict.ConfigDict()
    c.model.arch = "resnet18"
    c.model.se = True
    c.model.num_classes = config_dict.placeholder(int)   # None: from the data
    c.model.weights = config_dict.placeholder(str)   # local weights file for arch
    # --init_model with another class count: a fresh Dense head for the data.
    c.model.replace_head = False

    c.train = recipe("published", "train")

    c.attention = config_dict.ConfigDict()
    c.attention.steps = config_dict.placeholder(int)     # None: whole split
    # importance=cap on a model without SE gates: gates are inserted after
    # every prunable BN and trained for gate_epochs (train recipe's optimiser)
    # with the backbone frozen unless gate_freeze_backbone=False.
    c.attention.gate_epochs = 2
    c.attention.gate_reduction = 16
    c.attention.gate_freeze_backbone = True

    c.prune = config_dict.ConfigDict()
    c.prune.importance = "cap"
    c.prune.ratio = 0.7
    c.prune.scope = "local"
    c.prune.round_to = 1
    c.prune.round_mode = "up"   # "down": widths no larger than the plan
    c.prune.min_channels = 1
    c.prune.reduction = "mean"
    c.prune.ignore = ()      # names of layers never pruned
    c.prune.seed = 0
    c.prune.steps = 8        # batches the data-driven criteria (taylor) use
    # Iterative pruning: k rounds to the final ratio (or MACs / params target),
    # each pruned round BN-recalibrated and fine-tuned with the finetune recipe
    # before the next; finetune.epochs is the TOTAL over the k rounds (split as
    # evenly as possible, the remainder to the last rounds). 1 = one-shot.
    c.prune.rounds = 1
    # Budgets (remotetrimmer_tf/budget.py, latency.py): give one target instead of
    # the ratio; widths come closest to it without exceeding it.
    c.prune.target_macs = config_dict.placeholder(float)        # e.g. 15e6
    c.prune.target_params = config_dict.placeholder(float)      # trainable, e.g. 1e6
    c.prune.target_latency_ms = config_dict.placeholder(float)  # measured on `runtime`
    # or: no slower than this .keras model, timed side by side with every candidate
    c.prune.target_latency_of = config_dict.placeholder(str)
    c.prune.runtime = "litert"    # latency target: ai_edge_litert interpreter (XNNPACK)
    c.prune.threads = 1           # latency target: interpreter threads
    c.prune.dtype = "float32"     # latency target: "float32" or "int8"
    # latency target: "uniform" (one ratio for all groups, widened by MACs per ms),
    # or per-group widths keeping the most "importance" or "macs"
    c.prune.objective = choices.DEFAULT_OBJECTIVE
    # latency target: fraction aimed under it; None = twice the measured noise of a
    # side-by-side comparison with target_latency_of's model (0 for target_latency_ms)
    c.prune.latency_margin = config_dict.placeholder(float)

    c.recalibrate = config_dict.ConfigDict()
    c.recalibrate.steps = 0  # batches for BN re-estimation; 0 = off

    c.finetune = recipe("published", "finetune")

    c.evaluate = config_dict.ConfigDict()
    c.evaluate.split = "test"
    c.evaluate.steps = config_dict.placeholder(int)      # None: whole split

    c.export = config_dict.ConfigDict()
    c.export.quantize = ("none", "int8")   # the LiteRT files (litert format)
    # Formats written by the export stage: litert (the .tflite files above),
    # saved_model (tf_saved_model), onnx, openvino; "litert,onnx" or repeated.
    c.export.formats = ("litert",)
    c.export.check = True
    c.export.representative_steps = 8   # training batches for int8 calibration
    c.export.check_samples = 512        # test images the LiteRT files are checked on
    return c


def experiment(dataset, arch, kind):
    """Config of one published experiment (dataset x architecture x recipe).

    Args:
      dataset: "eurosat" or "uc_merced".
      arch: "resnet18" or "vgg16_bn".
      kind: "published" (160 + 40 epochs, the paper's recipe) or "modern"
        (60 + 30 epochs, momentum/Nesterov, one-cycle, flips + rot90).

    Returns:
      The `get_config()` schema with that experiment's values.

    Example:
      >>> experiment("uc_merced", "vgg16_bn", "modern").data.image_size
      256
    """
    if dataset not in DATASET_IMAGE_SIZE:
        raise ValueError(f"dataset {dataset!r} is not one of {DATASETS}")
    if arch not in ARCHS:
        raise ValueError(f"arch {arch!r} is not one of {ARCHS}")
    c = get_config()
    c.name = f"{dataset.replace('_', '')}_{arch.replace('_', '')}_{kind}"
    c.data.name = dataset
    c.data.image_size = DATASET_IMAGE_SIZE[dataset]
    c.model.arch = arch
    if kind not in RECIPES:
        raise ValueError(f"recipe kind {kind!r} is not one of {RECIPES}")
    c.train = recipe(kind, "train")
    c.finetune = recipe(kind, "finetune")
    # The published pipeline fine-tunes straight after pruning; the modern
    # recipe first re-estimates the BN statistics of the thinner model.
    c.recalibrate.steps = 0 if kind == "published" else 100
    if dataset == "uc_merced":
        # 2,100 images at 256x256: smaller batches keep VGG16-BN in memory.
        c.data.batch_size = c.train.batch_size = c.finetune.batch_size = 32
    return c
