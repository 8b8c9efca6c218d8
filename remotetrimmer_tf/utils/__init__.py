"""Bottom-layer helpers shared by the whole package: one helper per job.

Nothing here imports from ``remotetrimmer_tf`` (only the standard library,
numpy and, lazily, Keras), so every module may import these helpers.

- ``files``: atomic writes (``atomic_path``, ``write_bytes_atomic``,
  ``write_text_atomic``, ``write_json_atomic``, ``replace_atomic``).
- ``batches``: the one adapter from the data forms we accept to numpy
  batches (``iterate_batches``, ``as_sample_array``, ``as_xy``).
- ``keras_models``: ``copy_weights``, ``clone_with_weights``,
  ``custom_objects``, ``infer_from_logits``.
- ``keras_json``: walkers over serialized Keras tensors in model configs
  (``map_keras_tensors``, ``keras_histories``).
- ``provenance``: ``git_commit`` / ``results_header`` for files under
  ``tools/results``.
"""
