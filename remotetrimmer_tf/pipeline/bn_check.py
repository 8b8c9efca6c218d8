"""Is an `--init_model`'s BatchNorm state settled? Checked before it is used.

A model trained for a few tens of steps with Keras' default BN momentum (0.99)
still carries running statistics close to their initial (0, 1): in evaluation
mode it scores near chance although its weights are fine. The train stage
compares the model with its stored statistics against a copy whose statistics
are re-estimated (precise BN, `training.bn_recalibration.settle_bn`) over
training batches, both measured in evaluation mode on the validation split
(the training split when there is none; never the test split). When the
re-estimated copy is clearly better, the run uses it as `model_trained.keras`
and the report says so; the user's file is never changed.
"""
from remotetrimmer_tf.utils.batches import as_xy

__all__ = ["check_init_bn", "CLEARLY_BETTER"]

#: accuracy gain (absolute) above which the re-estimated statistics are used
CLEARLY_BETTER = 0.02


def check_init_bn(run, model, batches=20):
    """``(model to use, info)`` for a loaded `--init_model`.

    Args:
      run: the pipeline `Run`.
      model: the user's model as loaded (not modified).
      batches: training batches to re-estimate on and to measure with.

    Returns:
      the user's model, or a copy with re-estimated BN statistics; and a
      JSON-able dict (stored / settled accuracy, the split measured on, the
      action taken) — `{}` for a model without BatchNormalization.
    """
    from remotetrimmer_tf import training
    from remotetrimmer_tf.training.bn_recalibration import batch_norms, recalibrate_bn
    if not batch_norms(model):
        return model, {}
    bs = int(run.cfg.data.batch_size)
    split = "val" if float(run.cfg.data.val_fraction) > 0 else "train"
    settled = recalibrate_bn(model, run.data("train", shuffle=True), steps=int(batches),
                             batch_size=bs)
    # one fixed sample of the split for both (a shuffled one: a split's file
    # order may run class by class)
    measure = as_xy(run.data(split, shuffle=True), limit=int(batches) * bs)
    stored_acc = training.evaluate(model, measure, batch_size=bs)["accuracy"]
    settled_acc = training.evaluate(settled, measure, batch_size=bs)["accuracy"]
    use = settled_acc > stored_acc + CLEARLY_BETTER
    info = {"stored_accuracy": stored_acc, "settled_accuracy": settled_acc,
            "measured_on": f"{split} split, at most {int(batches)} batches",
            "action": "re-estimated" if use else "kept"}
    return (settled if use else model), info


def bn_line(info):
    """The report line for the check's info, or None when nothing was done."""
    if not info or info.get("action") != "re-estimated":
        return None
    return (f"--init_model carries unsettled BatchNorm statistics: "
            f"{100 * info['stored_accuracy']:.1f}% with its stored statistics, "
            f"{100 * info['settled_accuracy']:.1f}% after re-estimating them "
            f"({info['measured_on']}, evaluation mode); this run re-estimated them "
            "(model_trained.keras) and left your file unchanged")
