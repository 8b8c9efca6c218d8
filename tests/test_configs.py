"""The ml_collections configs in configs/: schema, values, overrides."""
import os
import pathlib
import subprocess
import sys

import pytest

from remotetrimmer_tf import prune as cli
from remotetrimmer_tf.pipeline import (PipelineError, config_base, config_dir,
                                       validate_config)

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.py")
                 if p.name not in ("base.py", "__init__.py"))
EXPERIMENTS = {
    f"{ds_file}_{arch_file}_{kind}.py": (ds, arch, kind)
    for ds_file, ds in (("eurosat", "eurosat"), ("ucmerced", "uc_merced"))
    for arch_file, arch in (("resnet18", "resnet18"), ("vgg16bn", "vgg16_bn"))
    for kind in ("published", "modern")
}
CONTRACT_RECIPE_FIELDS = (
    "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov",
    "weight_decay", "schedule", "milestones", "gamma", "warmup_fraction",
    "augment", "label_smoothing", "loss", "aml_r1", "aml_r2", "seed")


def load(name):
    return cli.load_config_file(str(REPO / "configs" / name))


def field_paths(cfg):
    return set(cli._field_paths(cfg))


def test_all_expected_config_files_exist():
    assert set(CONFIGS) == set(EXPERIMENTS) | {"demo.py", "demo_scratch.py"}


def test_config_dir_is_found_from_the_package():
    assert config_dir() == REPO / "configs"
    assert cli.default_config_path() == str(REPO / "configs" / "demo.py")


@pytest.mark.parametrize("argv, name", [
    ([], "demo.py"),
    (["--config.prune.ratio=0.5", "--workdir=w"], "demo.py"),
    (["--config.data.data_dir=/my/tiles"], "demo_scratch.py"),
    (["--config.model.arch=vgg16_bn"], "demo_scratch.py"),
    (["--init_model", "my.keras"], "demo_scratch.py"),
    (["--init_model=my.keras"], "demo_scratch.py"),
])
def test_the_shipped_model_is_the_default_only_for_the_sample(argv, name):
    """The shipped weights fit only the sample (64x64 RGB, 10 EuroSAT
    classes): naming your own data, model or --init_model trains from scratch."""
    assert cli.default_config_path(["prog", *argv]) == str(REPO / "configs" / name)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_has_the_full_schema_and_validates(name):
    cfg = load(name)
    assert field_paths(cfg) == field_paths(config_base().get_config()), name
    validate_config(cfg)
    assert cfg.name == name[:-3]


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_values(name):
    from remotetrimmer_tf.training import recipes
    ds, arch, kind = EXPERIMENTS[name]
    cfg = load(name)
    assert (cfg.data.name, cfg.model.arch) == (ds, arch)
    assert cfg.data.image_size == (64 if ds == "eurosat" else 256)
    assert cfg.model.se is True
    assert (cfg.prune.importance, cfg.prune.ratio, cfg.prune.scope) == (
        "cap", 0.7, "local")
    assert cfg.data.train_fraction == 0.7
    assert cfg.train.loss == "ce" and cfg.finetune.loss == "aml"
    for section, stage in (("train", "train"), ("finetune", "finetune")):
        want = recipes.get(kind, stage)
        got = cfg[section]
        for field in CONTRACT_RECIPE_FIELDS:
            if field == "batch_size" and ds == "uc_merced":
                continue
            assert got[field] == want[field], (name, section, field)
    if kind == "published":
        assert (cfg.train.epochs, cfg.finetune.epochs) == (160, 40)
        assert (cfg.train.lr, cfg.train.momentum, cfg.train.schedule,
                cfg.train.augment) == (0.01, 0.0, "step", "none")
        assert cfg.recalibrate.steps == 0
    else:
        assert (cfg.train.epochs, cfg.finetune.epochs) == (60, 30)
        assert (cfg.train.momentum, cfg.train.schedule, cfg.train.augment) == (
            0.9, "onecycle", "flips_rot90")


def test_demo_scratch_config():
    from remotetrimmer_tf.data import sample_dir
    cfg = load("demo_scratch.py")
    assert cfg.data.data_dir == str(sample_dir())
    assert (cfg.model.arch, cfg.model.se, cfg.prune.ratio) == ("resnet18", True, 0.7)
    assert 0 < cfg.train.epochs <= 10 and cfg.finetune.epochs <= 5
    assert cfg.model.weights is None
    assert "none" in cfg.export.quantize


def test_demo_config_starts_from_the_shipped_model(tmp_path, monkeypatch):
    """The default run prunes the packed SE-ResNet-18: its weights, no
    training epochs, a short fine-tune distilled from it, on the sample."""
    from remotetrimmer_tf import demo_model
    from remotetrimmer_tf.data import sample_dir
    (tmp_path / "weights.npz").write_bytes(b"")
    (tmp_path / "model.json").write_text("{}")
    monkeypatch.setattr(demo_model, "DEFAULT_DIR", tmp_path)
    cfg = load("demo.py")
    assert cfg.name == "demo" and cfg.data.data_dir == str(sample_dir())
    assert cfg.model.weights == str(tmp_path / "weights.npz")
    assert (cfg.model.arch, cfg.model.se) == ("resnet18", True)
    assert cfg.train.epochs == 0
    assert 0 < cfg.finetune.epochs <= 10 and cfg.finetune.distill_weight > 0
    assert (cfg.prune.importance, cfg.prune.ratio) == ("cap", 0.7)
    assert cfg.recalibrate.steps > 0 and "int8" in cfg.export.quantize
    validate_config(cfg)


def test_demo_config_without_a_packed_model_trains_from_scratch(tmp_path, monkeypatch):
    from remotetrimmer_tf import demo_model
    monkeypatch.setattr(demo_model, "DEFAULT_DIR", tmp_path)
    cfg, scratch = load("demo.py"), load("demo_scratch.py")
    assert cfg.model.weights is None
    assert cfg.train.to_dict() == scratch.train.to_dict()
    assert cfg.finetune.to_dict() == scratch.finetune.to_dict()


def test_experiment_rejects_unknown_names():
    base = config_base()
    with pytest.raises(ValueError, match="dataset"):
        base.experiment("mnist", "resnet18", "modern")
    with pytest.raises(ValueError, match="arch"):
        base.experiment("eurosat", "resnet50", "modern")
    with pytest.raises(ValueError, match="recipe"):
        base.experiment("eurosat", "resnet18", "fancy")


def test_check_overrides_suggests_the_field():
    cfg = load("demo.py")
    cli.check_overrides(["prog", "--config.prune.ratio=0.5",
                         "--config.export.quantize=none", "--noconfig.model.se"], cfg)
    with pytest.raises(PipelineError, match=r"did you mean --config\.prune\.ratio"):
        cli.check_overrides(["prog", "--config.prune.ration=0.5"], cfg)
    with pytest.raises(PipelineError, match=r"--config\.nope"):
        cli.check_overrides(["prog", "--config.nope=1"], cfg)


@pytest.mark.filterwarnings(
    "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")
def test_overrides_through_absl(tmp_path):
    """Every field type overrides on the command line (config_flags)."""
    from absl import flags
    from ml_collections import config_flags
    argv = ["prog", f"--config={REPO / 'configs' / 'eurosat_resnet18_modern.py'}",
            "--config.prune.ratio=0.5", "--config.export.quantize=none",
            "--config.export.quantize=float16", "--config.data.data_dir=/x",
            "--config.attention.steps=3", "--config.prune.ignore=fc1",
            "--config.model.se=False", "--config.finetune.steps_per_epoch=2"]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=fv, sys_argv=argv)
    fv(argv)
    c = fv.config
    assert c.prune.ratio == 0.5
    assert tuple(c.export.quantize) == ("none", "float16")
    assert c.data.data_dir == "/x" and c.attention.steps == 3
    assert tuple(c.prune.ignore) == ("fc1",)
    assert c.model.se is False and c.finetune.steps_per_epoch == 2


@pytest.mark.parametrize("path,value,fragment", [
    ("prune.ratio", 1.0, "--config.prune.ratio"),
    ("prune.ratio", -0.5, "--config.prune.ratio"),
    ("prune.importance", "gamma", "--config.prune.importance"),
    ("model.arch", "resnet5O", "--config.model.arch"),
    ("data.name", "my_scenes", "--config.data.name"),
    ("data.image_size", 0, "--config.data.image_size"),
    ("train.optimizer", "rmsprop", "--config.train.optimizer"),
    ("finetune.epochs", -1, "--config.finetune.epochs"),
    ("export.quantize", ("int4",), "--config.export.quantize"),
    ("recalibrate.steps", -2, "--config.recalibrate.steps"),
])
def test_validate_config_names_the_field(path, value, fragment):
    cfg = load("demo.py")
    section, field = path.split(".")
    cfg[section][field] = value
    with pytest.raises(PipelineError) as err:
        validate_config(cfg)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_cap_without_se_gates_is_valid_gates_are_inserted():
    """cap on a gate-free model inserts and trains SE gates (attention
    stage), so the config is valid with or without --init_model."""
    cfg = load("demo.py")
    cfg.model.se = False
    validate_config(cfg)
    validate_config(cfg, init_model="given.keras")
    cfg.model.arch = "MobileNetV2"
    validate_config(cfg)


def test_validate_config_accepts_own_arch_and_folder(tmp_path):
    from PIL import Image
    import numpy as np
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for k in range(3):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / cls / f"{k}.png")
    cfg = load("demo.py")
    cfg.data.name = "folder"
    cfg.data.data_dir = str(tmp_path)
    cfg.model.arch = "efficientnetb0"     # case-insensitive
    validate_config(cfg)
    cfg.data.mean = "0.5,0.5"
    cfg.data.std = "0.2,0.2,0.2"
    with pytest.raises(PipelineError, match="--config.data.mean"):
        validate_config(cfg)


def test_reading_configs_imports_neither_keras_nor_tensorflow():
    code = (
        "import sys, pathlib\n"
        "from remotetrimmer_tf import prune\n"
        f"for p in sorted(pathlib.Path({str(REPO / 'configs')!r}).glob('*.py')):\n"
        "    prune.load_config_file(str(p))\n"
        "bad = [m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules]\n"
        "assert not bad, bad\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
