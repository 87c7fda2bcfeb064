"""`budgetft report`: what a run's money bought, ranked against the majority baseline;
with several run directories, the runs side by side."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

# Imported inside functions: budgetft's domain code and rich: `budgetft --help` loads none of it
# (start-up time).

TERMINAL_WIDTH = 100  # columns the table view is laid out for when output is not a terminal


class ReportFormat(str, Enum):
    table = "table"
    md = "md"
    json = "json"
    csv = "csv"
    html = "html"


def report(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR", help="A run directory; give several to compare them side by side.", show_default=False),
    format: ReportFormat = typer.Option(ReportFormat.table, "--format", "-f", help="table (terminal), md, json, csv or html."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the report to this file instead of the terminal.", show_default=False),
    sort: str = typer.Option("rank", "--sort", help="Order trials by: rank (significant wins by lift per dollar), lift_per_usd, accuracy_per_usd, accuracy_per_kwh, energy, accuracy, balanced_accuracy, macro_f1, lift, p_value, cost, steps, examples_per_s, trainable_params, id."),
    write: bool = typer.Option(True, "--write/--no-write", help="Also (re)write report.md, report.json, results.csv and the PNGs in the run directory (one run only)."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json's content on stdout (same as --format json; messages go to stderr)."),
) -> None:
    """Report a run: results against the majority and zero-shot baselines, spend against the cap, plots."""
    from rich.console import Console

    from budgetft.report import SORT_KEYS, NotARunDir, render, render_comparison, write_reports

    err = Console(stderr=True, highlight=False)
    if as_json:
        format = ReportFormat.json
    if sort not in SORT_KEYS:
        raise typer.BadParameter(f"unknown column {sort!r}; valid: {', '.join(SORT_KEYS)}", param_hint="--sort")
    try:
        if len(run_dirs) == 1 and write:
            try:
                written = write_reports(run_dirs[0])
                err.print(f"[dim]wrote {', '.join(p.name for p in written)} in {run_dirs[0]}[/]")
            except OSError as exc:  # e.g. a read-only archive of a run: still show the report
                err.print(f"[yellow]note:[/] could not write the report files into {run_dirs[0]}: {exc}")
        if format is ReportFormat.table:
            view = _table_view(run_dirs, sort)
        elif len(run_dirs) == 1:
            view = render(run_dirs[0], format.value, sort)
        else:
            view = render_comparison(run_dirs, format.value)
    except NotARunDir as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None

    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(view, str):
            out.write_text(view, encoding="utf-8")
        else:  # a rich renderable: plain text, laid out for 100 columns
            with out.open("w", encoding="utf-8") as fh:
                Console(file=fh, width=TERMINAL_WIDTH, no_color=True, highlight=False).print(view)
        err.print(f"wrote {out}")
    elif isinstance(view, str):
        sys.stdout.write(view)
    else:
        Console(highlight=False, width=None if sys.stdout.isatty() else TERMINAL_WIDTH).print(view)


def _table_view(run_dirs: list[Path], sort: str):
    from budgetft.report import build
    from budgetft.report.load import load_run

    if len(run_dirs) > 1:
        from budgetft.report import compare

        return compare.rich_view(compare.compare([load_run(d) for d in run_dirs]))
    from budgetft.report.tables import rich_view

    return rich_view(*build(run_dirs[0], sort))
