"""Planning what a budget buys: trials per method, steps, ASHA rungs (budget), the configurations
tried (configs), the rates the arithmetic runs on (rates), and the costs around training with
the check made before anything is spent (costs)."""

from budgetft.planner.budget import (
    MAX_TRIALS_PER_METHOD,
    MIN_GRACE,
    MIN_STEPS,
    REDUCTION_FACTOR,
    BudgetTooSmall,
    Costs,
    MethodPlan,
    MethodRate,
    Plan,
    plan_budget,
)

__all__ = [
    "MAX_TRIALS_PER_METHOD", "MIN_GRACE", "MIN_STEPS", "REDUCTION_FACTOR", "BudgetTooSmall", "Costs",
    "MethodPlan", "MethodRate", "Plan", "plan_budget",
]
