"""The forecast a plan prints before spending: the lift over the majority answer a run should
see on its held-out test rows, and a range that holds four times in five.

An outcome differs from the curve's value at the planned size for four independent reasons, and
the range adds them up (as variances, in points):
- seed: trials of the same recipe with another seed land apart (the curve's seed-to-seed sd);
- prior: the curve itself was measured on a finite number of held-out rows and seeds (or, once
  this machine's outcomes corrected it, what is still unknown of its bias);
- test rows: the outcome is judged on a few hundred held-out rows, a binomial draw;
- pace: the run trains more or fewer steps than planned as the machine's speed varies (its
  trial's end follows the measured pace), which moves it along the curve by its slope; the
  planned size is corrected by this machine's mean pace, and its spread is the pace's sd.
The range is the central COVERAGE interval of a normal with that spread around the corrected
lift. benchmarks/forecast.py replays stored runs to check that it holds as often as it claims.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from budgetft.planner.curves import Curve, rows_sd

COVERAGE = 0.80  # the range's promise: four outcomes in five inside it
Z = 1.2816  # the standard normal's 90th percentile: the central 80%
# Without a measured seed spread: the MiniLM prior's seeds differed by about this much.
DEFAULT_SEED_SD = 2.0
# The pace's spread, log(steps trained / planned), before this machine has runs of its own:
# idle README runs trained 0.77-1.20 times their planned steps (benchmarks/README.md).
DEFAULT_PACE_SD = 0.15
PACE_PRIOR_RUNS = 2  # how much DEFAULT_PACE_SD weighs against this machine's own paces


@dataclass(frozen=True)
class Pace:
    """How a trial's trained steps stand to its planned ones on this machine: log(trained /
    planned), mean and sd."""

    mean: float = 0.0
    sd: float = DEFAULT_PACE_SD
    runs: int = 0

    @classmethod
    def of(cls, logs: list[float]) -> "Pace":
        """From this machine's stored paces, with DEFAULT_PACE_SD weighing as PACE_PRIOR_RUNS runs
        (one run's pace says little about the next); the mean is shrunk toward 0 alike."""
        n = len(logs)
        if n == 0:
            return cls()
        mean = sum(logs) / n * n / (n + PACE_PRIOR_RUNS)
        var = statistics.pvariance(logs) if n > 1 else 0.0
        sd = math.sqrt((n * var + PACE_PRIOR_RUNS * DEFAULT_PACE_SD**2) / (n + PACE_PRIOR_RUNS))
        return cls(mean, sd, n)


@dataclass(frozen=True)
class Forecast:
    lift: float  # points over the majority answer on the held-out test rows
    low: float
    high: float
    sd: float
    parts: dict  # each reason's standard deviation, points
    examples: int  # the size the curve was read at (planned, corrected by this machine's pace)


def forecast(curve: Curve, examples: float, bonus: float = 0.0, test_rows: int | None = None, pace: Pace = Pace()) -> Forecast:
    """The forecast for a run whose trials train `examples` examples as planned; `bonus`: what
    choosing the best of several trials adds (budgetft.planner.prior.best_of_bonus)."""
    size = examples * math.exp(pace.mean)
    point = curve.at(size)
    seed = point.sd if point.sd is not None else DEFAULT_SEED_SD
    if curve.bias_sd is not None:
        prior = curve.bias_sd
    else:  # the prior's rows are shared by its seeds; its seeds average their own spread
        prior = math.sqrt((rows_sd(point.rows) or 0.0) ** 2 + seed**2 / max(1, point.runs))
    parts = {"seed": seed, "prior": prior, "test_rows": rows_sd(test_rows) or 0.0, "pace": abs(curve.slope(size)) * pace.sd}
    sd = math.sqrt(sum(v**2 for v in parts.values()))
    lift = point.lift + bonus
    return Forecast(lift, lift - Z * sd, lift + Z * sd, sd, {k: round(v, 2) for k, v in parts.items()}, int(size))
