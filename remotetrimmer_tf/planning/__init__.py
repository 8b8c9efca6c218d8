"""Planning: how many (and which) channels every group keeps.

Plain functions of data: after scoring, the Pruner builds one
:class:`ScoredGroups` (scores normalised once, floors, sections, units) and a
planner turns it plus rules into ``{group: kept indices}``:

- :func:`plan_ratio`: local / global ratio (``WidthRules``);
- :func:`solve_budget`: the ratio plan closest to a MAC / parameter budget
  (the cost is an input: ``cost.PlanCost``);
- :class:`LatencySearch`: per-group widths within a predicted latency, one
  method per move (the prediction and the timing are inputs:
  ``latency.PlanLatency``);
- :func:`check_target`: the one validation of a budget, shared with the CLI.

Every planner moves a group's width in whole units (``ChannelGroup.units``:
attention heads...; single channels otherwise), keeps at least one unit and
one channel of every section. This package imports nothing above it (no
pruner, pipeline, surgeon or graph walk).
"""

from remotetrimmer_tf.planning.budget_search import (BUDGET_KINDS, BudgetOutOfRange,
                                                     local_ratios, solve_budget)
from remotetrimmer_tf.planning.latency_search import LatencySearch, candidates, keep_of
from remotetrimmer_tf.planning.ratio import plan_global, plan_local, plan_ratio
from remotetrimmer_tf.planning.scored_groups import ScoredGroups, normalised
from remotetrimmer_tf.planning.targets import TargetError, check_target
from remotetrimmer_tf.planning.widths import (WidthRules, check_ratio, kept_count,
                                              round_width)

__all__ = ["ScoredGroups", "normalised", "WidthRules", "check_ratio", "kept_count",
           "round_width", "plan_ratio", "plan_local", "plan_global", "solve_budget",
           "local_ratios", "BUDGET_KINDS", "BudgetOutOfRange", "LatencySearch",
           "candidates", "keep_of", "TargetError", "check_target"]
