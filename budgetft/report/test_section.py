"""The report's headline: the winner on the held-out test rows, against both baselines there,
with the significance test, the rows and why that many, and the plan's forecast beside it."""

from __future__ import annotations

from budgetft.metrics import wilson_interval
from budgetft.report import fmt, stats


def verdict_words(vs: dict | None) -> str:
    if not vs:
        return "untested"
    word = {stats.BETTER: "significant", stats.WORSE: "significantly worse"}.get(vs.get("verdict"), "not significant")
    return f"McNemar exact p = {fmt.p_value(vs.get('p_value'))}, {word}"


def headline_sentence(test: dict, markdown: bool = False) -> str:
    """One sentence: the winner's test accuracy with its interval, against both baselines."""
    b = (lambda s: f"`{s}`") if markdown else (lambda s: s)
    m = test["metrics"]
    n = test["rows"]
    low, high = wilson_interval(round(m["accuracy"] * n), n)
    text = f"{b(test['winner'])} ({test.get('method')}): {fmt.pct(m['accuracy'])}% on {n:,} held-out test rows (95% CI {fmt.ci((low, high))})"
    parts = []
    majority, zero = test.get("majority"), test.get("zero_shot")
    if majority:
        cls = majority.get("majority_class")
        parts.append(f"{fmt.points(test['vs_majority']['lift_points'])} points over always answering {cls!r} "
                     f"({fmt.pct(majority['accuracy'])}%; {verdict_words(test.get('vs_majority'))})")
    if zero:
        parts.append(f"{fmt.points(test['vs_zero_shot']['lift_points'])} points over the untuned model "
                     f"({fmt.pct(zero['accuracy'])}%; {verdict_words(test.get('vs_zero_shot'))})")
    return text + (": " + " and ".join(parts) if parts else "")


def missing(test: dict | None) -> str | None:
    """Why a run with a winner has no held-out test (the money left did not pay for it: budgetft.
    stages.test), in words; None when it has one or needs none."""
    if test and test.get("winner") and (test.get("missing") or not test.get("metrics")):
        return test.get("missing") or "the held-out test is missing; the recommendation rests on the selection rows only, so it is unproven"
    return None


def beats_majority(test: dict | None) -> bool:
    return bool(test and (test.get("vs_majority") or {}).get("verdict") == stats.BETTER)


def forecast_sentence(forecast: dict | None, test: dict | None) -> str | None:
    """The plan's forecast beside the outcome, in points over the majority."""
    if not forecast:
        return None
    coverage = f"{100 * forecast['coverage']:.0f}% range" if forecast.get("coverage") else "range"
    text = (f"the plan forecast {fmt.points(forecast['lift_points'])} points over the majority "
            f"({coverage} {fmt.points(forecast['low_points'])} to {fmt.points(forecast['high_points'])}; {forecast.get('basis')})")
    lift = ((test or {}).get("vs_majority") or {}).get("lift_points")
    if lift is not None:
        inside = forecast["low_points"] <= lift <= forecast["high_points"]
        text += f"; the held-out test measured {fmt.points(lift)}, {'inside' if inside else 'outside'} that range"
    if forecast.get("double_budget_lift_points") is not None:
        text += f"; double the budget was forecast {fmt.points(forecast['double_budget_lift_points'])}"
    return text


def summary_items(test: dict | None, forecast: dict | None, markdown: bool = False, no_winner: str | None = None) -> list[tuple[str, str]]:
    """The report's first lines when the run has a held-out test. no_winner: why the run has
    no trial to hand over (RunDir.no_winner_reason), which the test's own record may not know."""
    if not test:
        return []
    if not test.get("winner"):
        return [("Held-out test", f"not run: {no_winner or test.get('why', 'no winner')}")]
    if missing(test):
        return [("Held-out test", missing(test))]
    items = [("Held-out test", headline_sentence(test, markdown))]
    chosen = test.get("chosen_by")
    if chosen:
        sel = test.get("selection_accuracy")
        items.append(("Chosen by", f"{chosen}" + (f" ({fmt.pct(sel)}% on the selection rows)" if sel is not None else "")
                      + "; the test rows were seen by no decision"))
    if test.get("rows_reason"):
        items.append(("Test rows", test["rows_reason"]))
    line = forecast_sentence(forecast, test)
    if line:
        items.append(("Forecast", line))
    return items
