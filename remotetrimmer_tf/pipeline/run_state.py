"""What the stages of one run share: :class:`Run` (config, run folder,
flags, data and models loaded lazily) and how artifacts are loaded and saved.

Helpers (``pipeline.inputs``, ``user_model``, ``workers``) read a ``Run`` too,
so it lives below the stages, not among them.
"""
import os

from remotetrimmer_tf.pipeline.workdir import PipelineError, first_line

__all__ = ["Run", "load_keras", "load_split", "take", "without_optimizer"]


class Run:
    """What the stages share: config, run folder, flags, lazy data/models.

    Args:
      config: the (locked) `ConfigDict`.
      workdir: a `Workdir`.
      init_model: path of a user model to start from, or None.
      strategy: "default" | "mirrored" | "data_parallel" | "multi_worker" | "tpu".
      verbose: Keras verbosity for training.
      strategy_object: the strategy already created in this process, if any.
    """

    def __init__(self, config, workdir, init_model=None, strategy="default",
                 verbose=2, strategy_object=None):
        self.cfg = config
        self.wd = workdir
        self.init_model = init_model
        self.strategy_name = strategy
        self.verbose = verbose
        self._data = {}
        self._strategy = strategy_object   # one strategy per process
        self._init_model = None
        self.keys = {}

    # -------------------------------------------------------------- plumbing
    @property
    def num_classes(self):
        if self.cfg.model.num_classes is not None:
            return int(self.cfg.model.num_classes)
        from remotetrimmer_tf.pipeline import user_data
        if user_data.is_user_dataset(self.cfg.data.name):
            return user_data.describe(self.cfg)["num_classes"]
        from remotetrimmer_tf.data.registry import get_spec
        return get_spec(self.cfg.data.name).num_classes

    @property
    def input_shape(self):
        s = int(self.cfg.data.image_size)
        from remotetrimmer_tf.pipeline import user_data
        if user_data.is_user_dataset(self.cfg.data.name):
            return (s, s, user_data.describe(self.cfg)["channels"])
        return (s, s, 3)

    def data_dir(self):
        return self.cfg.data.data_dir

    @property
    def is_chief(self):
        """True unless this process is a non-chief worker of --strategy=
        multi_worker (which writes nothing and skips evaluations)."""
        if self.strategy_name != "multi_worker":
            return True
        from remotetrimmer_tf.training import strategy as strategy_mod
        return strategy_mod.is_chief(self.strategy())

    def strategy(self):
        """The tf.distribute strategy (None for "default")."""
        if self.strategy_name in (None, "", "default"):
            return None
        if self._strategy is None:
            from remotetrimmer_tf.training import strategy as strategy_mod
            self._strategy = strategy_mod.get_strategy(self.strategy_name)
        return self._strategy

    def data(self, split, *, batch_size=None, shuffle=False, training=False):
        """Batches `(images, labels)` of a split (cached per arguments).

        A `tf.data.Dataset` on the TensorFlow backend, else numpy `(x, y)`.
        """
        batch_size = int(batch_size or self.cfg.data.batch_size)
        key = (split, batch_size, shuffle)
        if key not in self._data:
            self._data[key] = load_split(self.cfg, split, batch_size, shuffle,
                                          self.wd)
        return self._data[key]

    def start_stage(self):
        """Forgets the cached *shuffled* datasets: a tf.data shuffle draws a
        new order for every pass, so a stage that reused one consumed by an
        earlier stage would see another order after a resume than in an
        uninterrupted run. Unshuffled datasets (same order every pass) stay."""
        self._data = {k: v for k, v in self._data.items() if not k[2]}

    def release_init_model(self):
        """Forget the loaded ``--init_model`` (its memory goes after train)."""
        self._init_model = None

    def load_init_model(self):
        """The `--init_model` as a Keras model (loaded once; only read).

        Raises:
          PipelineError: Keras cannot load it.
        """
        if self._init_model is None:
            try:
                self._init_model = load_keras(os.path.abspath(self.init_model))
            except Exception as e:  # noqa: BLE001 - any load failure is bad input
                msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                raise PipelineError(
                    f"--init_model={self.init_model} cannot be loaded by Keras "
                    f"({type(e).__name__}: {msg}); pass a .keras file saved by "
                    "Keras 3 with remotetrimmer_tf's layers") from None
        return self._init_model

    def load_model(self, name):
        """Loads a `.keras` artifact of this run (custom layers registered)."""
        return load_keras(self.wd / name)

    def save_model(self, model, name, track=True):
        """Saves `model` atomically, without optimizer state (so file sizes
        compare models, not training state); `track=False`: a checkpoint that
        outlives a failure of the stage (`Workdir.atomic`)."""
        from remotetrimmer_tf.training import save_keras
        model = without_optimizer(model)
        with self.wd.atomic(name, track=track) as tmp:
            save_keras(model, tmp)

    def accuracy(self, model, split=None):
        """Test accuracy (and loss) of `model` on the evaluation split
        (`{}` on a non-chief worker, whose results are not kept)."""
        from remotetrimmer_tf import training
        if not self.is_chief:
            return {}
        split = split or self.cfg.evaluate.split
        data = self.data(split)
        steps = self.cfg.evaluate.steps
        if steps:
            data = take(data, steps, int(self.cfg.data.batch_size))
        result = training.evaluate(model, data,
                                   batch_size=int(self.cfg.data.batch_size))
        return {k: float(v) for k, v in dict(result).items()}


def without_optimizer(model):
    """An uncompiled copy (same config, names and weights) of a compiled
    model; the model itself if it was never compiled or cannot be rebuilt."""
    if getattr(model, "optimizer", None) is None:
        return model
    from remotetrimmer_tf.utils.keras_models import clone_with_weights
    try:
        clone = clone_with_weights(model)
    except Exception:  # noqa: BLE001 - subclassed models: keep the state
        return model
    # Keras 3.15's clone_model compiles the clone from the source's compile
    # config, and model.save() then writes a (built) optimizer into the file:
    # the fine-tuned model was saved at twice its size. Drop that state.
    if getattr(clone, "optimizer", None) is not None:
        clone.optimizer = None
        clone.compiled = False
        if hasattr(clone, "_compile_config"):
            clone._compile_config = None
    return clone


def load_keras(path):
    """`keras.saving.load_model` with remotetrimmer_tf's layers registered."""
    import keras
    import remotetrimmer_tf.models  # noqa: F401 - registers SqueezeExcite
    try:
        import remotetrimmer_tf.losses  # noqa: F401 - registers the AML
    except ImportError:  # pragma: no cover
        pass
    return keras.saving.load_model(str(path), compile=False)


def load_split(cfg, split, batch_size, shuffle, workdir=None):
    """Loads a split through `remotetrimmer_tf.data`.

    Returns a batched `tf.data.Dataset` on the TensorFlow backend, else the
    numpy pair `(x, y)` (every consumer - fit, evaluate, collect_attention,
    recalibrate_bn - batches numpy itself).
    """
    import keras
    from remotetrimmer_tf import data as data_mod
    from remotetrimmer_tf.pipeline import user_data
    d = cfg.data
    if user_data.is_user_dataset(d.name):
        return user_data.load_split(cfg, split, batch_size, shuffle, workdir)
    common = dict(data_dir=d.data_dir, image_size=int(d.image_size),
                  seed=int(d.seed), val_fraction=float(d.val_fraction),
                  skip_bad_files=bool(d.get("skip_bad_files", False)))
    from remotetrimmer_tf.data.checks import BadImageError
    try:
        if keras.backend.backend() == "tensorflow":
            return data_mod.load(d.name, split, batch_size=batch_size,
                                 shuffle=shuffle, **common)
        return data_mod.load_numpy(d.name, split, shuffle=shuffle, **common)
    except BadImageError as e:
        raise PipelineError(str(e)) from None
    except FileNotFoundError as e:
        from remotetrimmer_tf.data.registry import get_spec
        where = (f"--config.data.data_dir={d.data_dir}" if d.data_dir
                 else "--config.data.data_dir (not set)")
        raise PipelineError(
            f"{where}: dataset '{d.name}' not found (expected the layout "
            f"{get_spec(d.name).image_folder}/<class>/<image>); pass "
            "--config.data.data_dir=<folder holding the dataset>") from None
    except ValueError as e:
        raise PipelineError(
            f"--config.data.data_dir={d.data_dir}: {first_line(e)} Pass "
            "--config.data.data_dir=<folder holding the dataset>, or "
            "--config.data.name=folder for a folder of your own classes"
        ) from None


def take(data, steps, batch_size=64):
    """The first `steps` batches of a dataset (tf.data or numpy `(x, y)`)."""
    if steps is None:
        return data
    steps = int(steps)
    if hasattr(data, "take"):
        return data.take(steps)
    x, y = data
    return x[:steps * batch_size], y[:steps * batch_size]
