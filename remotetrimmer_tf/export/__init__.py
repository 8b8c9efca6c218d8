"""Deployment: LiteRT/TFLite and SavedModel export, quantisation-aware training.

TensorFlow, ai_edge_litert, tf_keras and tfmot are imported lazily inside the
functions, so importing this package imports none of them.

Example:
    >>> from remotetrimmer_tf.export import to_litert, run_litert
    >>> res = to_litert(model, "model.tflite")           # float32, checked
    >>> logits = run_litert(res.path, images, num_threads=2)
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
from remotetrimmer_tf.export.qat import qat_available, qat_to_litert
from remotetrimmer_tf.export.saved_model import SavedModelExport, to_saved_model
from remotetrimmer_tf.export.tfmot_baseline import (
    compressed_size,
    tfmot_prune_to_litert,
)

__all__ = [
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
