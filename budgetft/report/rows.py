"""Typed rows of a report: one per baseline and one per trial, with every derived number.

Conventions (stated in every report, see `METHOD_NOTES`):
- A trial is scored on its *kept* evaluation: the best by accuracy (earliest on ties), which
  is the one whose weights the run checkpoints. Its last evaluation is kept for reference.
- Accuracy, lift and CIs are in percentage points; costs are Decimal USD.
- lift per dollar = (trial accuracy - majority accuracy) in points / trial cost in USD.
- accuracy per dollar = trial accuracy in points / trial cost in USD.
- accuracy per kWh = trial accuracy in points / the trial's energy in kWh (telemetry/energy.py:
  measured from NVML or RAPL, or estimated from the CPU's rated power, as the report says).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from budgetft.report import stats

# How a trial ended, in words a reader needs no glossary for.
ENDED_LABELS = {
    "finished": "finished",
    "stopped_early": "stopped by ASHA",
    "stopped_by_cap": "stopped by cap",
    "failed": "failed",
    "running": "running",
    "interrupted": "interrupted",  # status "running" in a run that is no longer running
    "baseline": "baseline",
}

METHOD_NOTES = {
    "kept_evaluation": (
        "Each trial is scored on its best evaluation by accuracy (the earliest on ties): the "
        "checkpoint the run keeps. 'kept @' is its step; 'last acc %' is the trial's last evaluation."
    ),
    "significance": (
        f"Each trial is tested against the majority baseline on the same evaluation rows with "
        f"McNemar's exact test (a two-sided binomial test on the rows where exactly one of the "
        f"two is right), alpha = {stats.ALPHA}. Only 'yes' (more accurate, p < {stats.ALPHA}) is a win; "
        f"'no' (not significant, n.s.) and 'worse' (significantly less accurate) are not. Without per-row results, an exact binomial test of the "
        f"trial's correct count against the majority accuracy is used instead."
    ),
    "ci95": "95% confidence intervals of accuracy are Wilson score intervals.",
    "cost": (
        "A trial's cost is the sum of the ledger charges tagged with its id (its training and "
        "evaluation); trial.json's cost_usd is used only when the ledger has no charge for it. "
        "The zero-shot baseline costs the ledger's 'baselines' charges; the majority baseline "
        "needs no model and costs nothing."
    ),
    "lift_per_usd": (
        "Lift per dollar = (accuracy - majority accuracy) in percentage points / cost in USD. "
        "Trials that beat the majority baseline significantly are ranked by it; the others "
        "follow, unranked."
    ),
}


@dataclass
class Row:
    """One line of the results table: a trial or a baseline, on its kept evaluation."""

    kind: str  # "trial" or "baseline"
    id: str  # trial id, or "majority" / "zero_shot"
    model: str
    method: str  # method name, or "majority" / "zero-shot"
    config: dict[str, Any]
    status: str  # a key of ENDED_LABELS
    n: int | None = None  # evaluation rows
    correct_count: int | None = None
    accuracy: float | None = None  # fraction in [0, 1]
    ci95: tuple[float, float] | None = None
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    kept_step: int | None = None  # training step of the kept evaluation
    last_step: int | None = None  # training step of the last evaluation
    last_accuracy: float | None = None
    evaluations: int = 0
    steps: int | None = None  # training steps done (paid for)
    cost: Decimal | None = None  # USD
    trainable_params: int | None = None
    total_params: int | None = None
    examples_per_s: float | None = None
    class_bias: list[float] | None = None  # the verbalizer's fitted class bias at step 0, nats
    error: str | None = None
    stop_reason: str | None = None  # why a trial stopped before its plan, in words (trial.json)
    end_moved: dict | None = None  # its last step moved to where the money ended (trial.json)
    memory: dict | None = None  # how it fitted its GPU and what out of memory shrank (trial.json; report/memory.py)
    energy_wh: float | None = None  # the trial's share of the run's energy (report/energy.py)
    energy_estimated: bool = False  # from the CPU's rated power, not measured
    co2e_g: float | None = None  # energy x the run region's grid intensity
    # derived against the baselines
    lift_points: float | None = None  # vs majority, percentage points
    lift_vs_zero_shot: float | None = None
    lift_per_usd: float | None = None
    accuracy_per_usd: float | None = None
    accuracy_per_kwh: float | None = None  # accuracy points per kWh
    vs_majority: stats.PairedTest | None = None
    rank: int | None = None  # 1 = most lift per dollar among significant wins
    on_pareto_front: bool = False
    # not in tables: per-row results and the trajectory for plots
    correct: list[bool] | None = field(default=None, repr=False)
    trajectory: list[tuple[int, float, Decimal | None]] = field(default_factory=list, repr=False)  # (step, acc, cost)

    @property
    def ended(self) -> str:
        return ENDED_LABELS.get(self.status, self.status)

    @property
    def verdict(self) -> str:
        return self.vs_majority.verdict if self.vs_majority else stats.UNTESTED

    @property
    def beats_majority(self) -> bool:
        return self.verdict == stats.BETTER


def metrics_row(kind: str, id_: str, model: str, method: str, metrics: dict, status: str) -> Row:
    """A row from one `classification_metrics` record (a baseline, or a trial's evaluation)."""
    row = Row(kind=kind, id=id_, model=model, method=method, config={}, status=status)
    fill_metrics(row, metrics)
    return row


def fill_metrics(row: Row, metrics: dict) -> None:
    correct = metrics.get("correct")
    n = int(metrics.get("n", len(correct) if correct is not None else 0))
    if correct is not None and len(correct) == n:
        row.correct = [bool(x) for x in correct]
        row.correct_count = sum(row.correct)
    else:  # recorded without the per-row vector: counts from the accuracy
        row.correct_count = round(float(metrics.get("accuracy", 0.0)) * n)
    row.n = n
    row.accuracy = row.correct_count / n if n else None
    row.ci95 = stats.accuracy_ci95(row.correct_count, n) if n else None
    row.balanced_accuracy = _float(metrics.get("balanced_accuracy"))
    row.macro_f1 = _float(metrics.get("macro_f1"))


def kept_evaluation(evals: list[dict]) -> dict | None:
    """The evaluation whose weights the run keeps: best accuracy, earliest on ties."""
    scored = [e for e in evals if isinstance(e, dict) and e.get("accuracy") is not None]
    if not scored:
        return None
    return max(enumerate(scored), key=lambda ie: (float(ie[1]["accuracy"]), -ie[0]))[1]


def derive(rows: list[Row], majority: Row | None, zero_shot: Row | None) -> None:
    """Fill lift, lift per dollar, accuracy per dollar and the test against the majority."""
    for row in rows:
        if row.accuracy is None:
            continue
        if row.cost is not None and row.cost > 0:
            row.accuracy_per_usd = 100 * row.accuracy / float(row.cost)
        if row.energy_wh is not None and row.energy_wh > 0:
            row.accuracy_per_kwh = 100 * row.accuracy / (row.energy_wh / 1000)
        if zero_shot is not None and zero_shot.accuracy is not None and row is not zero_shot:
            row.lift_vs_zero_shot = 100 * (row.accuracy - zero_shot.accuracy)
        if majority is None or majority.accuracy is None or row is majority:
            continue
        row.lift_points = 100 * (row.accuracy - majority.accuracy)
        if row.cost is not None and row.cost > 0:
            row.lift_per_usd = row.lift_points / float(row.cost)
        row.vs_majority = paired_test(row, majority)


def paired_test(row: Row, baseline: Row) -> stats.PairedTest | None:
    if row.correct is not None and baseline.correct is not None and len(row.correct) == len(baseline.correct):
        return stats.mcnemar_exact(row.correct, baseline.correct)
    if row.n and row.correct_count is not None and baseline.accuracy is not None:
        return stats.binomial_vs_rate(row.correct_count, row.n, baseline.accuracy)
    return None


def rank(trials: list[Row]) -> list[Row]:
    """Significant wins over the majority baseline first, by lift per dollar (rank 1, 2, ...);
    then every other trial, unranked, by lift per dollar; trials without a score last."""

    def key(row: Row):
        lpd = row.lift_per_usd
        return (
            not row.beats_majority,
            row.accuracy is None,
            lpd is None,
            -(lpd if lpd is not None else 0.0),
            -(row.accuracy or 0.0),
            row.id,
        )

    ordered = sorted(trials, key=key)
    place = 0
    for row in ordered:
        row.rank = None
        if row.beats_majority:
            place += 1
            row.rank = place
    return ordered


# --sort choices: column -> (attribute, largest first?)
SORT_KEYS: dict[str, tuple[str, bool]] = {
    "rank": ("rank", False),
    "lift_per_usd": ("lift_per_usd", True),
    "accuracy_per_usd": ("accuracy_per_usd", True),
    "accuracy_per_kwh": ("accuracy_per_kwh", True),
    "energy": ("energy_wh", False),
    "accuracy": ("accuracy", True),
    "balanced_accuracy": ("balanced_accuracy", True),
    "macro_f1": ("macro_f1", True),
    "lift": ("lift_points", True),
    "p_value": ("p_value", False),
    "cost": ("cost", False),
    "steps": ("steps", True),
    "examples_per_s": ("examples_per_s", True),
    "trainable_params": ("trainable_params", False),
    "id": ("id", False),
}


def sort_rows(ranked: list[Row], column: str = "rank") -> list[Row]:
    """Re-order already ranked trials by another column; rows without a value go last.
    'rank' keeps the default order (significant wins first, by lift per dollar)."""
    if column not in SORT_KEYS:
        raise ValueError(f"unknown sort column {column!r}; valid: {', '.join(SORT_KEYS)}")
    if column == "rank":
        return list(ranked)
    attr, largest_first = SORT_KEYS[column]

    def value(row: Row):
        return row.vs_majority.p_value if attr == "p_value" and row.vs_majority else getattr(row, attr, None)

    present = [r for r in ranked if value(r) is not None]
    missing = [r for r in ranked if value(r) is None]
    return sorted(present, key=value, reverse=largest_first) + missing  # stable: ties keep rank order


def _float(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None
