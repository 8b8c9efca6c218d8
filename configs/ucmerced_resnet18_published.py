"""UC Merced Land Use x ResNet-18 with SE gates, CAP local ratio 0.7.

Data: 2,100 images, 256x256, 21 classes. Recipe:
the published RemoteTrimmer recipe: plain SGD lr 0.01, x0.1 at 50% and 75%,
no augmentation; 160 training + 40 AML fine-tuning epochs.

  python -m remotetrimmer_tf.prune --config=configs/ucmerced_resnet18_published.py \\
      --config.data.data_dir=<folder with the dataset>
"""
from remotetrimmer_tf.pipeline import config_base

base = config_base(__file__)


def get_config():
    return base.experiment("uc_merced", "resnet18", "published")
