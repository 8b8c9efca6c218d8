"""Two tiny local TFDS builders for the ``tfds:<builder>`` tests (offline).

- ``rt_tiny_manual_scenes``: reads ``<manual_dir>/<class>/<k>.png`` (the
  way resisc45 reads its manual download);
- ``rt_tiny_download_scenes``: downloads an archive (never reachable in the
  tests: the point is that nothing is attempted unless asked).

Importing the module registers both (``--custom_objects=tfds_tiny_builders``
in a CLI test).
"""
import numpy as np
import tensorflow_datasets as tfds

CLASSES = ("dunes", "fields", "lakes")
PER_CLASS = 6


def write_manual_folder(root, size=12):
    """The manual download: PER_CLASS PNGs per class, class i around 70*i."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for i, cls in enumerate(CLASSES):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(PER_CLASS):
            arr = (rng.random((size, size + k, 3)) * 40 + 70 * i).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{k}.png")
    return root


def _features():
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.ClassLabel(names=list(CLASSES))})


class RtTinyManualScenes(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put <class>/<k>.png in the manual dir."

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=_features())

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        return {"train": self._generate_examples(root, range(0, 4)),
                "test": self._generate_examples(root, range(4, PER_CLASS))}

    def _generate_examples(self, root, ks):
        for cls in CLASSES:
            for k in ks:
                yield f"{cls}_{k}", {"image": str(root / cls / f"{k}.png"),
                                     "label": cls}


class RtTinyDownloadScenes(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=_features())

    def _split_generators(self, dl_manager):
        path = dl_manager.download_and_extract(
            "http://rt-tiny-scenes.example.com/scenes.zip")
        return {"train": self._generate_examples(path)}

    def _generate_examples(self, path):
        yield from ()


class RtTinyCaptions(tfds.core.GeneratorBasedBuilder):
    """Not image classification: an image and a text."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "caption": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield from ()
