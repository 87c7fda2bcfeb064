"""The report's energy and CO2 figures: each trial's watt-hours, the run's total, the region whose
grid supplied it and the CO2 that implies (telemetry/energy.py and telemetry/carbon.py do the
arithmetic; this module finds the inputs in a run directory).

The region is, in order: run.json's "region" (a local run's --region), the cloud launch record
(cloud/launch-<n>.json, where the VM ran), else unknown (the world's average grid is used).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from budgetft.rundir import RunDir
from budgetft.telemetry.carbon import co2e_grams, grid_intensity
from budgetft.telemetry.energy import energy_use
from budgetft.telemetry.summary import read_samples

LAUNCH_DIR = "cloud"  # as budgetft/cloud/plan.py writes it: <run_dir>/cloud/launch-<n>.json


def run_region(root: Path, info: dict) -> tuple[str, str]:
    """(region, where it came from)."""
    if info.get("region"):
        return str(info["region"]), "--region"
    records = sorted(Path(root, LAUNCH_DIR).glob("launch-*.json"), key=lambda p: _session(p.stem))
    for path in reversed(records):  # the latest VM of the run
        try:
            region = json.loads(path.read_text(encoding="utf-8")).get("region")
        except (OSError, ValueError):
            continue
        if region:
            return str(region), "cloud launch record"
    return "unknown", "not recorded"


def _session(stem: str) -> int:
    try:
        return int(stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def energy_summary(root: Path | str) -> dict:
    """The energy section of report.json (see SCHEMA.md)."""
    run = RunDir(root)
    info = run.run()
    hardware = info.get("hardware") if isinstance(info.get("hardware"), dict) else {}
    cpus = int(hardware.get("cpus") or os.cpu_count() or 1)
    use = energy_use(read_samples(run.telemetry), run.trials(), cpus=cpus)
    region, region_source = run_region(run.root, info)
    grid = grid_intensity(region)
    return {
        "total_wh": _r(use.total_wh),
        "basis": use.basis,
        "estimated": use.estimated,
        "method": use.method(),
        "measured_s": round(use.measured_s, 1),
        "unmeasured_s": round(use.unmeasured_s, 1),
        "other_wh": _r(use.other_wh),
        "region": grid.region,
        "region_source": region_source,
        "grid_gco2e_per_kwh": grid.gco2e_per_kwh,
        "grid_source": grid.source,
        "co2e_g": _r(co2e_grams(use.total_wh, grid)),
        "trials": {tid: {"wh": _r(wh), "co2e_g": _r(co2e_grams(wh, grid))} for tid, wh in sorted(use.trials_wh.items())},
    }


def _r(x: float | None, places: int = 4) -> float | None:
    return None if x is None else round(float(x), places)


def amount(x: float) -> str:
    """Watt-hours or grams for prose: 3 significant digits below 100 (a tiny run's 0.00313 Wh),
    whole numbers above."""
    return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"


def markdown_lines(energy: dict) -> list[str]:
    """Bullet lines for the report's hardware section."""
    if energy.get("total_wh") is None:
        return [f"- **Energy:** unknown ({energy.get('method')})"]
    label = "estimated" if energy.get("estimated") else "measured"
    total = f"{amount(energy['total_wh'])} Wh {label}"
    co2 = f"{amount(energy['co2e_g'])} g CO2e" if energy.get("co2e_g") is not None else "CO2 unknown"
    where = f"region {energy['region']} ({energy['region_source']})"
    lines = [
        f"- **Energy:** {total} for the whole run ({energy['measured_s']:.3g} s sampled), of which "
        f"{amount(energy.get('other_wh') or 0)} Wh outside trials (baselines, calibration, report). How: {energy['method']}",
        f"- **CO2:** {co2} at {energy['grid_gco2e_per_kwh']:g} g CO2e/kWh; {where}; {energy['grid_source']}",
    ]
    return lines
