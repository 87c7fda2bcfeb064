"""`budgetft export`: a run's winner (or a named trial) as a Hugging Face folder with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from budgetft.cli.common import cli_errors, stderr_console
from budgetft.quiet import quiet_libraries

# Imported inside functions: budgetft's domain code: `budgetft --help` loads none of it (start-up
# time).


def export(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A `budgetft run` directory.", show_default=False),
    to: Path = typer.Option(..., "--to", help="The folder to write (new, or empty).", show_default=False),
    merge: bool = typer.Option(False, "--merge", help="Merge a peft adapter into its base and write the whole model (not for prompt methods)."),
    trial: Optional[str] = typer.Option(None, "--trial", "-t", help="Export this trial (id, or a prefix naming one) instead of the run's winner.", show_default=False),
) -> None:
    """Write the model so transformers/peft load it as is, with the tokenizer, the scoring data and a model card."""
    from budgetft.use import UseError
    from budgetft.use.export import ExportRequest, export as run_export

    err = stderr_console()
    quiet_libraries()
    with cli_errors(err):
        try:
            result = run_export(ExportRequest(run_dir, to, merge, trial), say=lambda text: err.print(text))
        except UseError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(2) from None
    err.print(f"wrote {result.folder}: {', '.join(result.files)}")
    err.print(f"model card: {result.folder / 'README.md'}")
