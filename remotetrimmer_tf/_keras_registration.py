"""Make ``keras.saving.load_model(path)`` find remotetrimmer_tf classes.

Keras resolves custom classes (``"remotetrimmer_tf>AdaptiveMiningLoss"``)
only through its registry, which is filled when the defining module is
imported. ``import remotetrimmer_tf`` is lazy and must not import Keras (under
the TensorFlow backend that would import TensorFlow), so :func:`install`
registers the classes as soon as Keras is imported:

- if ``keras`` is already imported, the modules are imported now;
- otherwise a one-shot import hook runs :func:`register_keras_objects`
  right after ``import keras`` finishes.

The same holds for keras-hub: the ``Pruned*`` subclass of every keras-hub
class (``models.pruned_classes``: what a pruned keras-hub model's preset
names) is registered as soon as ``keras_hub`` is imported, so
``keras_hub.models.Backbone.from_preset(pruned_dir)`` works after
``import remotetrimmer_tf`` in a fresh process.

This module imports neither Keras nor TensorFlow.
"""
import importlib
import importlib.abc
import sys
import warnings

__all__ = ["SERIALIZABLE_MODULES", "register_keras_objects", "register_keras_hub_objects",
           "install"]

# Every module that defines a @keras.saving.register_keras_serializable class.
SERIALIZABLE_MODULES = [
    "remotetrimmer_tf.losses",
    "remotetrimmer_tf.training.schedules",
    "remotetrimmer_tf.training.augment",
    "remotetrimmer_tf.models.se",
    "remotetrimmer_tf.graph.rebuilt",         # issue 28: copies of non-round-tripping layers
    "remotetrimmer_tf.graph.constant_call",   # issue 28: a sub-layer called on constants
]


def register_keras_objects():
    """Import every module in :data:`SERIALIZABLE_MODULES` (registers classes).

    A module that does not exist (yet) is skipped; other errors propagate.
    """
    for name in SERIALIZABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                continue
            raise


def register_keras_hub_objects():
    """Register the ``Pruned*`` class of every keras-hub class (keras-hub
    is imported by then)."""
    from remotetrimmer_tf.models.pruned_classes import register_pruned_classes
    register_pruned_classes()


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of a top-level module (``keras``, then ``keras_hub``;
    one shot each) so that ``register`` runs right after it is imported."""

    def __init__(self, module="keras", register=None):
        self.module = module
        self.register = register or register_keras_objects

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        _remove_hook(self.module)
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module
        register = self.register

        def exec_module(module):
            original(module)
            try:
                register()
            except Exception as e:  # never break `import keras`
                warnings.warn(f"remotetrimmer_tf: could not register Keras classes "
                              f"({type(e).__name__}: {e}); import remotetrimmer_tf.losses "
                              "etc. before keras.saving.load_model.", stacklevel=2)

        loader.exec_module = exec_module
        return spec


def _remove_hook(module="keras"):
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not (isinstance(f, _AfterKerasImport) and f.module == module)]


def _install_one(module, register):
    if hasattr(sys.modules.get(module), "models"):     # keras_hub fully imported
        register()
        return
    if not any(isinstance(f, _AfterKerasImport) and f.module == module
               for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport(module, register))


def install():
    """Register now if Keras (keras-hub) is loaded, else right after its import."""
    keras_module = sys.modules.get("keras")
    if keras_module is not None and hasattr(keras_module, "saving"):
        register_keras_objects()
    elif not any(isinstance(f, _AfterKerasImport) and f.module == "keras"
                 for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())
    _install_one("keras_hub", register_keras_hub_objects)
