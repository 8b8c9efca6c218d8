"""Training and fine-tuning: recipes, schedules, augmentation, fit, BN recalibration.

Backend-agnostic (``keras`` + numpy); TensorFlow is only imported by
``get_strategy`` on the TensorFlow backend.

Example:

```python
from remotetrimmer_tf import training

recipe = training.recipes.modern()
history = training.fit(model, (x_train, y_train), (x_val, y_val), recipe=recipe,
                       workdir="runs/resnet18")
print(training.evaluate(model, (x_test, y_test)))
```
"""
from remotetrimmer_tf.training import recipes
from remotetrimmer_tf.training.augment import Augment, RandomFlipRot90, make_augment
from remotetrimmer_tf.training.bn_recalibration import recalibrate_bn, settle_bn
from remotetrimmer_tf.training.callbacks import (BestCheckpoint, LastCheckpoint,
                                                 ProgressLogger, save_keras,
                                                 save_model_atomic)
from remotetrimmer_tf.training.settle_batch_norm import SettleBatchNorm
from remotetrimmer_tf.training.fit import (ArrayBatches, FitHistory, decayed_variables,
                                           distillation_loss, evaluate, fit,
                                           infer_from_logits, make_loss, make_optimizer,
                                           set_seed)
from remotetrimmer_tf.training.schedules import (MultiStepDecay, OneCycle, WarmupCosine,
                                                 make_schedule)
from remotetrimmer_tf.training.strategy import get_strategy, strategy_scope

__all__ = ["recipes", "fit", "FitHistory", "evaluate", "recalibrate_bn", "settle_bn",
           "SettleBatchNorm", "make_optimizer", "make_loss",
           "make_schedule", "make_augment", "Augment", "RandomFlipRot90",
           "MultiStepDecay", "OneCycle", "WarmupCosine", "BestCheckpoint",
           "LastCheckpoint", "ProgressLogger", "save_keras", "save_model_atomic", "ArrayBatches",
           "decayed_variables", "distillation_loss", "infer_from_logits", "set_seed", "get_strategy",
           "strategy_scope"]
