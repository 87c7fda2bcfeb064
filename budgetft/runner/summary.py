"""The end-of-run results table (the full report is budgetft.report)."""

from __future__ import annotations

from decimal import Decimal

from rich.table import Table


def results_table(run) -> Table:
    baselines = run.baselines()
    majority = baselines.get("majority", {}).get("accuracy")
    table = Table(title=f"results: {run.root}", title_justify="left")
    for col in ("trial", "status", "steps", "acc %", "bal. acc %", "cost $", "acc/$", "lift/$"):
        table.add_column(col, justify="left" if col in ("trial", "status") else "right")
    for name, key in (("majority baseline", "majority"), ("zero-shot baseline", "zero_shot")):
        m = baselines.get(key)
        if m:
            table.add_row(name, "", "", f"{100 * m['accuracy']:.1f}", f"{100 * m['balanced_accuracy']:.1f}", "", "", "", style="dim")
    rows = []
    for t in run.trials():
        best = max(t.get("evals") or [{}], key=lambda e: e.get("accuracy", -1))
        cost = Decimal(t.get("cost_usd") or "0")
        acc = best.get("accuracy")
        per_dollar = f"{100 * acc / float(cost):.0f}" if acc is not None and cost > 0 else "–"
        lift = f"{100 * (acc - majority) / float(cost):+.0f}" if acc is not None and majority is not None and cost > 0 else "–"
        rows.append((acc if acc is not None else -1, t, best, cost, per_dollar, lift))
    for acc, t, best, cost, per_dollar, lift in sorted(rows, key=lambda r: -r[0]):
        table.add_row(
            t["trial_id"],
            t["status"].replace("_", " "),
            str(t.get("steps", 0)),
            f"{100 * acc:.1f}" if acc >= 0 else "–",
            f"{100 * best['balanced_accuracy']:.1f}" if "balanced_accuracy" in best else "–",
            f"{cost:.4f}",
            per_dollar,
            lift,
        )
    return table
