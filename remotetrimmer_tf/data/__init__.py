"""Remote-sensing scene datasets: EuroSAT RGB and UC Merced.

One API for three sources — a local folder in the official layout, TFDS
(``eurosat/rgb``, ``uc_merced``; download or the official zip as manual dir),
and the embedded EuroSAT demo sample — always with the same deterministic,
stratified 70/30 split.

Example:

```python
from remotetrimmer_tf import data

train = data.load("eurosat", "train")            # tf.data, (B,64,64,3) float32
x, y = data.load_numpy("eurosat", "test")        # numpy, no TensorFlow
demo = data.load("eurosat", "train", data_dir=data.sample_dir())
```

Importing this package does not import TensorFlow.
"""
from remotetrimmer_tf.data.api import (SOURCES, load, load_numpy, normalize_numpy,
                                       split_file_list)
from remotetrimmer_tf.data.checks import BadImageError, filter_bad_images, find_bad_images
from remotetrimmer_tf.data.folder import (ENV_VAR, DatasetNotFoundError, find_root,
                                          list_files, sample_dir)
from remotetrimmer_tf.data.numpy_source import numpy_batches
from remotetrimmer_tf.data.registry import (DATASETS, DatasetSpec, class_names,
                                            get_spec, info, num_classes)
from remotetrimmer_tf.data.splits import split_files, split_fingerprint, split_key

__all__ = [
    "BadImageError", "DATASETS", "DatasetNotFoundError", "filter_bad_images", "find_bad_images", "DatasetSpec", "ENV_VAR", "SOURCES",
    "class_names", "find_root", "get_spec", "info", "list_files", "load",
    "load_numpy", "normalize_numpy", "num_classes", "numpy_batches", "sample_dir", "split_file_list",
    "split_files", "split_fingerprint", "split_key",
]
