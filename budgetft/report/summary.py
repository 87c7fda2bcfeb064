"""The top of every report: what the money bought, against what, and what to buy next time."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from budgetft.report import fmt, stats
from budgetft.report.load import CORE_CATEGORIES, RunReport
from budgetft.report.rows import Row
from budgetft.report.test_section import beats_majority, missing

# Spend categories in the order a reader meets them in a run.
CATEGORY_ORDER = ("boot", "upload", *CORE_CATEGORIES, "report", "teardown", "minimum")
NEARLY_ALL = Decimal("0.95")  # spending 95% of the cap counts as "the budget was the limit"


@dataclass
class Summary:
    best: Row | None  # the most accurate trial: the model the money bought
    most_efficient: Row | None  # rank 1: significant win with the most lift per dollar
    budget_limited: bool | None  # None while the run is still running
    budget_note: str
    recommendation: str
    spend: list[tuple[str, Decimal]]  # (category, USD) in CATEGORY_ORDER


def summarize(report: RunReport) -> Summary:
    scored = [t for t in report.trials if t.accuracy is not None]
    best = max(scored, key=lambda t: (t.accuracy, -(t.cost or 0))) if scored else None
    most_efficient = next((t for t in report.trials if t.rank == 1), None)
    limited, note = budget_verdict(report)
    return Summary(
        best=best,
        most_efficient=most_efficient,
        budget_limited=limited,
        budget_note=note,
        recommendation=recommend(report, best, most_efficient),
        spend=spend_breakdown(report),
    )


def spend_breakdown(report: RunReport) -> list[tuple[str, Decimal]]:
    shown = []
    for cat in [*CATEGORY_ORDER, *sorted(set(report.spend_by_category) - set(CATEGORY_ORDER))]:
        amount = report.spend_by_category.get(cat, Decimal(0))
        if cat in CORE_CATEGORIES or amount > 0 or (cat in ("boot", "upload") and report.is_cloud):
            shown.append((cat, amount))
    return shown


def spend_line(report: RunReport, summary: Summary) -> str:
    parts = " · ".join(f"{cat} {fmt.usd(amount)}" for cat, amount in summary.spend)
    if report.cap:
        share = 100 * report.spent / report.cap
        head = f"{fmt.usd(report.spent)} of the {fmt.usd(report.cap)} cap ({share:.1f}%)"
        if report.budget is not None and report.budget != report.cap:
            head += f", budget {fmt.usd(report.budget)}"
    else:
        head = f"{fmt.usd(report.spent)} (no cap recorded)"
    return f"{head}: {parts}"


def budget_verdict(report: RunReport) -> tuple[bool | None, str]:
    capped = [t for t in report.trials if t.status == "stopped_by_cap"]
    # "still improving": its best evaluation was its last one, and it had more than one.
    improving = [t.id for t in capped if t.evaluations > 1 and t.kept_step is not None and t.kept_step == t.last_step]
    if capped:
        text = f"The budget was the limit: {_count(capped, 'trial')} {'was' if len(capped) == 1 else 'were'} stopped by the cap"
        if improving:
            return True, text + f" ({', '.join(improving)} still improving at its last evaluation), so more money would likely buy more accuracy."
        return True, text + ", so more money would have let them finish."
    if report.cap and report.spent >= NEARLY_ALL * report.cap:
        return True, f"The budget was the limit: {100 * report.spent / report.cap:.0f}% of the cap was spent."
    if report.status == "running":
        return None, "The run is still running; whether the budget is the limit is not known yet."
    if report.cap:
        return False, f"The budget was not the limit: {fmt.usd(report.cap - report.spent)} of the cap was left unspent."
    return None, "No cap was recorded, so whether the budget was the limit is unknown."


def recommend(report: RunReport, best: Row | None, most_efficient: Row | None) -> str:
    """One plain-language sentence: what to pay for next time, or why not to. With a held-out
    test, its verdict decides: the selection rows chose the winner and cannot also prove it."""
    test = report.test
    if missing(test):
        return (f"Unproven: {test['winner']} is the best trial on the selection rows, which chose it and cannot also prove it; "
                f"{missing(test)}. Continue the run with a larger --budget (`budgetft run --resume`) to score the held-out test before relying on it.")
    if test and test.get("winner"):
        cls = (test.get("majority") or {}).get("majority_class")
        always = f"always answering {cls!r}" if cls is not None else "always answering the majority class"
        if beats_majority(test):
            return (f"Use {test['winner']} ({test.get('method')}, {fmt.settings(test.get('config') or {}) or 'default settings'}): on rows no "
                    f"decision saw it beats {always} by {fmt.points(test['vs_majority']['lift_points'])} points with significance "
                    f"(McNemar exact p = {fmt.p_value(test['vs_majority']['p_value'])}); `budgetft export` hands it over.")
        return (f"Do not rely on {test['winner']} yet: on the held-out test rows it does not beat {always} with significance "
                f"({fmt.points(test['vs_majority']['lift_points'])} points, p = {fmt.p_value(test['vs_majority']['p_value'])}); "
                "the majority answer is the better buy until a larger budget buys a trial that does.")
    failed = [t for t in report.trials if t.status == "failed"]
    if best is None:
        tail = f" {_count(failed, 'trial')} failed; see the errors below." if failed else ""
        why = report.no_winner or "no trial has been evaluated"
        return f"Nothing to recommend yet: {why}." + tail
    if report.majority is None or report.majority.accuracy is None:
        return (f"{best.id} ({fmt.method_and_settings(best)}) is the most accurate trial, but without the majority "
                "baseline nothing says whether it beats always answering the most common class.")
    cls = report.majority_class
    always = f"always answering {cls!r}" if cls is not None else "always answering the majority class"
    if most_efficient is not None:
        w = most_efficient
        return (f"Pay for {fmt.method(w.method)} ({fmt.settings(w.config) or 'default settings'}) on {report.machine}: "
                f"it bought the most accuracy per dollar, {fmt.points(w.lift_points)} points over {always} "
                f"for {fmt.usd(w.cost)} ({fmt.number(w.lift_per_usd)} points per dollar).")
    p = best.vs_majority.p_value if best.vs_majority else None
    return (f"Do not pay for more of the same: no trial beat {always} with significance "
            f"(McNemar exact, alpha = {stats.ALPHA}); the most accurate, {best.id}, was "
            f"{fmt.points(best.lift_points)} points (p = {fmt.p_value(p)}). Until one does, the majority answer is the better buy.")


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"
