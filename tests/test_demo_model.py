"""The shipped demo model: float16 .npz weights, packing, the default config.

`remotetrimmer_tf.demo_model` packs / loads a model as float16 weights plus
a model.json; `tools/pack_demo_model.py` packs a CLI run folder after its
checks; `configs/demo.py` starts from the packed model (0 training epochs,
`--config.model.weights=<.npz>`). The packed model of the package itself is
not needed here: every test packs its own into a temporary folder.
"""
import json
import pathlib

import keras
import numpy as np
import pytest

from helpers import load_tool, make_eurosat_folder, REPO, save_keras_quietly
from remotetrimmer_tf import demo_model
from remotetrimmer_tf.utils.npz_weights import (load_weights_npz,
                                                weights_to_arrays,
                                                write_weights_npz)

pack_tool = load_tool("pack_demo_model")


def _small(seed=0, classes=4):
    """conv-BN-ReLU, GAP, Dense: weights of every kind (BN statistics too)."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    x = keras.Input((8, 8, 3))
    h = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(6, 3, name="conv")(x)))
    return keras.Model(x, L.Dense(classes, name="fc")(L.GlobalAveragePooling2D()(h)))


# --------------------------------------------------------- utils.npz_weights
def test_npz_weights_round_trip_in_float16(tmp_path):
    model = _small()
    bn = model.get_layer("bn")
    bn.moving_variance.assign(np.linspace(0.5, 3.0, 6).astype("float32"))
    path = write_weights_npz(model, tmp_path / "w.npz")
    stored = np.load(path)
    assert {stored[k].dtype for k in stored.files} == {np.dtype("float16")}
    assert "bn/3" in stored.files          # moving statistics are weights too
    twin = load_weights_npz(_small(seed=1), path)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        assert b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)   # float16 rounding
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(model(x), twin(x), rtol=2e-2, atol=2e-2)


def test_npz_weights_refuse_another_architecture(tmp_path):
    path = write_weights_npz(_small(), tmp_path / "w.npz")
    with pytest.raises(ValueError, match=r"fc/0 has shape \(6, 4\).*\(6, 5\)"):
        load_weights_npz(_small(classes=5), path)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match="not in the file"):
        load_weights_npz(other, path)


def test_npz_weights_refuse_values_float16_cannot_hold():
    model = _small()
    model.get_layer("bn").moving_variance.assign(np.full(6, 1e6, "float32"))
    with pytest.raises(ValueError, match="bn/3.*float16.*float32"):
        weights_to_arrays(model, "float16")
    assert weights_to_arrays(model, "float32")["bn/3"].max() == 1e6


# ----------------------------------------------------------------- demo_model
def test_pack_and_load_round_trip(tmp_path):
    """Any architecture of the registry packs (the demo's is resnet18)."""
    record = {"arch": "MobileNetV3Small", "se": False, "num_classes": 3,
              "input_shape": [32, 32, 3], "training_command": "python ..."}
    model = demo_model.build(record)
    folder = tmp_path / "m"
    fresh, written = demo_model.pack(model, record, folder=folder)
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "weights.npz"]
    assert demo_model.available(folder)
    meta = demo_model.info(folder)
    assert meta == written and meta["weights_dtype"] == "float16"
    assert meta["weights_bytes"] == (folder / "weights.npz").stat().st_size
    loaded = demo_model.load(folder)
    for a, b in zip(fresh.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_pack_writes_nothing_for_weights_of_another_architecture(tmp_path):
    record = {"arch": "MobileNetV3Small", "se": False, "num_classes": 3,
              "input_shape": [32, 32, 3]}
    with pytest.raises(ValueError, match="not in the file|not in the model"):
        demo_model.pack(_small(), record, folder=tmp_path / "m")
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


def test_info_without_a_packed_model_says_how(tmp_path):
    assert not demo_model.available(tmp_path)
    with pytest.raises(FileNotFoundError, match="tools/pack_demo_model.py"):
        demo_model.info(tmp_path)


# --------------------------------------------------- tools/pack_demo_model.py
def _fake_run(root, data_dir, arch="resnet18", train_done=True):
    run = root / "run"
    run.mkdir(parents=True)
    cfg = json.loads(json.dumps(pack_tool._named_config(
        "eurosat_resnet18_modern")))
    cfg["data"]["data_dir"] = str(data_dir)
    cfg["model"]["arch"] = arch
    cfg["train"]["epochs"] = 2
    stages = {"train": {"info": {"metrics": {"accuracy": 0.5}, "train_seconds": 1.0}}}
    (run / "stages.json").write_text(json.dumps(
        {"config_name": "eurosat_resnet18_modern", "config": cfg,
         "stages": stages if train_done else {}}))
    return run


def test_training_command_is_the_named_config_plus_what_differs(tmp_path):
    run = _fake_run(tmp_path, tmp_path / "data")
    ledger = json.loads((run / "stages.json").read_text())
    cmd = pack_tool.training_command(run, ledger)
    assert cmd == ("python -m remotetrimmer_tf.prune "
                   "--config=configs/eurosat_resnet18_modern.py "
                   f"--config.data.data_dir={tmp_path / 'data'} "
                   "--config.train.epochs=2 "
                   f"--workdir={run} --stages=train")


def test_pack_tool_refuses_a_run_that_saw_sample_images(tmp_path, capsys):
    from remotetrimmer_tf.data import sample_dir
    data = make_eurosat_folder(tmp_path / "data", per_class=1, prefix="gen_")
    one = sorted(pathlib.Path(sample_dir()).glob("2750/Forest/*.jpg"))[0]
    (data / "2750" / "Forest" / one.name).write_bytes(one.read_bytes())
    run = _fake_run(tmp_path, data)
    assert pack_tool.main([f"--run={run}", f"--out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 embedded sample images" in err[0]
    assert one.name in err[0] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("change,words", [
    ({"arch": "vgg16_bn"}, "model.arch='vgg16_bn'"),
    ({"train_done": False}, "train stage has not finished"),
])
def test_pack_tool_refuses_runs_that_do_not_fit(tmp_path, capsys, change, words):
    data = make_eurosat_folder(tmp_path / "data", per_class=1, prefix="gen_")
    run = _fake_run(tmp_path, data, **change)
    assert pack_tool.main([f"--run={run}", f"--out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err


@pytest.mark.slow
def test_pack_tool_and_the_default_run_from_the_packed_model(tmp_path, monkeypatch):
    """A run folder with a (random) SE-ResNet-18 -> packed (float16, checks,
    model.json, results file) -> configs/demo.py starts from it: the train
    stage loads it without training, the rest of the pipeline prunes it."""
    from remotetrimmer_tf import models, prune
    from remotetrimmer_tf.pipeline import run_pipeline
    data = make_eurosat_folder(tmp_path / "data", per_class=4, size=64,
                               prefix="gen_")
    run = _fake_run(tmp_path, data)
    save_keras_quietly(models.resnet18(num_classes=10, input_shape=(64, 64, 3),
                                       se=True), run / "model_trained.keras")
    out, md = tmp_path / "demo_model", tmp_path / "demo_model.md"
    assert pack_tool.main([f"--run={run}", f"--out={out}", f"--results={md}",
                           "--eval_steps=1"]) == 0
    meta = demo_model.info(out)
    assert meta["arch"] == "resnet18" and meta["se"] is True
    assert meta["data"]["sample_images_in_data"] == 0
    assert meta["run_test_accuracy_float32"] == 0.5
    assert meta["accuracy"]["sample_test_split"]["images"] == 240
    assert meta["accuracy"]["sample_all"]["images"] == 800
    assert "--config.train.epochs=2" in meta["training_command"]
    text = md.read_text()
    assert text.startswith("# The shipped demo model") and "Command: `python" in text

    monkeypatch.setattr(demo_model, "DEFAULT_DIR", out)
    cfg = prune.load_config_file(str(REPO / "configs" / "demo.py"))
    assert cfg.model.weights == str(out / "weights.npz") and cfg.train.epochs == 0
    cfg.data.image_size = 32              # small and quick; weights fit any size
    cfg.attention.steps = 1
    cfg.recalibrate.steps = 1
    cfg.finetune.epochs = 1
    cfg.finetune.steps_per_epoch = 1
    cfg.evaluate.steps = 1
    wd = tmp_path / "wd"
    run_pipeline(cfg, workdir=wd, stages="train,attention,fold,prune,recalibrate,"
                 "finetune", log=lambda line: None)
    trained = keras.saving.load_model(wd / "model_trained.keras", compile=False)
    for a, b in zip(demo_model.load(out).get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(a, b)
    info = json.loads((wd / "stages.json").read_text())["stages"]
    assert info["train"]["info"]["source"] == "weights"
    assert info["finetune"]["info"]["teacher"] == "model_trained.keras"
    widths = json.loads((wd / "kept.json").read_text())
    assert widths, "nothing was pruned"
