"""Several runs side by side (the same job on two machines, or at two budgets), and which one
bought more accuracy per dollar.

A run's accuracy per dollar is judged on what the whole run cost: the lift of its most
accurate trial over the majority baseline, in points, divided by the run's total spend
("run lift/$"). Only a run whose best trial beats the majority significantly can win; the
best single trial's lift per dollar is shown as well.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from budgetft.report import fmt
from budgetft.report.load import RunReport
from budgetft.report.rows import Row
from budgetft.report.summary import Summary, summarize
from budgetft.report.tables import md_table

SCHEMA = "budgetft.comparison"
SCHEMA_VERSION = 1


@dataclass
class RunLine:
    report: RunReport
    summary: Summary

    @property
    def best(self) -> Row | None:
        return self.summary.best

    @property
    def run_lift_per_usd(self) -> float | None:
        """Best trial's lift over the majority (points) / everything the run spent (USD)."""
        b = self.best
        if b is None or b.lift_points is None or self.report.spent <= 0:
            return None
        return b.lift_points / float(self.report.spent)

    @property
    def wins(self) -> bool:
        return self.best is not None and self.best.beats_majority


@dataclass
class Comparison:
    lines: list[RunLine]
    winner: RunLine | None
    verdict: str
    warnings: list[str]


def compare(reports: list[RunReport]) -> Comparison:
    lines = [RunLine(r, summarize(r)) for r in reports]
    warnings = []
    if len({r.job for r in reports}) > 1:
        warnings.append("the runs are of different jobs: their accuracies are not directly comparable")
    if len({r.eval_rows for r in reports}) > 1 or len({r.majority.accuracy if r.majority else None for r in reports}) > 1:
        warnings.append("the runs were scored on different evaluation rows: compare their lifts, not their accuracies")
    contenders = [ln for ln in lines if ln.wins and ln.run_lift_per_usd is not None]
    if not contenders:
        # Still say which run did better per dollar, as what it is: a hint, not a win.
        scored = sorted((ln for ln in lines if ln.run_lift_per_usd is not None), key=lambda ln: ln.run_lift_per_usd, reverse=True)
        hint = ""
        if len(scored) > 1:
            top = scored[0]
            hint = (f" {top.report.run_id} got the most lift per dollar ({fmt.number(top.run_lift_per_usd)} points per dollar, against "
                    + "; ".join(f"{fmt.number(ln.run_lift_per_usd)} for {ln.report.run_id}" for ln in scored[1:])
                    + "), a difference within noise until one of them wins.")
        return Comparison(lines, None, "No run bought a significant win over the majority baseline, so none bought "
                          "accuracy worth its price." + hint, warnings)
    ranked = sorted(contenders, key=lambda ln: ln.run_lift_per_usd, reverse=True)
    win = ranked[0]
    verdict = (f"{win.report.run_id}, on {win.report.machine}, bought more accuracy per dollar: "
               f"{fmt.number(win.run_lift_per_usd)} points over the majority per dollar spent "
               f"({fmt.points(win.best.lift_points)} points for {fmt.usd(win.report.spent)})")
    others = [ln for ln in lines if ln is not win]
    if others:
        verdict += ", against " + "; ".join(
            f"{fmt.number(ln.run_lift_per_usd)} for {ln.report.run_id}" + ("" if ln.wins else " (no significant win)")
            for ln in others)
    return Comparison(lines, win, verdict + ".", warnings)


# (label, function of a RunLine -> cell text)
FIELDS = (
    ("job", lambda ln: ln.report.job),
    ("machine", lambda ln: ln.report.machine),
    ("price", lambda ln: f"{fmt.usd(ln.report.price_per_hour)}/h" if ln.report.price_per_hour is not None else fmt.DASH),
    ("status", lambda ln: ln.report.status),
    ("spent / cap", lambda ln: f"{fmt.usd(ln.report.spent)} / {fmt.usd(ln.report.cap)}"),
    ("trials (evaluated)", lambda ln: f"{len(ln.report.trials)} ({sum(t.accuracy is not None for t in ln.report.trials)})"),
    ("majority acc %", lambda ln: fmt.pct(ln.report.majority.accuracy) if ln.report.majority else fmt.DASH),
    ("best trial", lambda ln: f"{ln.best.id} ({fmt.method_and_settings(ln.best)})" if ln.best else fmt.DASH),
    ("best acc % (95% CI)", lambda ln: f"{fmt.pct(ln.best.accuracy)} ({fmt.ci(ln.best.ci95)})" if ln.best else fmt.DASH),
    ("best trial cost", lambda ln: fmt.usd(ln.best.cost) if ln.best else fmt.DASH),
    ("lift over majority", lambda ln: _lift(ln.best)),
    ("best trial lift/$", lambda ln: fmt.number(ln.best.lift_per_usd) if ln.best else fmt.DASH),
    ("run lift/$", lambda ln: fmt.number(ln.run_lift_per_usd)),
    ("budget the limit?", lambda ln: {True: "yes", False: "no", None: "unknown"}[ln.summary.budget_limited]),
)


def _lift(best: Row | None) -> str:
    if best is None or best.lift_points is None:
        return fmt.DASH
    t = best.vs_majority
    mark = "significant" if best.beats_majority else "not significant"
    return f"{fmt.points(best.lift_points)} pts, {mark}" + (f" (p={fmt.p_value(t.p_value)})" if t else "")


def _cells(comp: Comparison) -> tuple[list[str], list[list[str]]]:
    ids = [ln.report.run_id for ln in comp.lines]
    # The same run id twice (copies of one run): tell the columns apart by their folder.
    header = ["", *[i if ids.count(i) == 1 else f"{i} ({ln.report.root})" for i, ln in zip(ids, comp.lines)]]
    return header, [[label, *[get(ln) for ln in comp.lines]] for label, get in FIELDS]


def rich_view(comp: Comparison):
    header, rows = _cells(comp)
    table = Table(title="Runs side by side", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("", style="bold", no_wrap=True)
    for name in header[1:]:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    parts = [table, Text(comp.verdict, style="bold green" if comp.winner else "bold yellow")]
    parts += [Text(f"note: {w}", style="yellow") for w in comp.warnings]
    parts.append(Text("run lift/$ = the best trial's lift over the majority baseline (points) / the run's total "
                      "spend (USD); only a run whose best trial beats the majority significantly (McNemar exact, "
                      "alpha 0.05) can win.", style="dim"))
    return Group(*parts)


def markdown(comp: Comparison) -> str:
    header, rows = _cells(comp)
    out = ["# Runs compared", "", f"**{comp.verdict}**", ""]
    out += [f"> **Note:** {w}" for w in comp.warnings] + ([""] if comp.warnings else [])
    out += [md_table(header, rows), ""]
    out += ["*run lift/$* = the best trial's lift over the majority baseline (points) / the run's total spend (USD). "
            "Only a run whose best trial beats the majority significantly (McNemar exact, alpha 0.05) can win.", ""]
    return "\n".join(out)


def comparison_json(comp: Comparison) -> dict:
    def run(ln: RunLine) -> dict:
        r, b = ln.report, ln.best
        return {
            "run_id": r.run_id, "root": str(r.root), "job": r.job, "status": r.status, "machine": r.machine,
            "price_per_hour_usd": None if r.price_per_hour is None else str(r.price_per_hour),
            "budget_usd": None if r.budget is None else str(r.budget),
            "cap_usd": None if r.cap is None else str(r.cap), "spent_usd": str(r.spent),
            "trials": len(r.trials), "evaluated": sum(t.accuracy is not None for t in r.trials),
            "majority_accuracy": r.majority.accuracy if r.majority else None,
            "best_trial": b.id if b else None,
            "best_accuracy": b.accuracy if b else None,
            "best_cost_usd": str(b.cost) if b and b.cost is not None else None,
            "best_lift_points": b.lift_points if b else None,
            "best_beats_majority": ln.wins,
            "best_p_value": b.vs_majority.p_value if b and b.vs_majority else None,
            "best_lift_per_usd": b.lift_per_usd if b else None,
            "most_lift_per_usd_trial": ln.summary.most_efficient.id if ln.summary.most_efficient else None,
            "run_lift_per_usd": ln.run_lift_per_usd,
            "budget_limited": ln.summary.budget_limited,
        }

    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "runs": [run(ln) for ln in comp.lines],
            "winner": comp.winner.report.run_id if comp.winner else None, "verdict": comp.verdict,
            "warnings": comp.warnings}


def csv_text(comp: Comparison) -> str:
    data = comparison_json(comp)["runs"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(data[0]) if data else ["run_id"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(data)
    return buf.getvalue()
