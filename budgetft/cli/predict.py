"""`budgetft predict`: score rows with a run's winner (or a named trial)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from budgetft.cli.common import cli_errors, stderr_console, stdout_console
from budgetft.quiet import quiet_libraries

# Imported inside functions: budgetft's domain code and rich: `budgetft --help` loads none of it
# (start-up time).

# Inputs at least this long get a progress bar (on stderr); shorter ones score in seconds.
PROGRESS_ROWS = 200


def predict(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A `budgetft run` directory.", show_default=False),
    file: Optional[str] = typer.Argument(None, metavar="[FILE|-]", help="Rows to score: .jsonl, .json, .csv or .parquet with the job's fields, or - (default) for standard input: JSON lines, or plain text lines for a one-field template.", show_default=False),
    trial: Optional[str] = typer.Option(None, "--trial", "-t", help="Score with this trial (id, or a prefix naming one) instead of the run's winner.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the predictions as JSON on stdout (messages go to stderr)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the predictions to this .jsonl, .json or .csv file.", show_default=False),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rows per forward pass (default: the job's eval.batch_size).", show_default=False),
) -> None:
    """Each row's class and class probabilities, scored as the run evaluated its trials."""
    from budgetft.use import UseError
    from budgetft.use.predict import PredictRequest, predict as run_predict, write_predictions

    err = stderr_console()
    request = PredictRequest(run_dir, file, trial, batch_size, out)
    quiet_libraries()
    with cli_errors(err):
        try:
            with _Bar(err) as bar:
                doc = run_predict(request, progress=bar.update, say=lambda text: err.print(text))
        except UseError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(2) from None
    if out is not None:
        write_predictions(doc, out)
        err.print(f"wrote {doc['rows']} predictions to {out}")
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif out is None:
        stdout_console().print(_table(doc))
    if doc["accuracy"]:
        a = doc["accuracy"]
        err.print(f"accuracy on the {a['rows']} rows with a label: {100 * a['accuracy']:.1f}% ({a['correct']} correct)")


class _Bar:
    """A progress bar on stderr, shown once an input is long enough to need one."""

    def __init__(self, console):
        self.console, self.progress, self.task = console, None, None

    def __enter__(self) -> "_Bar":
        return self

    def update(self, done: int, total: int) -> None:
        if total < PROGRESS_ROWS:
            return
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("rows", total=total)
        self.progress.update(self.task, completed=done)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def _table(doc: dict):
    from rich.table import Table

    table = Table()  # which trial and which rows: said on stderr before scoring
    table.add_column("row", justify="right")
    table.add_column("class")
    for name in doc["classes"]:
        table.add_column(f"p({name})", justify="right")
    has_label = any("label" in p for p in doc["predictions"])
    if has_label:
        table.add_column("label")
    for p in doc["predictions"]:
        table.add_row(str(p["index"]), p["class"], *(f"{p['probabilities'][c]:.4f}" for c in doc["classes"]), *([p.get("label", "")] if has_label else []))
    return table
