"""Shared CLI pieces: option aliases, error display, quieting library chatter."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

from budgetft.quiet import quiet_libraries  # noqa: F401 - the commands' shared import

# Imported inside functions: budgetft's domain code: `budgetft --help` loads none of it (start-up
# time).

JOB_ARG = typer.Argument(None, help="Job YAML file or the name of a job in jobs/ (default: boolq-smollm2, the embedded default).", show_default=False)
SET_OPT = typer.Option([], "--set", "-s", help="Override a job field, e.g. --set train.batch_size=16 (repeatable).")
TRACK_OPT = typer.Option(
    [], "--track", metavar="TRACKER",
    help="Also record the run in mlflow[=URI] or wandb[=PROJECT] (repeatable; the [track] extra), checked before anything is spent. TensorBoard files are always written (RUN/tensorboard).",
)
METHODS_OPT = typer.Option(None, "--methods", "-m", help="Only these of the job's methods, comma-separated, e.g. --methods ia3,bitfit (each keeps the job's search space).", show_default=False)

# Domain errors whose message already says what is wrong and how to fix it.
USER_ERRORS: tuple[type[BaseException], ...] = ()


def user_errors() -> tuple[type[BaseException], ...]:
    from budgetft.data import DataError
    from budgetft.methods import MethodUnsupported
    from budgetft.models.loading import ModelError
    from budgetft.spec import JobError

    return (JobError, DataError, ModelError, MethodUnsupported)


@contextmanager
def cli_errors(console: Console) -> Iterator[None]:
    """Show known bad-input errors as one clear message and exit 2, without a traceback."""
    try:
        yield
    except user_errors() as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyError as exc:  # registries raise KeyError with a full sentence
        console.print(f"[bold red]error:[/] {exc.args[0]}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def track_choices(values: list[str], command: str, console: Console) -> list:
    """--track parsed and each tracker checked (installed, reachable); exit 2 with the fix if not."""
    if not values:
        return []
    from rich.markup import escape

    from budgetft.track.choice import TrackingError, check_trackers, parse_track

    try:
        choices = parse_track(list(values), command)
        with console.status("checking the trackers…"):
            check_trackers(choices)
    except TrackingError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    return choices


def stderr_console() -> Console:
    # Messages soft-wrap: the terminal folds them, so an error stays one line to copy or grep.
    # Not a terminal (a log file, a VM's console): tables get 100 columns instead of rich's 80.
    return Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 100)


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def warn_stale_prices(console: Console) -> None:
    """Print the price catalogue's age warning (money/freshness.py) when its prices are old.
    Never fails a command: a catalogue that cannot be read is reported where it is used."""
    from budgetft.money.errors import CatalogError
    from budgetft.money.freshness import stale_catalog_warning

    try:
        warning = stale_catalog_warning()
    except (CatalogError, OSError):
        return
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def set_local_region(region: str | None, console: Console) -> None:
    """`--region` on a local run: check it against the grid-intensity table and hand it to the
    run's records (telemetry/carbon.py), so the report can put CO2 beside the energy; a bad name
    exits 2 with the valid ones."""
    if region is None:
        return
    from budgetft.telemetry.carbon import REGION_ENV, check_region

    try:
        os.environ[REGION_ENV] = check_region(region)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] --region: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
