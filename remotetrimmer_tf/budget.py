"""Former home of the MAC / parameter budgets, kept so that old imports work:
the plan's cost is :class:`remotetrimmer_tf.cost.PlanCost`, the budget search
:func:`remotetrimmer_tf.planning.solve_budget`."""
from remotetrimmer_tf.cost import PlanCost  # noqa: F401
from remotetrimmer_tf.planning.budget_search import BUDGET_KINDS, local_ratios  # noqa: F401

__all__ = ["PlanCost", "BUDGET_KINDS", "local_ratios"]
