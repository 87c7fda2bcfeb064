"""`budgetft methods`: every fine-tuning method, sized for a job's model."""

from __future__ import annotations

import json
from typing import Optional

import typer

from budgetft.cli.common import JOB_ARG, SET_OPT, cli_errors, stderr_console, stdout_console
from budgetft.quiet import quiet_libraries

# Imported inside functions: budgetft's domain code and rich: `budgetft --help` loads none of it
# (start-up time).


def methods(
    job: Optional[str] = JOB_ARG,
    set_: list[str] = SET_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List every method with its trainable parameters on the job's model, its search space, and measured speed and memory."""
    from budgetft.spec import load_job

    err = stderr_console()
    with cli_errors(err):
        spec = load_job(job, list(set_))
        quiet_libraries()
        from budgetft.cli.methods_listing import describe, stored_rates_for

        with err.status("sizing every method on the model (no weights are loaded)…"):
            rates, device = stored_rates_for(spec)
            facts, base_total, architecture = describe(spec, rates=rates)
    if as_json:
        print(json.dumps({"job": spec.name, "model": spec.model.name, "architecture": architecture, "parameters": base_total,
                          "device": device, "methods": [f.to_json() for f in facts]}, indent=2))
        return
    stdout_console().print(_table(spec, facts, base_total, architecture, device, bool(rates)))


def _table(spec, facts, base_total, architecture, device, calibrated):
    from rich.table import Table

    from budgetft.cli.methods_listing import space_text

    title = f"{len(facts)} methods for {spec.model.name} ({architecture}, {base_total:,} parameters)"
    caption = "¹ at the configuration `budgetft train` runs: the default if the space allows it, else its first choice or centre. " + (
        f"Speed and memory: calibrated on {device}." if calibrated
        else "Speed and memory: not calibrated on this machine (`budgetft plan` measures the job's methods).")
    table = Table(title=title, caption=caption, show_lines=False)
    table.add_column("method", style="bold", no_wrap=True)
    table.add_column("trainable¹", justify="right", no_wrap=True)
    table.add_column("share", justify="right")
    table.add_column("search space (job's, or the default*)", overflow="fold")
    table.add_column("s/step", justify="right", no_wrap=True)
    table.add_column("ex/s", justify="right", no_wrap=True)
    table.add_column("peak MB", justify="right", no_wrap=True)
    for f in facts:
        if not f.supported and f.counted_on and f.trainable_params is not None:
            trainable, share = f"{f.trainable_params:,}", f"{_share(f.share)} of {f.counted_on.rsplit('/', 1)[-1]}"
        elif not f.supported:
            trainable, share = "n/a", f"not for {architecture}"
        elif f.error:
            trainable, share = "error", f.error[:40]
        else:
            trainable, share = f"{f.trainable_params:,}", _share(f.share)
        space = space_text(f.space) + ("" if f.space_source == "job" else " *")
        table.add_row(
            f.method, trainable, share, space,
            f"{f.seconds_per_step:.2f}" if f.seconds_per_step else "–",
            f"{f.examples_per_s:.1f}" if f.examples_per_s else "–",
            f"{f.peak_memory_mb:,.0f}" if f.peak_memory_mb else "–",
        )
    return table


def _share(share: float) -> str:
    percent = 100 * share
    return f"{percent:.0f}%" if percent >= 10 else f"{percent:.2g}%" if percent >= 0.01 else f"{percent:.1e}%"
