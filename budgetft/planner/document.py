"""`budgetft plan --json`: the plan as data, with plan.json's field names (Plan.to_json, as a run
writes it) plus what the plan was made from: the rates per method and the costs around training.
Money is exact decimal strings, as in plan.json; times are seconds."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

from budgetft.planner import Costs, MethodRate, Plan


def plan_document(plan: Plan, rates: dict[str, MethodRate], rates_source: str, costs: Costs,
                  eval_rows_per_s: float, calibration_seconds_spent: float = 0.0,
                  calibration_usd_spent: Decimal | None = None) -> dict:
    data = plan.to_json()
    data["eval_seconds"] = costs.eval_seconds  # as plan.json records it
    data["costs"] = asdict(costs)
    data["rates"] = {name: _rate(rate) for name, rate in rates.items()}
    data["rates_source"] = rates_source
    data["eval_rows_per_s"] = eval_rows_per_s
    # Measuring rates now (without --no-calibrate) costs time no run is charged for.
    data["calibration_spent"] = {
        "seconds": calibration_seconds_spent,
        "usd": None if calibration_usd_spent is None else str(calibration_usd_spent),
    }
    return data


def _rate(rate: MethodRate) -> dict:
    """A rate as data; trial_seconds and labelling_seconds_per_step only where a trial pays some
    (PET, iPET)."""
    data = asdict(rate)
    for key in ("trial_seconds", "labelling_seconds_per_step"):
        if not data.get(key):
            data.pop(key, None)
    return data
