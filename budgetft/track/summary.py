"""A finished run's results as trackers hold them: numbers, and the report as text.

    test/accuracy, test/balanced_accuracy, test/accuracy_ci95_low|high, test/rows
                          the winner on the held-out test rows (test.json)
    test/majority_accuracy, test/zero_shot_accuracy
                          both baselines on the same rows
    test/lift_over_majority_points, test/p_value_vs_majority (and _zero_shot)
                          McNemar's exact test on those rows
    baseline/majority_accuracy, baseline/zero_shot_accuracy (and _balanced_accuracy)
                          both baselines on the selection rows (baselines.json)
    spend/total_usd, spend/cap_usd, spend/<category>_usd
                          the ledger, by category
Texts: "report" (report.md), "winner" (which trial, its method and configuration, in words).
"""

from __future__ import annotations

import json
from pathlib import Path

from budgetft.rundir import RunDir
from budgetft.track.spend import spend_by_category

# report.md, report.json, results.csv and the plots the report stage wrote (budgetft.report).
REPORT_GLOBS = ("report.md", "report.json", "results.csv", "*.png", "test.json", "plan.json", "job.yaml", "baselines.json")


def summary_of(run: RunDir) -> tuple[dict[str, float], dict[str, str]]:
    scalars: dict[str, float] = {}
    texts: dict[str, str] = {}
    test = run.test() or {}
    metrics = test.get("metrics") or {}
    _put(scalars, "test/accuracy", metrics.get("accuracy"))
    _put(scalars, "test/balanced_accuracy", metrics.get("balanced_accuracy"))
    _put(scalars, "test/macro_f1", metrics.get("macro_f1"))
    ci = metrics.get("accuracy_ci95") or []
    if len(ci) == 2:
        _put(scalars, "test/accuracy_ci95_low", ci[0])
        _put(scalars, "test/accuracy_ci95_high", ci[1])
    if test.get("rows") is not None:
        _put(scalars, "test/rows", test.get("rows"))
    for name in ("majority", "zero_shot"):
        _put(scalars, f"test/{name}_accuracy", (test.get(name) or {}).get("accuracy"))
        versus = test.get(f"vs_{name}") or {}
        _put(scalars, f"test/lift_over_{name}_points", versus.get("lift_points"))
        _put(scalars, f"test/p_value_vs_{name}", versus.get("p_value"))
    baselines = run.baselines() or {}
    for name in ("majority", "zero_shot"):
        for key in ("accuracy", "balanced_accuracy"):
            _put(scalars, f"baseline/{name}_{key}", (baselines.get(name) or {}).get(key))
    for category, amount in spend_by_category(run.ledger).items():
        scalars[f"spend/{category}_usd"] = float(amount)
    cap = run.run().get("cap_usd")
    if cap:
        scalars["spend/cap_usd"] = float(cap)
    report = run.root / "report.md"
    if report.is_file():
        texts["report"] = report.read_text(encoding="utf-8")
    texts["winner"] = winner_in_words(test)
    return scalars, texts


def winner_in_words(test: dict) -> str:
    if not test:
        return "no held-out test was run (the job keeps no test rows, or the run ended before it)"
    if not test.get("winner"):
        return f"no winner: {test.get('why') or 'no trial kept weights'}"
    metrics = test.get("metrics") or {}
    line = (f"{test['winner']} ({test.get('method')}, {json.dumps(test.get('config') or {})}) on {test.get('rows')} held-out test rows: "
            f"accuracy {100 * metrics.get('accuracy', 0):.1f}%")
    versus = test.get("vs_majority") or {}
    if versus:
        line += f", {versus.get('lift_points'):+.1f} points over the majority answer (McNemar p = {versus.get('p_value'):.3g})"
    return line


def report_files(run_root: Path) -> list[Path]:
    """The report's files in the run directory, as the report stage left them."""
    found: list[Path] = []
    for pattern in REPORT_GLOBS:
        found += sorted(p for p in Path(run_root).glob(pattern) if p.is_file())
    return found


def _put(out: dict[str, float], name: str, value) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out[name] = float(value)
