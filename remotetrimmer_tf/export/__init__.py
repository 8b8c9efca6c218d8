"""Deployment: every Keras export format (LiteRT, SavedModel, ONNX, OpenVINO) with
a parity check each (``export_format``), LiteRT quantisation, quantisation-aware
training.

TensorFlow, ai_edge_litert, tf_keras and tfmot are imported lazily inside the
functions, so importing this package imports none of them.

Example (TensorFlow backend; a float32 export is checked against Keras):

    >>> import os, tempfile
    >>> import keras, numpy as np
    >>> from remotetrimmer_tf.export import to_litert, run_litert
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.tflite")
    >>> res = to_litert(model, path)
    >>> res.max_abs_diff < 1e-4, res.num_checked
    (True, 8)
    >>> x = np.ones((2, 4), "float32")
    >>> bool(np.allclose(run_litert(res.path, x), model(x), atol=1e-4))
    True
"""

from remotetrimmer_tf.export.litert import (
    QUANTIZE_MODES,
    LiteRTExport,
    LiteRTRunner,
    ParityError,
    check_parity,
    convert_to_litert_bytes,
    run_litert,
    to_litert,
    top1_agreement,
)
from remotetrimmer_tf.export.formats import (
    FORMATS,
    ExportFormatError,
    FormatExport,
    export_format,
)
from remotetrimmer_tf.export.qat import qat_available, qat_to_litert
from remotetrimmer_tf.export.saved_model import SavedModelExport, to_saved_model
from remotetrimmer_tf.export.tfmot_baseline import (
    compressed_size,
    tfmot_prune_to_litert,
)

__all__ = [
    "FORMATS",
    "ExportFormatError",
    "FormatExport",
    "export_format",
    "QUANTIZE_MODES",
    "LiteRTExport",
    "LiteRTRunner",
    "ParityError",
    "SavedModelExport",
    "check_parity",
    "compressed_size",
    "convert_to_litert_bytes",
    "qat_available",
    "qat_to_litert",
    "run_litert",
    "tfmot_prune_to_litert",
    "to_litert",
    "to_saved_model",
    "top1_agreement",
]
