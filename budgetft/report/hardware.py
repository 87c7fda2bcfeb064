"""The report's hardware section: which price was used and why, how busy the machine was per
trial (from telemetry.jsonl, NVML or CPU samples), and the energy and CO2 of each trial and of
the run (report/energy.py)."""

from __future__ import annotations

from pathlib import Path

from budgetft.files import read_json
from budgetft.report.energy import amount, energy_summary, markdown_lines
from budgetft.rundir import RunDir
from budgetft.telemetry.packing import input_bound_warning
from budgetft.telemetry.summary import plot_utilization, read_samples, trial_usage

UTILIZATION_PNG = "utilization.png"


def hardware_summary(root: Path) -> dict:
    run = RunDir(root)
    info = run.run()
    out = {
        "device": info.get("device"),
        "price_per_hour": info.get("price_per_hour"),
        "price_source": info.get("price_source"),
        "price_reason": info.get("price_reason"),
        "telemetry_samples": 0,
        "trials": {},
        # GPU runs: how many trials shared a GPU and the measured figures behind it.
        "packing": (read_json(run.calibration_json, {}) or {}).get("packing"),
        "warning": None,
        "energy": None,
    }

    out["energy"] = energy_summary(root)
    if run.telemetry.exists():
        samples = read_samples(run.telemetry)
        out["telemetry_samples"] = len(samples)
        out["warning"] = input_bound_warning(samples)
        out["source"] = samples[0].get("source") if samples else None
        for trial_id, u in trial_usage(samples, run.trials()).items():
            out["trials"][trial_id] = u.to_dict()
    return out


def draw_utilization(root: Path, png: Path) -> Path | None:
    run = RunDir(root)
    if not run.telemetry.exists():
        return None
    return plot_utilization(png, read_samples(run.telemetry), run.trials())


def markdown_section(summary: dict, has_plot: bool) -> str:
    lines = ["## Hardware", ""]
    price = f"${summary['price_per_hour']}/h" if summary.get("price_per_hour") else "unknown"
    why = f" ({summary['price_source']}: {summary['price_reason']})" if summary.get("price_reason") else (f" ({summary['price_source']})" if summary.get("price_source") else "")
    lines.append(f"- **Machine:** {summary.get('device') or 'unknown'}; price used {price}{why}")
    if summary["telemetry_samples"]:
        lines.append(f"- **Telemetry:** {summary['telemetry_samples']} samples ({summary.get('source')}), about one a second")
        energy = summary.get("energy") or {}
        per_trial = energy.get("trials") or {}
        wh_label = "energy Wh" + (" (estimated)" if energy.get("estimated") else "")
        lines += ["", f"| trial | samples | mean utilization % | peak memory MiB | {wh_label} | CO2e g |", "|:---|---:|---:|---:|---:|---:|"]
        for trial_id, u in sorted(summary["trials"].items()):
            util = "–" if u.get("mean_util_pct") is None else f"{u['mean_util_pct']:.0f}"
            mem = "–" if u.get("peak_mem_mb") is None else f"{u['peak_mem_mb']:,.0f}"
            e = per_trial.get(trial_id) or {}
            wh = "–" if e.get("wh") is None else amount(e["wh"])
            co2 = "–" if e.get("co2e_g") is None else amount(e["co2e_g"])
            lines.append(f"| {trial_id} | {u.get('samples', 0)} | {util} | {mem} | {wh} | {co2} |")
    else:
        lines.append("- **Telemetry:** none recorded")
    if summary.get("energy"):
        lines[3:3] = markdown_lines(summary["energy"])
    if summary.get("packing"):
        lines.insert(3, f"- **Trials per GPU:** {summary['packing']['reason']}")
    if summary.get("warning"):
        lines.insert(3, f"- **Warning:** {summary['warning']}")
    if has_plot:
        lines += ["", f"![Utilization over time]({UTILIZATION_PNG})"]
    return "\n".join(lines) + "\n"
