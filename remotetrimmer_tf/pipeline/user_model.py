"""The CLI's handling of your own model: architectures, ``--init_model``, CAP gates.

- `check_config`: ``--config.model.arch`` is ours or a keras.applications
  CNN (did-you-mean otherwise), checked without importing TensorFlow.
- `import_custom_objects`: ``--custom_objects=module.path`` is imported
  before any model is loaded, and its Keras layers (and a
  ``custom_objects`` dict, if it has one) are registered.
- `build_model`: the configured architecture for the data's input shape,
  channels and classes (``--config.model.weights`` = a local weights file).
- `fit_init_model`: an ``--init_model`` must take the data's input shape;
  if its class count differs, ``--config.model.replace_head=True`` swaps the
  last Dense for a fresh one (trained in the train stage), else one line
  explains both options.
- `gate_model`: ``importance=cap`` on a model without SE gates inserts
  gates (`models.insert_se_gates`) and trains them for
  ``attention.gate_epochs`` (backbone frozen unless
  ``attention.gate_freeze_backbone=False``).
"""
import importlib
import inspect
import os

from remotetrimmer_tf.pipeline.workdir import PipelineError, first_line

GATED_FILE = "model_gated.keras"


def _arch_registry():
    """`models.arch_registry`, loaded from its file when the models package
    is not imported yet (importing that package imports Keras/TensorFlow)."""
    import pathlib
    import sys
    name = "remotetrimmer_tf.models.arch_registry"
    if name in sys.modules:
        return sys.modules[name]
    from remotetrimmer_tf.pipeline.config import load_module_file
    path = pathlib.Path(__file__).resolve().parents[1] / "models" / "arch_registry.py"
    return load_module_file("remotetrimmer_arch_registry_names", path)


def check_config(cfg, init_model=None):
    """Architecture name and model fields; no TensorFlow imported."""
    arch_registry = _arch_registry()
    try:
        arch_registry.check_name(cfg.model.arch)
    except ValueError as e:
        raise PipelineError(f"--config.model.arch={cfg.model.arch}: "
                            f"{first_line(e)}") from None
    if not isinstance(cfg.model.get("replace_head", False), bool):
        raise PipelineError(
            f"--config.model.replace_head={cfg.model.replace_head!r} must be "
            "True or False")
    weights = cfg.model.get("weights")
    if weights and init_model is None and not os.path.isfile(
            os.path.expanduser(weights)):
        raise PipelineError(f"--config.model.weights={weights}: no such file; "
                            "pass a local .weights.h5, .keras or .npz file")
    _check_num_classes(cfg)
    for key, low in (("gate_epochs", 0), ("gate_reduction", 1)):
        value = cfg.attention.get(key, low)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise PipelineError(
                f"--config.attention.{key}={value!r} must be an integer >= {low}")


def _check_num_classes(cfg):
    """``--config.model.num_classes`` must equal the data's class count."""
    n = cfg.model.get("num_classes")
    if n is None or not isinstance(n, int):
        return
    from remotetrimmer_tf.pipeline import user_data
    name = cfg.data.name
    if name == "folder" and cfg.data.data_dir:
        have = user_data.describe(cfg)["num_classes"]
    elif name in user_data.BUILTIN:
        from remotetrimmer_tf.data.registry import get_spec
        have = get_spec(name).num_classes
    else:
        return   # tfds: known once the builder is opened
    if n != have:
        raise PipelineError(
            f"--config.model.num_classes={n} but {name} has {have} classes; "
            "leave it unset (the class count comes from the data), or use "
            "--config.data.name=folder with a folder of your classes and "
            "--config.model.replace_head=True for an --init_model with another "
            "class count")


def import_custom_objects(module_path):
    """Imports ``module_path`` and registers its Keras classes.

    Every ``keras.layers.Layer`` / ``keras.Model`` subclass defined in the
    module, and the entries of a module-level ``custom_objects`` dict, are
    added to Keras' global custom objects (so ``load_model`` finds them);
    surgeon handlers register themselves when the module is imported.

    Returns:
        The names registered.

    Raises:
        PipelineError: the module cannot be imported (one line).
    """
    if not module_path:
        return []
    import keras
    try:
        module = importlib.import_module(module_path)
    except Exception as e:  # noqa: BLE001 - user code: one line
        raise PipelineError(
            f"--custom_objects={module_path} cannot be imported "
            f"({type(e).__name__}: {first_line(e)[:160]}); pass a module "
            "importable from the current folder or PYTHONPATH "
            "(e.g. my_layers for my_layers.py)") from None
    objects = dict(getattr(module, "custom_objects", None) or {})
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and issubclass(obj, (keras.layers.Layer,)) \
                and obj.__module__ == module.__name__:
            objects.setdefault(name, obj)
    keras.saving.get_custom_objects().update(objects)
    return sorted(objects)


def build_model(run):
    """The configured architecture for this run's data (weights=None or local)."""
    from remotetrimmer_tf.models import arch_registry
    cfg = run.cfg
    try:
        return arch_registry.build(
            cfg.model.arch, num_classes=run.num_classes,
            input_shape=run.input_shape, se=bool(cfg.model.se),
            weights=cfg.model.get("weights"))
    except ValueError as e:
        text = first_line(e)
        if not text.startswith("--config."):
            text = f"--config.model.arch={cfg.model.arch}: {text}"
        raise PipelineError(text) from None


def fit_init_model(run, model):
    """Checks an ``--init_model`` against the data; replaces its head if asked.

    Returns:
        ``(model, info)``; ``info["head_replaced"]`` tells whether the model
        got a fresh classifier (which the train stage then trains).

    Raises:
        PipelineError: input shape / channels or class count do not fit.
    """
    from remotetrimmer_tf.models.head import output_classes, replace_head
    flag = f"--init_model={run.init_model}"
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) \
        else None
    want = tuple(run.input_shape)
    if shape is not None and len(shape) == 3 and shape[:2] != want[:2] and \
            None not in shape[:2]:
        raise PipelineError(
            f"{flag} takes {shape[0]}x{shape[1]} inputs but the data is "
            f"{want[0]}x{want[1]}; set --config.data.image_size={shape[0]} or "
            "pass a model for this image size")
    if shape is not None and len(shape) == 3 and shape[-1] != want[-1]:
        raise PipelineError(
            f"{flag} takes {shape[-1]}-channel inputs but the data has "
            f"{want[-1]} channels; pass a model built for {want[-1]} channels")
    if shape is not None and len(shape) != 3:
        raise PipelineError(f"{flag} takes inputs of shape {shape}; an image "
                            "classifier taking (height, width, channels) is needed")
    classes = output_classes(model)
    info = {"head_replaced": False}
    if classes is not None and classes != run.num_classes:
        if not run.cfg.model.get("replace_head", False):
            raise PipelineError(
                f"{flag} has {classes} outputs but the data has "
                f"{run.num_classes} classes; pass "
                "--config.model.replace_head=True to replace its last Dense "
                "layer with a fresh one trained on this data, or pass a model "
                f"with {run.num_classes} outputs")
        try:
            model = replace_head(model, run.num_classes,
                                 seed=int(run.cfg.train.seed))
        except (ValueError, TypeError) as e:
            raise PipelineError(f"{flag}: {first_line(e)}") from None
        info = {"head_replaced": True, "old_classes": int(classes),
                "new_classes": int(run.num_classes)}
    return model, info


def gate_model(run, model, fit_fn):
    """SE gates for CAP on a gate-free model: insert, train, save.

    Args:
        run: the pipeline `Run`.
        model: the trained gate-free model.
        fit_fn: ``fit_fn(run, model, section, stage)`` (the stages' trainer).

    Returns:
        ``(gated_model, info)``; the model is saved as ``model_gated.keras``.
    """
    import keras
    from remotetrimmer_tf.models import insert_se_gates
    from remotetrimmer_tf.models.se import SqueezeExcite
    a = run.cfg.attention
    try:
        gated = insert_se_gates(model, reduction=int(a.get("gate_reduction", 16)))
    except ValueError as e:
        raise PipelineError(
            f"--config.prune.importance=cap: {first_line(e)}") from None
    freeze = bool(a.get("gate_freeze_backbone", True))
    epochs = int(a.get("gate_epochs", 2))
    if freeze:
        for layer in gated.layers:
            layer.trainable = isinstance(layer, SqueezeExcite)
    section = run.cfg.train.copy_and_resolve_references()
    with section.unlocked():
        section.epochs = epochs
    history = fit_fn(run, gated, section, "gates") if epochs > 0 else {}
    for layer in gated.layers:   # saved models (and their prunings) train fully
        layer.trainable = True
    run.save_model(gated, GATED_FILE)
    n = sum(isinstance(l, SqueezeExcite) for l in gated.layers)
    del keras
    return gated, {"gates_inserted": n, "gate_epochs": epochs,
                   "backbone_frozen": freeze, "gate_history": history,
                   "gated_model": GATED_FILE, "gated_metrics": run.accuracy(gated)}
