"""report.json: the report as data, in the versioned schema documented in SCHEMA.md.

Bump SCHEMA_VERSION when a field is removed, renamed or changes meaning; adding a field is
not a breaking change and keeps the version.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from budgetft.report import stats
from budgetft.report.load import RunReport
from budgetft.report.memory import memory_lines
from budgetft.report.rows import METHOD_NOTES, Row
from budgetft.report.summary import Summary

SCHEMA = "budgetft.report"
SCHEMA_VERSION = 1


def report_json(report: RunReport, summary: Summary, trials: list[Row]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated": report.generated,
        "run": {
            "run_id": report.run_id,
            "job": report.job,
            "status": report.status,
            "started": report.run.get("started"),
            "finished": report.run.get("finished"),
            "model": report.model,
            "machine": report.machine,
            "device": report.run.get("device"),
            "price_per_hour_usd": _money(report.price_per_hour),
            "price_source": report.run.get("price_source"),
            "budget_usd": _money(report.budget),
            "cap_usd": _money(report.cap),
            "eval_rows": report.eval_rows,
        },
        "spend": {
            "total_usd": _money(report.spent),
            "cap_usd": _money(report.cap),
            "remaining_usd": _money(max(report.cap - report.spent, Decimal(0))) if report.cap is not None else None,
            "by_category_usd": {cat: _money(amount) for cat, amount in summary.spend},
            "charges": len(report.charges),
        },
        # The headline: the winner on the held-out test rows (test.json, minus per-row vectors)
        # and the plan's forecast beside it.
        "test": _without_rows(report.test),
        "forecast": report.forecast,
        "summary": {
            "best_trial": summary.best.id if summary.best else None,
            "most_lift_per_usd": summary.most_efficient.id if summary.most_efficient else None,
            "budget_limited": summary.budget_limited,
            "budget_note": summary.budget_note,
            "recommendation": summary.recommendation,
        },
        "significance": {"test": "mcnemar_exact", "fallback": "binomial_exact", "alternative": "two-sided",
                         "alpha": stats.ALPHA, "against": "majority"},
        "baselines": [row_json(r) for r in report.baselines],
        "trials": [row_json(r) for r in trials],
        "pareto_front": list(report.pareto),
        "notes": dict(METHOD_NOTES),
        "warnings": list(report.warnings),
        "memory": {"dropped": dict(report.dropped), "lines": memory_lines(trials, report.dropped)},
    }


def row_json(r: Row) -> dict[str, Any]:
    t = r.vs_majority
    return {
        "kind": r.kind,
        "id": r.id,
        "rank": r.rank,
        "model": r.model,
        "method": r.method,
        "config": r.config,
        "status": r.status,
        "ended": r.ended,
        "n": r.n,
        "correct": r.correct_count,
        "accuracy": _f(r.accuracy),
        "accuracy_ci95": [_f(x) for x in r.ci95] if r.ci95 else None,
        "balanced_accuracy": _f(r.balanced_accuracy),
        "macro_f1": _f(r.macro_f1),
        "kept_step": r.kept_step,
        "last_step": r.last_step,
        "last_accuracy": _f(r.last_accuracy),
        "evaluations": r.evaluations,
        "steps": r.steps,
        "cost_usd": _money(r.cost),
        "lift_points": _f(r.lift_points),
        "lift_vs_zero_shot_points": _f(r.lift_vs_zero_shot),
        "lift_per_usd": _f(r.lift_per_usd),
        "accuracy_per_usd": _f(r.accuracy_per_usd),
        "energy_wh": _f(r.energy_wh),
        "energy_estimated": r.energy_estimated,
        "co2e_g": _f(r.co2e_g),
        "accuracy_per_kwh": _f(r.accuracy_per_kwh),
        "vs_majority": None if t is None else {
            "test": t.test, "p_value": t.p_value, "better_rows": t.better, "worse_rows": t.worse, "verdict": t.verdict,
        },
        "beats_majority": r.beats_majority,
        "trainable_params": r.trainable_params,
        "total_params": r.total_params,
        "examples_per_s": _f(r.examples_per_s),
        "class_bias": r.class_bias,
        "on_pareto_front": r.on_pareto_front,
        "error": r.error,
        "stop_reason": r.stop_reason,
        "end_moved": r.end_moved,
        "memory": r.memory,
    }


def _money(x: Decimal | None) -> str | None:
    """Exact decimal strings: JSON numbers would turn dollars into binary floats."""
    return None if x is None else str(x)


def _f(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def _without_rows(test: dict | None) -> dict | None:
    """test.json without the per-row `correct` vectors (they stay in test.json itself)."""
    if not test:
        return test
    out = dict(test)
    for key in ("metrics", "majority", "zero_shot"):
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k != "correct"}
    return out
