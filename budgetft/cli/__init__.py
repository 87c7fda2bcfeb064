"""The `budgetft` command line. Commands stay thin: they parse options and call domain code.

Heavy libraries (torch, transformers, ray, google-cloud) are imported inside the command
functions, never here, so `budgetft --help` answers instantly.
"""

from __future__ import annotations

import typer

from budgetft.cli.cloud import down, status
from budgetft.cli.doctor import doctor
from budgetft.cli.export import export
from budgetft.cli.init import init
from budgetft.cli.plan import plan
from budgetft.cli.predict import predict
from budgetft.cli.prices import prices
from budgetft.cli.report import report
from budgetft.cli.run import run
from budgetft.cli.train import train
from budgetft.cli.methods_cmd import methods

app = typer.Typer(
    name="budgetft",
    help="Budget-aware fine-tuning: the best PEFT model a fixed budget buys, with proof.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command()(run)
app.command()(plan)
app.command()(init)
app.command()(train)
app.command()(prices)
app.command()(report)
app.command()(status)
app.command()(down)
app.command()(doctor)
app.command()(methods)
app.command()(predict)
app.command()(export)


def main() -> None:
    app()
