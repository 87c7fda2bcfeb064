"""The single-run report as rich tables (terminal), Markdown and CSV.

Both table views split the columns in two tables, "results" (what to read first) and
"details", so the terminal view fits 100 columns and the Markdown needs no side-scrolling.
"""

from __future__ import annotations

import csv
import io
import json

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from budgetft.report.cluster_section import cluster_lines
from budgetft.report import fmt, stats
from budgetft.report.load import RunReport
from budgetft.report.memory import memory_lines
from budgetft.report.rows import METHOD_NOTES, Row
from budgetft.report.summary import Summary, spend_line
from budgetft.report.test_section import summary_items as test_items

PLOTS = {"accuracy_vs_cost.png": "Accuracy against cost", "spend_over_time.png": "Spend over time"}

RESULT_COLUMNS = ("#", "trial", "method, settings", "acc %", "95% CI", "lift", "beats majority?", "lift/$", "cost", "ended")
DETAIL_COLUMNS = ("trial", "bal. acc %", "macro-F1", "acc/$", "acc/kWh", "Wh", "steps", "kept @", "last acc %", "trainable", "ex/s", "Pareto")


def verdict_text(row: Row, markdown: bool = False) -> str:
    """'yes (p=0.003)' only for a significant win; every other outcome starts with 'no'."""
    test = row.vs_majority
    if test is None:
        return fmt.DASH
    p = f"p={fmt.p_value(test.p_value)}"
    if test.verdict == stats.BETTER:
        return f"**yes** ({p})" if markdown else f"yes ({p})"
    if test.verdict == stats.WORSE:
        return f"no, worse ({p})"
    return f"no, n.s. ({p})"


def result_cells(row: Row, markdown: bool = False) -> list[str]:
    is_majority = row.id == "majority"
    return [
        str(row.rank) if row.rank else "",
        row.id,
        fmt.method_and_settings(row),
        fmt.pct(row.accuracy),
        fmt.ci(row.ci95),
        fmt.DASH if is_majority else fmt.points(row.lift_points),
        fmt.DASH if is_majority else verdict_text(row, markdown),
        fmt.number(row.lift_per_usd),
        fmt.usd(row.cost),
        row.ended,
    ]


def detail_cells(row: Row) -> list[str]:
    return [
        row.id,
        fmt.pct(row.balanced_accuracy),
        fmt.number(row.macro_f1, 3),
        fmt.number(row.accuracy_per_usd),
        fmt.number(row.accuracy_per_kwh),
        energy_cell(row),
        fmt.integer(row.steps),
        fmt.integer(row.kept_step),
        fmt.pct(row.last_accuracy),
        fmt.integer(row.trainable_params),
        fmt.number(row.examples_per_s),
        "yes" if row.on_pareto_front else "",
    ]


def energy_cell(row: Row) -> str:
    """A trial's watt-hours; '~' marks an estimate from the CPU's rated power."""
    if row.energy_wh is None:
        return fmt.DASH
    return ("~" if row.energy_estimated else "") + f"{row.energy_wh:.3g}"


def headline(report: RunReport) -> str:
    parts = [f"status {report.status}", report.machine]
    if report.price_per_hour is not None:
        parts.append(f"{fmt.usd(report.price_per_hour)}/h")
    if report.eval_rows:
        parts.append(f"{report.eval_rows:,} evaluation rows")
    models = report.models or [report.model]
    parts.append(("models " if len(models) > 1 else "model ") + ", ".join(models))
    winner = report.winner_model
    if winner is not None and len(models) > 1:
        parts.append(f"winner's model {winner}")
    return " · ".join(parts)


def summary_items(report: RunReport, summary: Summary, markdown: bool = False) -> list[tuple[str, str]]:
    """(label, sentence) pairs for the top of the report."""
    b = lambda s: f"`{s}`" if markdown else s  # noqa: E731 - trial ids as code in Markdown
    items: list[tuple[str, str]] = test_items(report.test, report.forecast, markdown, report.no_winner)
    best = summary.best
    on_selection = " on the selection rows" if report.test else ""
    if best is None:
        if not report.test:
            items.append(("Best trial", f"none: {report.no_winner}" if report.no_winner else "none evaluated yet"))
    else:
        items.append((f"Best trial{on_selection}", f"{b(best.id)} ({fmt.method_and_settings(best)}): {fmt.pct(best.accuracy)}% accuracy "
                      f"(95% CI {fmt.ci(best.ci95)}) for {fmt.usd(best.cost)}, {best.ended} at step "
                      f"{fmt.integer(best.steps)}; kept weights from step {fmt.integer(best.kept_step)}"))
        items.append(("Against the baselines", _lift_sentence(report, best)))
    eff = summary.most_efficient
    if eff is not None and eff is not best:
        items.append(("Most accuracy per dollar", f"{b(eff.id)} ({fmt.method_and_settings(eff)}): "
                      f"{fmt.number(eff.lift_per_usd)} points over the majority per dollar"))
    items.append(("Spend", spend_line(report, summary)))
    items.append(("Recommendation", f"{summary.recommendation} {summary.budget_note}"))
    return items


def _lift_sentence(report: RunReport, row: Row) -> str:
    parts = []
    if report.majority is not None and row.lift_points is not None:
        cls = report.majority_class
        test = row.vs_majority
        sig = {stats.BETTER: "significant", stats.WORSE: "significantly worse"}.get(test.verdict, "not significant") if test else "untested"
        p = f"McNemar exact p = {fmt.p_value(test.p_value)}, {sig}" if test else sig
        parts.append(f"{fmt.points(row.lift_points)} points over always answering {cls!r} "
                     f"({fmt.pct(report.majority.accuracy)}%; {p})")
    if report.zero_shot is not None and row.lift_vs_zero_shot is not None:
        parts.append(f"{fmt.points(row.lift_vs_zero_shot)} points over the untuned model ({fmt.pct(report.zero_shot.accuracy)}%)")
    return " and ".join(parts) if parts else "no baselines recorded"


def notes(report: RunReport) -> list[str]:
    lines = [METHOD_NOTES[k] for k in ("kept_evaluation", "significance", "ci95", "cost", "lift_per_usd")]
    if any(t.class_bias for t in report.trials):
        lines.append(
            "Trials start from the training split's class prior: before step 1 each fits a per-class bias "
            "on the label-word scores to a sample of training rows and trains it with the method. The "
            "zero-shot baseline is the untuned model's raw label-word scores, without it."
        )
    if any(t.energy_wh is not None for t in report.trials):
        estimated = any(t.energy_estimated for t in report.trials)
        lines.append(
            "Wh is each trial's share of the energy the run used while it trained (see the hardware section for how it "
            "was measured); acc/kWh = accuracy in points / that energy in kWh."
            + (" '~' marks an estimate from the processor's rated power, not a measurement." if estimated else "")
        )
    if report.pareto:
        lines.append(f"Pareto front of accuracy against cost (no other trial is both cheaper and more accurate): {', '.join(report.pareto)}.")
    return lines


def failures(report: RunReport) -> list[str]:
    """What happened to each trial that did not end as planned (failed, interrupted, stopped
    before its first evaluation, or moved to end where the money did), one line each in plain
    words."""
    lines = []
    for t in report.trials:
        if t.status == "failed":
            lines.append(f"{t.id} failed: {t.error}")
        elif t.status == "interrupted":
            why = t.stop_reason or "the run was stopped (Ctrl-C, a signal, or its driver died) while it trained"
            lines.append(f"{t.id} was interrupted after {t.steps or 0} steps: {why}")
        elif t.evaluations == 0 and t.status in ("stopped_by_cap", "stopped_early"):
            why = t.stop_reason or ("the money ran out" if t.status == "stopped_by_cap" else "the scheduler stopped it")
            lines.append(f"{t.id} stopped before its first evaluation, after {t.steps or 0} steps: {why}")
        if t.end_moved and t.status == "finished":
            moved = t.end_moved
            planned, to = int(moved.get("planned") or 0), int(moved.get("to") or 0)
            pace = "slower than calibrated (a busy machine)" if to < planned else "faster than calibrated"
            lines.append(
                f"{t.id} was planned for {planned} steps; at step {moved.get('at')} it ran at {moved.get('step_s')} s a step, "
                f"{pace}, so its schedule was moved to decay to zero and be evaluated at step {to}, the last step the money bought")
    return lines


# -- terminal
# The terminal splits the columns over three tables so each fits 100 columns without squeezing.

TERMINAL_RESULTS = ("#", "trial", "acc %", "95% CI", "lift", "vs majority", "lift/$", "cost", "ended")
TERMINAL_TRIALS = ("trial", "method", "settings", "steps", "kept @", "trainable", "ex/s")
TERMINAL_METRICS = ("trial", "bal. acc %", "macro-F1", "last acc %", "acc/$", "acc/kWh", "Pareto front")


def terminal_verdict(row: Row) -> str:
    test = row.vs_majority
    if test is None or row.id == "majority":
        return fmt.DASH
    word = {stats.BETTER: "yes", stats.WORSE: "worse"}.get(test.verdict, "no")
    return f"{word}, p={fmt.p_value(test.p_value)}"


def rich_view(report: RunReport, summary: Summary, trials: list[Row]):
    """A renderable for the terminal: summary, three tables, failures, warnings and notes."""
    def table(title: str, columns: tuple[str, ...], left: set[str], wrap: set[str] = frozenset()) -> Table:
        t = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1))
        for name in columns:
            t.add_column(name, justify="left" if name in left else "right", no_wrap=name not in wrap)
        return t

    title = Text.assemble((f"{report.job}", "bold"), f" · run {report.run_id}\n", (headline(report), "dim"))
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    for label, sentence in summary_items(report, summary):
        facts.add_row(label + ":", sentence)

    results = table("Results, ranked by lift per dollar over the majority baseline (only 'yes' is a win)",
                    TERMINAL_RESULTS, {"trial", "vs majority", "ended"}, {"ended"})
    for i, row in enumerate(report.baselines):
        cells = result_cells(row)
        results.add_row(cells[0], cells[1], *cells[3:6], terminal_verdict(row), *cells[7:], style="dim",
                        end_section=i == len(report.baselines) - 1)
    for row in trials:
        cells = result_cells(row)
        style = "bold green" if row.beats_majority else ("red" if row.status == "failed" else "yellow")
        results.add_row(cells[0], cells[1], *cells[3:6], terminal_verdict(row), *cells[7:], style=style)

    setup = table("Trials", TERMINAL_TRIALS, {"trial", "method", "settings"}, {"method", "settings"})
    for row in trials:
        setup.add_row(row.id, fmt.method(row.method), fmt.settings(row.config) or fmt.DASH, fmt.integer(row.steps),
                      fmt.integer(row.kept_step), fmt.integer(row.trainable_params), fmt.number(row.examples_per_s))
    metrics = table("More metrics", TERMINAL_METRICS, {"trial", "Pareto front"})
    for row in [*report.baselines, *trials]:
        d = detail_cells(row)
        metrics.add_row(d[0], d[1], d[2], d[8], d[3], d[4], d[11], style="dim" if row.kind == "baseline" else "")

    parts = [title, Text(), facts, Text(), results, Text(), setup, Text(), metrics, Text()]
    for line in failures(report):
        parts.append(Text(line, style="red"))
    for line in memory_lines(trials, report.dropped):
        parts.append(Text(f"memory: {line}", style="yellow"))
    for w in report.warnings:
        parts.append(Text(f"note: {w}", style="yellow"))
    parts.append(Text("\n".join(notes(report)), style="dim"))
    return Group(*parts)


# -- Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: tuple[str, ...] | list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    align = ["---:" if i in right else ":---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: RunReport, summary: Summary, trials: list[Row], plots: list[str] | None = None) -> str:
    out = [f"# {report.job}: run `{report.run_id}`", "", headline(report) + f" · report of {report.generated}", ""]
    for w in report.warnings:
        out.append(f"> **Note:** {w}")
    if report.warnings:
        out.append("")
    out += ["## Summary", ""]
    out += [f"- **{label}:** {sentence}" for label, sentence in summary_items(report, summary, markdown=True)]
    out += ["", "## Results", "", "Ranked by lift per dollar over the majority baseline; only a **yes** under "
            "*beats majority?* is a win. Baselines first.", ""]
    rows = [result_cells(r, markdown=True) for r in [*report.baselines, *trials]]
    out += [md_table(RESULT_COLUMNS, rows, right={0, 3, 4, 5, 7, 8}), ""]
    out += ["### Details", ""]
    out += [md_table(DETAIL_COLUMNS, [detail_cells(r) for r in [*report.baselines, *trials]], right=set(range(1, 11))), ""]
    fails = failures(report)
    if fails:
        out += ["### Trials that did not end as planned", ""] + [f"- {_md_cell(f)}" for f in fails] + [""]
    memory = memory_lines(trials, report.dropped)
    if memory:
        out += ["### Memory: what the plan changed, and what shrank or was dropped", ""] + [f"- {_md_cell(m)}" for m in memory] + [""]
    nodes = cluster_lines(report.root)
    if nodes:
        out += ["### Cluster: each node's time and trials", ""] + [f"- {_md_cell(n)}" for n in nodes] + [""]
    if plots:
        out += ["## Plots", ""] + [f"![{PLOTS.get(p, p)}]({p})\n" for p in plots]
    out += ["## How to read this", ""] + [f"- {n}" for n in notes(report)] + [""]
    return "\n".join(out)


# -- CSV

CSV_COLUMNS = (
    "kind", "id", "rank", "model", "method", "settings", "status", "n", "correct", "accuracy", "ci95_low", "ci95_high",
    "balanced_accuracy", "macro_f1", "kept_step", "last_step", "last_accuracy", "steps", "cost_usd", "lift_points",
    "lift_vs_zero_shot_points", "lift_per_usd", "accuracy_per_usd", "accuracy_per_kwh", "energy_wh", "energy_estimated",
    "co2e_g", "test", "p_value", "better_rows", "worse_rows", "verdict", "trainable_params", "total_params",
    "examples_per_s", "on_pareto_front", "error",
)


def csv_text(report: RunReport, trials: list[Row]) -> str:
    """One line per baseline and trial; accuracies are fractions, lifts are points, money exact USD."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in [*report.baselines, *trials]:
        t = r.vs_majority
        writer.writerow([
            r.kind, r.id, r.rank or "", r.model, r.method, json.dumps(r.config, sort_keys=False), r.status, _v(r.n),
            _v(r.correct_count), _v(r.accuracy), _v(r.ci95[0] if r.ci95 else None), _v(r.ci95[1] if r.ci95 else None),
            _v(r.balanced_accuracy), _v(r.macro_f1), _v(r.kept_step), _v(r.last_step), _v(r.last_accuracy), _v(r.steps),
            _v(r.cost), _v(r.lift_points), _v(r.lift_vs_zero_shot), _v(r.lift_per_usd), _v(r.accuracy_per_usd),
            _v(r.accuracy_per_kwh), _v(r.energy_wh), r.energy_estimated if r.energy_wh is not None else "", _v(r.co2e_g),
            t.test if t else "", _v(t.p_value if t else None), t.better if t else "", t.worse if t else "",
            r.verdict, _v(r.trainable_params), _v(r.total_params), _v(r.examples_per_s), r.on_pareto_front, r.error or "",
        ])
    return buf.getvalue()


def _v(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)
