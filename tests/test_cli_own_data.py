"""The CLI on your own data and model: a folder, replace_head, CAP with
inserted gates, and the bad inputs of that path (exit 2, one line).

Subprocesses on a tiny generated 3-class folder (16x16 PNGs) and a tiny
plain conv model with 5 outputs, so a full run takes seconds.
"""
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from helpers import OWN_CLASSES as CLASSES
from helpers import bad_exit, cli, env, make_class_folder


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A 3-class folder of your own scenes and two plain models of yours."""
    import keras
    from helpers import save_keras_quietly
    root = tmp_path_factory.mktemp("own")
    make_class_folder(root / "scenes")
    L = keras.layers
    x = keras.Input((16, 16, 3))
    h = L.Conv2D(8, 3, padding="same", name="c1")(x)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(6.0, name="r1")(h)
    h = L.Conv2D(16, 3, strides=2, padding="same", name="c2")(h)
    h = L.BatchNormalization(name="bn2")(h)
    h = L.Activation("swish", name="a2")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    y = L.Dense(5, activation="softmax", name="head")(h)
    save_keras_quietly(keras.Model(x, y, name="plain5"), root / "plain5.keras")
    x3 = keras.Input((16, 16, 4))
    save_keras_quietly(
        keras.Model(x3, L.Dense(3)(L.GlobalAveragePooling2D()(L.Conv2D(4, 1)(x3)))),
        root / "four_channels.keras")
    return root


FAST = ("--config.data.image_size=16", "--config.data.batch_size=8",
        "--config.train.epochs=1", "--config.train.batch_size=8",
        "--config.finetune.epochs=1", "--config.finetune.batch_size=8",
        "--config.attention.gate_epochs=1", "--config.attention.gate_reduction=4",
        "--config.prune.ratio=0.5", "--config.recalibrate.steps=1",
        "--config.export.quantize=none", "--config.export.check=False",
        "--verbose=0")


@pytest.mark.slow
def test_folder_replace_head_and_cap_with_inserted_gates(own, tmp_path):
    wd = tmp_path / "run"
    proc = cli("--config.data.name=folder", f"--config.data.data_dir={own / 'scenes'}",
               f"--init_model={own / 'plain5.keras'}",
               "--config.model.replace_head=True", "--config.prune.importance=cap",
               *FAST, f"--workdir={wd}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import keras
    import remotetrimmer_tf  # noqa: F401
    final = keras.saving.load_model(wd / "model_finetuned.keras", compile=False)
    assert final.outputs[0].shape[-1] == len(CLASSES)
    gated = keras.saving.load_model(wd / "model_gated.keras", compile=False)
    assert sum(type(l).__name__ == "SqueezeExcite" for l in gated.layers) == 2
    ledger = json.loads((wd / "stages.json").read_text())
    att = ledger["stages"]["attention"]["info"]
    assert att["gates_inserted"] == 2 and att["backbone_frozen"] is True
    assert ledger["stages"]["train"]["info"]["head_replaced"] is True
    norm = json.loads((wd / "normalization.json").read_text())
    assert len(norm["mean"]) == 3 and norm["measured_on"] == "train split"
    report = json.loads((wd / "report.json").read_text())
    assert report["evaluated_samples"] == 3 * 2   # 6 per class, 70/30 split
    # the user's model is untouched
    assert keras.saving.load_model(own / "plain5.keras").outputs[0].shape[-1] == 5


@pytest.mark.slow
def test_class_count_mismatch_explains_both_options(own, tmp_path):
    proc = cli("--config.data.name=folder", f"--config.data.data_dir={own / 'scenes'}",
               f"--init_model={own / 'plain5.keras'}", *FAST,
               f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
    bad_exit(proc, "5 outputs", "3 classes", "--config.model.replace_head=True",
         "with 3 outputs")


@pytest.mark.slow
def test_input_channels_mismatch(own, tmp_path):
    proc = cli("--config.data.name=folder", f"--config.data.data_dir={own / 'scenes'}",
               f"--init_model={own / 'four_channels.keras'}", *FAST,
               f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
    bad_exit(proc, "4-channel", "3 channels")


@pytest.mark.parametrize("setup,words", [
    ("one_class", ("only ['a']", "at least two classes")),
    ("tiny_class", ("'b' has 1 image", "--config.data.classes")),
    ("broken", ("bad.png", "unreadable")),
    ("missing", ("--config.data.data_dir",)),
])
def test_bad_folders(tmp_path, setup, words):
    data = tmp_path / "d"
    if setup == "one_class":
        make_class_folder(data, classes=("a",))
    elif setup == "tiny_class":
        make_class_folder(data, classes=("a", "b"), n=1)
        make_class_folder(tmp_path / "extra", classes=("a",), n=4)
        for p in (tmp_path / "extra" / "a").iterdir():
            p.rename(data / "a" / ("x" + p.name))
    elif setup == "broken":
        make_class_folder(data, classes=("a", "b"))
        (data / "a" / "bad.png").write_bytes(b"\x89PNG but not really")
    args = ["--config.data.name=folder"]
    if setup != "missing":
        args.append(f"--config.data.data_dir={data}")
    proc = cli(*args, *FAST, f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
    bad_exit(proc, *words)
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").glob("*.keras"))


def test_unknown_arch_did_you_mean(tmp_path):
    proc = cli("--config.model.arch=MobilenetV3Smal", "--config.data.name=folder",
               f"--config.data.data_dir={make_class_folder(tmp_path / 'd')}",
               f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
    bad_exit(proc, "--config.model.arch=MobilenetV3Smal", "did you mean MobileNetV3Small")


def test_unknown_dataset_name(tmp_path):
    proc = cli("--config.data.name=my_scenes", f"--workdir={tmp_path / 'w'}",
               cwd=tmp_path)
    bad_exit(proc, "--config.data.name", "folder")


@pytest.mark.slow
def test_custom_objects_import_failure(tmp_path):
    (tmp_path / "broken_layers.py").write_text("import not_a_module_anywhere\n")
    proc = cli("--custom_objects=broken_layers", f"--workdir={tmp_path / 'w'}",
               cwd=tmp_path)
    bad_exit(proc, "--custom_objects=broken_layers", "ModuleNotFoundError")


def test_custom_objects_registers_layers(tmp_path, monkeypatch):
    import keras
    (tmp_path / "my_layers_i13.py").write_text(
        "import keras\n"
        "class Twice(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from remotetrimmer_tf.pipeline import user_model
    assert user_model.import_custom_objects("my_layers_i13") == ["Twice"]
    assert "Twice" in keras.saving.get_custom_objects()


def test_normalisation_is_measured_once_and_cached(tmp_path, monkeypatch):
    from remotetrimmer_tf.data import user_folder
    from remotetrimmer_tf.pipeline import config_base, user_data
    from remotetrimmer_tf.pipeline.workdir import Workdir
    cfg = config_base().get_config()
    cfg.data.name = "folder"
    cfg.data.data_dir = str(make_class_folder(tmp_path / "d"))
    cfg.data.image_size = 16
    wd = Workdir(tmp_path / "run")
    mean, std = user_data.normalization(cfg, wd)
    assert len(mean) == 3 and wd.exists(user_data.NORM_FILE)

    def boom(*a, **k):
        raise AssertionError("measured again")
    monkeypatch.setattr(user_folder, "measure_normalization", boom)
    assert user_data.normalization(cfg, wd) == (tuple(mean), tuple(std))
    cfg.data.image_size = 12      # another key: measured again
    with pytest.raises(AssertionError, match="measured again"):
        user_data.normalization(cfg, wd)
    cfg.data.mean, cfg.data.std = "0.1,0.2,0.3", "1,1,1"   # given: used as is
    assert user_data.normalization(cfg, wd) == ((0.1, 0.2, 0.3), (1.0, 1.0, 1.0))


@pytest.mark.slow
def test_silence_hides_tensorflow_startup_lines():
    code = ("from remotetrimmer_tf.pipeline import quiet\n"
            "quiet.silence()\n"
            "import keras, numpy as np\n"
            "keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])"
            ".predict(np.zeros((1, 3)), verbose=0)\n"
            "print('ok')\n")
    child_env = env()
    child_env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-c", code], env=child_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    for noise in ("oneDNN", "cuInit", "cuda", "absl::InitializeLog"):
        assert noise not in proc.stderr, proc.stderr


def test_num_classes_that_contradicts_the_data(tmp_path):
    proc = cli("--config.model.num_classes=3", f"--workdir={tmp_path / 'w'}",
               cwd=tmp_path)
    bad_exit(proc, "--config.model.num_classes=3", "10 classes",
         "--config.data.name=folder")


@pytest.mark.slow
def test_input_size_mismatch_names_the_flag_and_the_fix(own, tmp_path):
    proc = cli("--config.data.name=folder", f"--config.data.data_dir={own / 'scenes'}",
               f"--init_model={own / 'plain5.keras'}", *FAST,
               "--config.data.image_size=24", "--config.model.replace_head=True",
               f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
    bad_exit(proc, "--init_model=", "16x16", "24x24", "--config.data.image_size=16")


@pytest.mark.parametrize("mix,words", [
    ("bands", ("-band array", "one band count")),
    ("kinds", ("extra.npy", "one kind of file")),
])
def test_mixed_channels_in_a_folder(tmp_path, mix, words):
    data = tmp_path / "d"
    if mix == "bands":
        for cls, bands in (("p", 4), ("q", 6)):
            (data / cls).mkdir(parents=True)
            for k in range(3):
                np.save(data / cls / f"t{k}.npy", np.zeros((8, 8, bands), np.float32))
    else:
        make_class_folder(data, classes=("a", "b"), n=3)
        np.save(data / "b" / "extra.npy", np.zeros((8, 8, 3), np.float32))
    proc = cli("--config.data.name=folder", f"--config.data.data_dir={data}",
               *FAST, f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
    bad_exit(proc, "--config.data.data_dir=", *words)


@pytest.mark.slow
def test_cap_on_a_model_with_a_nested_backbone(tmp_path):
    """The transfer-learning shape keras.Model(x, head(backbone(x))): the
    backbone's BNs get gates (the model is inlined), the run finishes."""
    import keras
    L = keras.layers
    b_in = keras.Input((16, 16, 3))
    h = L.ReLU()(L.BatchNormalization(name="b_bn1")(L.Conv2D(8, 3, padding="same", name="b_c1")(b_in)))
    h = L.ReLU()(L.BatchNormalization(name="b_bn2")(L.Conv2D(8, 3, padding="same", name="b_c2")(h)))
    backbone = keras.Model(b_in, h, name="backbone")
    x = keras.Input((16, 16, 3))
    y = L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(backbone(x)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        keras.Model(x, y, name="transfer").save(tmp_path / "transfer.keras")
    wd = tmp_path / "run"
    proc = cli("--config.data.name=folder",
               f"--config.data.data_dir={make_class_folder(tmp_path / 'd')}",
               f"--init_model={tmp_path / 'transfer.keras'}",
               "--config.prune.importance=cap", *FAST, f"--workdir={wd}",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ledger = json.loads((wd / "stages.json").read_text())
    assert ledger["stages"]["attention"]["info"]["gates_inserted"] == 2
    import remotetrimmer_tf  # noqa: F401
    gated = keras.saving.load_model(wd / "model_gated.keras", compile=False)
    assert {"b_bn1_se", "b_bn2_se"} <= {l.name for l in gated.layers}
    final = keras.saving.load_model(wd / "model_finetuned.keras", compile=False)
    assert final.outputs[0].shape[-1] == 3
