"""What every tracker is told, in one shape: the run, its trials, and points on their curves.

Metric names are the same in TensorBoard, MLflow and W&B, grouped by a prefix:
  train/loss, train/learning_rate, train/examples_per_s     every step of a trial
  eval/accuracy, eval/balanced_accuracy, eval/macro_f1, eval/loss, eval/accuracy_ci95_low|high
                                                            each evaluation on the selection rows
  spend/run_usd      the run's spend so far (the ledger's total), at a trial's step
  spend/trial_usd    what the ledger has charged to the trial, at its evaluations
  test/..., baseline/..., spend/<category>_usd              the run's summary (budgetft.track.summary)
Steps are optimiser steps: a trial's evaluations sit on its training curve.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

# A metric value's name in each of the loop's records -> its tracked name.
STEP_METRICS = {"loss": "train/loss", "lr": "train/learning_rate", "examples_per_s": "train/examples_per_s"}
EVAL_METRICS = {
    "accuracy": "eval/accuracy", "balanced_accuracy": "eval/balanced_accuracy", "macro_f1": "eval/macro_f1",
    "eval_loss": "eval/loss", "train_loss": "eval/train_loss_since_last",
}
RUN_SPEND = "spend/run_usd"
TRIAL_SPEND = "spend/trial_usd"
TRIAL_STATUS_FOR = {"finished": "FINISHED", "stopped_early": "FINISHED", "stopped_by_cap": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
RUN_STATUS_FOR = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
# Parameter values longer than this are cut (MLflow refuses params over 6,000 characters).
PARAM_MAX = 500


@dataclass(frozen=True)
class Point:
    """One value of one curve: `name` at optimiser `step`, at `wall` (unix seconds)."""

    step: int
    name: str
    value: float
    wall: float


@dataclass
class RunFacts:
    """The run (or the `train` command) a tracker records: a name, flat parameters and tags."""

    run_id: str
    job: str
    kind: str  # "run" (a budgetft run: one tracker run with one child per trial) or "train"
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class TrialFacts:
    trial_id: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def flat(data: dict, prefix: str = "") -> dict[str, str]:
    """A nested mapping as flat "a.b" keys with text values (trackers take flat parameters)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[name] = text if len(text) <= PARAM_MAX else text[: PARAM_MAX - 1] + "…"
    return out


def step_points(step: int, values: dict, wall: float | None = None) -> list[Point]:
    """The training curve's points of one step (a StepLog's fields)."""
    now = time.time() if wall is None else wall
    return [Point(step, name, float(values[key]), now) for key, name in STEP_METRICS.items() if _number(values.get(key))]


def eval_points(step: int, metrics: dict, wall: float | None = None) -> list[Point]:
    """An evaluation's points: its scalar metrics, its interval's ends, the trial's spend."""
    now = time.time() if wall is None else wall
    points = [Point(step, name, float(metrics[key]), now) for key, name in EVAL_METRICS.items() if _number(metrics.get(key))]
    ci = metrics.get("accuracy_ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_number(x) for x in ci):
        points += [Point(step, "eval/accuracy_ci95_low", float(ci[0]), now), Point(step, "eval/accuracy_ci95_high", float(ci[1]), now)]
    cost = metrics.get("cost_usd")
    if cost is not None:
        try:
            points.append(Point(step, TRIAL_SPEND, float(cost), now))
        except (TypeError, ValueError):
            pass
    return points


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN
