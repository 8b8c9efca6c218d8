"""TFMOT magnitude pruning as a comparison row for structural pruning.

``tfmot.sparsity.keras.prune_low_magnitude`` zeroes the smallest weights
(unstructured sparsity) while keeping every tensor dense: the ``.tflite``
compresses well (gzip) but a dense LiteRT kernel runs just as many MACs, so
latency does not drop -- unlike RemoteTrimmer's structural pruning, which
makes the tensors genuinely smaller. Runs through the same Keras 3 ->
tf_keras bridge as :mod:`remotetrimmer_tf.export.qat` (optional ``qat``
extra, separate process).
"""

from __future__ import annotations

import gzip

from remotetrimmer_tf.export import _io
from remotetrimmer_tf.export.litert import write_checked
from remotetrimmer_tf.export.qat import run_tfmot_job


def compressed_size(path_or_bytes, level=9):
    """gzip-compressed size in bytes of a file (path) or bytes."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    return len(gzip.compress(data, compresslevel=level, mtime=0))


def tfmot_prune_to_litert(  # long: the TFMOT baseline recipe in order
    model,
    path,
    sparsity,
    train_data=None,
    *,
    quantize=None,
    representative_data=None,
    check_data=None,
    num_check=None,
    epochs=1,
    batch_size=32,
    learning_rate=1e-3,
    momentum=0.9,
    from_logits=None,
    max_train_samples=None,
    python=None,
    timeout=None,
    overwrite=False,
    seed=0,
    verbose=False,
):
    """Magnitude-prune ``model`` with tfmot to ``sparsity``; export LiteRT.

    Every Conv2D/Dense kernel is pruned to a constant ``sparsity`` (fraction
    of zeros) with ``prune_low_magnitude`` / ``ConstantSparsity``, fine-tuned
    for ``epochs`` on ``train_data`` (at least one step is needed to apply
    the masks, so ``train_data`` is required), stripped, converted (float32,
    or ``quantize="int8"``) and checked against the *unpruned* Keras model
    on ``check_data`` (top-1 agreement).

    Args:
        model: functional Keras 3 model of builtin layers.
        path: ``.tflite`` destination.
        sparsity: target fraction of zero weights in ``(0, 1)``; use the
            structural model's parameter reduction for a like-for-like row.
        train_data: ``(x, y)`` or batches of ``(images, labels)``.
        quantize: ``None`` or ``"int8"``.
        Other arguments: see :func:`remotetrimmer_tf.export.qat_to_litert`.

    Returns:
        :class:`~remotetrimmer_tf.export.LiteRTExport`; ``extra`` holds
        ``kernel_sparsity`` (measured), ``gzip_bytes`` and the history.

    Example:

        ```python
        res = tfmot_prune_to_litert(model, "tfmot_91.tflite", 0.91,
                                    (x_train, y_train))
        print(res.extra["gzip_bytes"], res.size_bytes)   # zeros compress
        ```
    """
    if not isinstance(sparsity, (int, float)) or not 0.0 < sparsity < 1.0:
        raise ValueError(f"`sparsity` must be in (0, 1), got {sparsity!r}.")
    if quantize not in (None, "int8"):
        raise ValueError(f'`quantize` must be None or "int8", got {quantize!r}.')
    if train_data is None:
        raise ValueError(
            "`train_data` is required: tfmot applies the pruning masks during "
            "training steps (pass learning_rate=0.0 to only apply them)."
        )
    path = _io.check_target(path, suffix=".tflite", overwrite=overwrite)
    data, info = run_tfmot_job(
        model,
        "prune",
        train_data,
        representative_data=representative_data,
        quantize=quantize,
        sparsity=float(sparsity),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        from_logits=from_logits,
        max_train_samples=max_train_samples,
        python=python,
        timeout=timeout,
        seed=seed,
        verbose=verbose,
    )
    info["gzip_bytes"] = compressed_size(data)
    info["target_sparsity"] = float(sparsity)
    return write_checked(
        model,
        path,
        data,
        quantize=quantize,
        int8_io=False,
        check_data=check_data,
        num_check=num_check,
        atol=None,  # a float32 tfmot file is not bound to match (it is sparse)
        min_top1_agreement=None,
        overwrite=overwrite,
        extra=info,
    )
