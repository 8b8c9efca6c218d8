"""The embedded default run: `python -m remotetrimmer_tf.prune` with no flags.

Starts from the trained SE-ResNet-18 shipped in the package
(`remotetrimmer_tf/assets/demo_model/`, float16 weights: trained on EuroSAT
RGB without the 800 images of the embedded sample; its training command and
accuracy are in its `model.json` and `tools/results/demo_model.md`), prunes
it with CAP at the published local ratio 0.7, re-estimates the BatchNorm
statistics, fine-tunes it briefly (Adaptive Mining Loss + distillation from
the shipped model) on the sample's 560 training images, and reports on the
sample's 240 test images, which the shipped model never saw. float32 + int8
LiteRT export. A few minutes on 2 CPU cores.

The same run trained from scratch: configs/demo_scratch.py. A checkout in
which the model was not packed yet (tools/pack_demo_model.py) runs that one.
"""
import importlib.util
import pathlib

from remotetrimmer_tf.pipeline import config_base

base = config_base(__file__)


def _scratch():
    """configs/demo_scratch.py beside this file (data, pruning, export)."""
    path = pathlib.Path(__file__).with_name("demo_scratch.py")
    spec = importlib.util.spec_from_file_location("remotetrimmer_demo_scratch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config():
    """The default run: prune the shipped SE-ResNet-18, fine-tune, report."""
    from remotetrimmer_tf import demo_model
    c = _scratch().get_config()
    c.name = "demo"
    if not demo_model.available():
        return c
    c.model.weights = demo_model.weights_path()   # float16 .npz, read as float32
    c.train = base.recipe("modern", "train", epochs=0)   # no training: start from it
    c.train.batch_size = 32
    c.finetune = base.recipe("modern", "finetune", epochs=8)
    c.finetune.batch_size = 32
    c.finetune.distill_weight = 1.0   # the shipped model teaches the pruned one
    return c
