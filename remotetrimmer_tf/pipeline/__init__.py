"""Resumable pruning pipeline over a run folder (the engine of the CLI).

`run_pipeline(config, workdir=...)` (`pipeline.run`) runs the stages of
`pipeline.stages` (train -> attention -> fold -> prune -> recalibrate ->
finetune -> evaluate -> export -> report), each writing its artifacts
atomically into the run folder and recording itself in the ledger
`stages.json`; a rerun skips the finished stages. `validate_config`
(`pipeline.config`) checks a config without importing TensorFlow.

Example:
  from ml_collections import config_flags  # or load a configs/*.py yourself
  summary = run_pipeline(config, workdir="runs/try1")
  print(summary["report"]["accuracy"])
"""
from remotetrimmer_tf.pipeline.config import (budget_of, config_base, config_dir,
                                              load_module_file, validate_config)
from remotetrimmer_tf.pipeline.run import (parse_force, parse_stages, resolve_workdir,
                                           run_pipeline)
from remotetrimmer_tf.pipeline.stages import STAGES
from remotetrimmer_tf.pipeline.workdir import PipelineError, Workdir

__all__ = ["PipelineError", "Workdir", "run_pipeline", "validate_config",
           "STAGES", "parse_stages", "parse_force", "config_dir", "config_base",
           "resolve_workdir", "load_module_file", "budget_of"]
