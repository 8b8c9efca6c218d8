"""EuroSAT RGB x VGG16-BN with SE gates, CAP local ratio 0.7.

Data: 27,000 images, 64x64, 10 classes. Recipe:
a stronger modern recipe: SGD momentum 0.9 + Nesterov, weight decay 5e-4,
one-cycle (peak lr 0.1), flips + rot90; 60 training + 30 AML fine-tuning
epochs, BN recalibration before fine-tuning.

  python -m remotetrimmer_tf.prune --config=configs/eurosat_vgg16bn_modern.py \\
      --config.data.data_dir=<folder with the dataset>
"""
from remotetrimmer_tf.pipeline import config_base

base = config_base(__file__)


def get_config():
    return base.experiment("eurosat", "vgg16_bn", "modern")
