"""The demo trained from scratch (the default run before version 0.2).

    python -m remotetrimmer_tf.prune --config=configs/demo_scratch.py

The package's class-balanced EuroSAT RGB sample (800 real images, 80 per
class, split 70/30 as the full dataset), ResNet-18 with SE gates trained for
a few epochs with the modern recipe, CAP importance at the published local
ratio 0.7, a short AML fine-tune, float32 + int8 LiteRT export. A few
minutes on 2 CPU cores; the accuracies of so short a run on 560 training
images are a smoke test, not a result. The default run (configs/demo.py)
starts from the trained model shipped in the package instead.
"""
from remotetrimmer_tf.pipeline import config_base

base = config_base(__file__)


def get_config():
    """The from-scratch demo: ResNet-18 + SE trained 6 epochs on 560 images."""
    from remotetrimmer_tf.data import sample_dir
    c = base.get_config()
    c.name = "demo_scratch"
    c.data.name = "eurosat"
    c.data.data_dir = str(sample_dir())
    c.data.image_size = 64
    c.data.batch_size = 64
    c.model.arch = "resnet18"
    c.model.se = True
    c.train = base.recipe("modern", "train", epochs=6)
    c.train.batch_size = 32
    c.finetune = base.recipe("modern", "finetune", epochs=3)
    c.finetune.batch_size = 32
    c.prune.importance = "cap"
    c.prune.ratio = 0.7
    c.recalibrate.steps = 10
    c.export.quantize = ("none", "int8")
    c.export.representative_steps = 4
    c.export.check_samples = 240
    return c
