"""Run reports: what a budget bought, against the baselines it had to beat.

    write_reports(run_dir)          -> report.md, report.json, results.csv and both PNGs in run_dir
    build(run_dir, sort)            -> (RunReport, Summary, trials in display order)
    render(run_dir, format, sort)   -> the report as text: md | json | csv | html
    render_comparison(run_dirs, format) -> several runs side by side

Modules: load (read a run dir), rows (typed rows, ranking), stats (exact tests, Pareto front),
summary (headline and recommendation), tables (rich, Markdown, CSV), json_report (+ SCHEMA.md),
plots (PNGs), compare (several runs), html_page.
"""

from __future__ import annotations

import json
from pathlib import Path

from budgetft.files import atomic_write, write_text
from budgetft.report import compare as C, plots
from budgetft.report.hardware import UTILIZATION_PNG, draw_utilization, hardware_summary, markdown_section
from budgetft.report.html_page import html_page
from budgetft.report.json_report import report_json
from budgetft.report.load import NotARunDir, RunReport, load_run
from budgetft.report.rows import SORT_KEYS, Row, sort_rows
from budgetft.report.summary import Summary, summarize
from budgetft.report.tables import csv_text, markdown

__all__ = ["FORMATS", "NotARunDir", "REPORT_FILES", "SORT_KEYS", "build", "render", "render_comparison", "write_reports"]

FORMATS = ("table", "md", "json", "csv", "html")
PLOT_FILES = ("accuracy_vs_cost.png", "spend_over_time.png")
REPORT_FILES = ("report.md", "report.json", "results.csv", *PLOT_FILES)


def build(run_dir: Path | str, sort: str = "rank") -> tuple[RunReport, Summary, list[Row]]:
    report = load_run(run_dir)
    return report, summarize(report), sort_rows(report.trials, sort)


def write_reports(run_dir: Path | str) -> list[Path]:
    """Write every report file into the run directory and return their paths.

    Safe on a live run (each file is replaced atomically) and never fatal for a plot: a plot
    that cannot be drawn becomes a note in the report instead.
    """
    report, summary, trials = build(run_dir)
    root = Path(run_dir)
    written: list[Path] = []
    for name, draw in zip(PLOT_FILES, (plots.accuracy_vs_cost, plots.spend_over_time)):
        try:
            written.append(atomic_write(root / name, lambda fh: draw(report, fh), durable=False))
        except Exception as exc:  # a report without a picture beats no report
            report.warnings.append(f"{name} could not be drawn: {type(exc).__name__}: {exc}")
    plot_names = [p.name for p in written]

    try:
        drawn = draw_utilization(root, root / UTILIZATION_PNG)
    except Exception as exc:  # never fatal: see above
        drawn = None
        report.warnings.append(f"{UTILIZATION_PNG} could not be drawn: {type(exc).__name__}: {exc}")
    if drawn:
        written.append(Path(drawn))
    hardware = hardware_summary(root)
    texts = {
        "report.md": _markdown_document(report, summary, trials, plot_names, hardware, bool(drawn)),
        "report.json": _json_document(report, summary, trials, hardware),
        "results.csv": csv_text(report, trials),
    }
    for name, text in texts.items():
        written.append(write_text(root / name, text, durable=False))
    return written


def _markdown_document(report, summary, trials, plots: list[str], hardware: dict, has_utilization_plot: bool) -> str:
    """report.md, the same whether the run writes it or `budgetft report` prints it."""
    return markdown(report, summary, trials, plots) + "\n" + markdown_section(hardware, has_utilization_plot)


def _json_document(report, summary, trials, hardware: dict) -> str:
    data = report_json(report, summary, trials)
    data["hardware"] = hardware
    return json.dumps(data, indent=2) + "\n"


def render(run_dir: Path | str, format: str = "md", sort: str = "rank") -> str:
    """The report of one run as text. Markdown links the PNGs already in the run directory."""
    report, summary, trials = build(run_dir, sort)
    if format == "csv":
        return csv_text(report, trials)
    hardware = hardware_summary(report.root)
    if format == "json":
        return _json_document(report, summary, trials, hardware)
    plots = [p for p in PLOT_FILES if (report.root / p).is_file()]
    text = _markdown_document(report, summary, trials, plots, hardware, (report.root / UTILIZATION_PNG).is_file())
    if format == "html":
        return html_page(text, f"{report.job} {report.run_id}", report.root)
    if format == "md":
        return text
    raise ValueError(f"unknown format {format!r}; valid: {', '.join(f for f in FORMATS if f != 'table')}")


def render_comparison(run_dirs: list[Path | str], format: str = "md") -> str:
    comp = C.compare([load_run(d) for d in run_dirs])
    if format == "json":
        return json.dumps(C.comparison_json(comp), indent=2) + "\n"
    if format == "csv":
        return C.csv_text(comp)
    text = C.markdown(comp)
    if format == "html":
        return html_page(text, "budgetft: runs compared")
    if format == "md":
        return text
    raise ValueError(f"unknown format {format!r}; valid: {', '.join(f for f in FORMATS if f != 'table')}")
