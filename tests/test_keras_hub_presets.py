"""keras-hub presets survive pruning (issue 29).

A pruned keras-hub Backbone is still an object of its class (a registered
``Pruned*`` subclass), a pruned task is still its task class around the thin
backbone with its preprocessor carried over; ``save_to_preset`` works and
``from_preset`` of the generic and the specific classes gives back the same
outputs, in this process and in a fresh one. Models come from their
constructors (``tools/keras_hub_zoo.py``); nothing is downloaded.
"""
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import remotetrimmer_tf as rt
from helpers import fast_first, load_tool

keras_hub = pytest.importorskip("keras_hub")

REPO = pathlib.Path(__file__).resolve().parents[1]
zoo = load_tool("keras_hub_zoo")

X = np.random.default_rng(0).standard_normal((2, zoo.SIZE, zoo.SIZE, 3)).astype("float32")
PIXELS = np.random.default_rng(1).uniform(0, 255, (2, zoo.SIZE, zoo.SIZE, 3)).astype(
    "float32")
BACKBONES = ["ResNetV1 basic", "ResNet-vd bottleneck", "EfficientNetV2 (fused+unfused)",
             "MobileNetV3", "CSPNet (cs3, dark)", "DenseNet", "HGNetV2"]
# head built by the constructor (ResNet) / a pruned head width (MobileNet's
# classifier_conv, VGG's hidden Dense) / a constructor reading widths off the
# backbone (HGNetV2)
TASKS = ["ResNetV1 basic", "MobileNetV3", "VGG", "HGNetV2", "EfficientNetV1 (MBConv+SE)"]


def _out(model, x=X):
    return [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(model(x))]


def _same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-6)


def _prune(model):
    return rt.Pruner(model, importance="l1", ratio=0.5).prune()


@pytest.mark.parametrize("name", fast_first(BACKBONES))
def test_backbone_stays_its_class_and_round_trips_a_preset(name, tmp_path):
    bb = zoo.backbone(name)
    thin = _prune(bb)
    assert isinstance(thin, type(bb)) and type(thin).__name__ == "Pruned" + type(bb).__name__
    assert thin.count_params() < bb.count_params()
    assert getattr(thin, "image_shape", None) == getattr(bb, "image_shape", None)
    # the feature pyramid is kept: same keys, same scales, fewer channels
    old = dict(getattr(bb, "pyramid_outputs", {}))
    new = dict(getattr(thin, "pyramid_outputs", {}))
    assert sorted(old) == sorted(new)
    for k in old:
        assert tuple(new[k].shape[:-1]) == tuple(old[k].shape[:-1])
        assert new[k].shape[-1] <= old[k].shape[-1]
    thin.save_to_preset(str(tmp_path / "p"))
    assert (tmp_path / "p" / "config.json").is_file()
    want = _out(thin)
    for cls in (keras_hub.models.Backbone, type(bb), type(thin)):
        back = cls.from_preset(str(tmp_path / "p"))
        assert type(back) is type(thin)
        _same(_out(back), want)


def _task(name, num_classes=4):
    bb = zoo.backbone(name)
    cls = getattr(keras_hub.models, zoo.BACKBONES[name][1])
    pre_cls = cls.preprocessor_cls
    pre = pre_cls(image_converter=pre_cls.image_converter_cls(
        image_size=(zoo.SIZE, zoo.SIZE), scale=1 / 255.0))
    return cls(backbone=bb, num_classes=num_classes, preprocessor=pre), cls


@pytest.mark.parametrize("name", fast_first(TASKS))
def test_task_with_preprocessor_round_trips_a_preset(name, tmp_path):
    task, cls = _task(name)
    thin = _prune(task)
    assert isinstance(thin, cls) and isinstance(thin.backbone, type(task.backbone))
    assert thin.count_params() < task.count_params()
    assert thin.num_classes == 4
    pre = thin.preprocessor
    assert isinstance(pre, type(task.preprocessor)) and pre is not task.preprocessor
    assert pre.image_converter.get_config()["scale"] == \
        task.preprocessor.image_converter.get_config()["scale"]
    want = _out(thin, pre(PIXELS))                # what predict() computes
    thin.save_to_preset(str(tmp_path / "p"))
    for c in (keras_hub.models.ImageClassifier, cls):
        back = c.from_preset(str(tmp_path / "p"))
        assert type(back) is type(thin) and back.preprocessor is not None
        _same(_out(back, back.preprocessor(PIXELS)), want)
    back_pre = keras_hub.models.ImageClassifierPreprocessor.from_preset(str(tmp_path / "p"))
    np.testing.assert_allclose(np.asarray(back_pre(PIXELS)), np.asarray(pre(PIXELS)))


@pytest.mark.slow
def test_pruned_task_predicts_and_fits_through_its_preprocessor():
    task, _ = _task("ResNetV1 basic")
    thin = _prune(task)
    np.testing.assert_allclose(thin.predict(PIXELS, verbose=0),
                               _out(thin, thin.preprocessor(PIXELS))[0], atol=1e-5)
    thin.fit(PIXELS, np.array([0, 1]), epochs=1, verbose=0)   # keras-hub's own fit


def test_task_without_preprocessor_and_the_user_model_untouched():
    bb = zoo.backbone("CSPNet (csp, bottleneck)")
    task = zoo.classifier("CSPNet (csp, bottleneck)", bb)
    before = [w.copy() for w in task.get_weights()]
    thin = _prune(task)
    assert isinstance(thin, type(task)) and thin.preprocessor is None
    for a, b in zip(before, task.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert type(task.backbone).__name__ == "CSPNetBackbone"


def test_pruning_a_pruned_backbone_keeps_one_pruned_class(tmp_path):
    bb = zoo.backbone("ResNetV1 bottleneck")
    once = _prune(bb)
    twice = _prune(once)
    assert type(twice) is type(once)
    assert twice.count_params() < once.count_params()
    twice.save_to_preset(str(tmp_path / "p"))
    _same(_out(keras_hub.models.ResNetBackbone.from_preset(str(tmp_path / "p"))),
          _out(twice))


def test_a_class_that_cannot_be_rebuilt_falls_back_with_a_warning(monkeypatch):
    """A backbone whose Pruned class cannot be made: the plain pruned model
    (correct outputs) and one warning naming the class."""
    from remotetrimmer_tf.models import keras_hub_rewrap
    bb = zoo.backbone("VGG")

    def broken(cls):
        raise TypeError("no way")

    monkeypatch.setattr(keras_hub_rewrap, "pruned_class", broken)
    with pytest.warns(UserWarning, match="VGGBackbone.*plain functional"):
        thin = _prune(bb)
    assert not isinstance(thin, keras_hub.models.Backbone)


def test_a_task_with_a_preprocessor_is_refused_when_it_cannot_be_rebuilt(monkeypatch):
    from remotetrimmer_tf.models import keras_hub_rewrap
    task, _ = _task("ResNetV1 basic")
    monkeypatch.setattr(keras_hub_rewrap, "_thin_task",
                        lambda *a: (_ for _ in ()).throw(TypeError("no way")))
    with pytest.raises(keras_hub_rewrap.RewrapError) as err:
        _prune(task)
    assert "preprocessor" in str(err.value) and "\n" not in str(err.value)


def test_a_preset_of_another_class_is_refused_by_keras_hub(tmp_path):
    thin = _prune(zoo.backbone("DenseNet"))
    thin.save_to_preset(str(tmp_path / "p"))
    with pytest.raises(ValueError, match="not a subclass"):
        keras_hub.models.ResNetBackbone.from_preset(str(tmp_path / "p"))


@pytest.mark.slow
def test_fresh_process_loads_the_pruned_preset(tmp_path):
    """``import remotetrimmer_tf`` then ``import keras_hub`` (the import hook
    registers the Pruned* classes) then ``from_preset``."""
    import os
    task, _ = _task("ResNetV1 basic")
    thin = _prune(task)
    thin.save_to_preset(str(tmp_path / "p"))
    np.save(tmp_path / "x.npy", PIXELS)
    np.save(tmp_path / "y.npy", _out(thin, thin.preprocessor(PIXELS))[0])
    code = textwrap.dedent(f"""
        import numpy as np
        import remotetrimmer_tf
        import keras_hub
        t = keras_hub.models.ImageClassifier.from_preset({str(tmp_path / 'p')!r})
        y = np.asarray(t(t.preprocessor(np.load({str(tmp_path / 'x.npy')!r}))))
        print(type(t).__name__, np.abs(y - np.load({str(tmp_path / 'y.npy')!r})).max())
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cls, diff = proc.stdout.split()[-2:]
    assert cls == "PrunedResNetImageClassifier" and float(diff) <= 1e-6


def test_cli_refuses_a_preset_folder_as_init_model(tmp_path):
    """--init_model=<preset folder>: one line naming the class and the fix."""
    from remotetrimmer_tf.pipeline.stages import check_keras_file
    from remotetrimmer_tf.pipeline.workdir import PipelineError
    thin = _prune(zoo.backbone("VGG"))
    thin.save_to_preset(str(tmp_path / "p"))
    with pytest.raises(PipelineError) as err:
        check_keras_file(str(tmp_path / "p"))
    msg = str(err.value)
    assert "PrunedVGGBackbone" in msg and "--init_model=m.keras" in msg
    assert "\n" not in msg
