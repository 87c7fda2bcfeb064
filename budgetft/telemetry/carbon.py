"""CO2 from energy: the grid carbon intensity of the region a run drew its power from.

The intensities are data (grid_intensity.csv beside this module, with its source and year). A
cloud run's region is where its VM ran (the launch record); a local run's is what `--region`
said, recorded in run.json; otherwise it is unknown and the world average is used, saying so.
"""

from __future__ import annotations

import csv
import functools
import io
import os
from dataclasses import dataclass
from importlib import resources

UNKNOWN = "unknown"
WORLD = "world"
# `budgetft run --region R` on a local run reaches the run's records through this variable
# (cli/common.set_local_region sets it; the driver writes it into run.json as "region").
REGION_ENV = "BUDGETFT_REGION"
GRAMS_PER_KWH_PER_WH = 1 / 1000  # g/kWh x Wh -> g


@dataclass(frozen=True)
class GridIntensity:
    region: str  # the run's region as given, or "unknown"
    gco2e_per_kwh: float
    basis: str  # the table row used: the region itself, or "world"
    source: str  # a sentence: where the number comes from

    @property
    def is_world_average(self) -> bool:
        return self.basis == WORLD


@functools.lru_cache(maxsize=1)
def _table() -> tuple[dict[str, tuple[str, float]], dict[str, str]]:
    text = resources.files("budgetft.telemetry").joinpath("grid_intensity.csv").read_text("utf-8")
    meta: dict[str, str] = {}
    body = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and key.strip().isalpha():
                meta.setdefault(key.strip(), value.strip())
        elif line.strip():
            body.append(line)
    rows = {r["region"]: (r["location"], float(r["gco2e_per_kwh"])) for r in csv.DictReader(io.StringIO("\n".join(body)))}
    return rows, meta


def regions() -> list[str]:
    """Every region the table knows (Google Cloud region names), without the world row."""
    return sorted(r for r in _table()[0] if r != WORLD)


def check_region(region: str) -> str:
    """`region` normalised (lower case), or ValueError naming the valid ones."""
    key = region.strip().lower()
    if key == UNKNOWN or key in _table()[0] and key != WORLD:
        return key
    raise ValueError(
        f"unknown region {region!r} for the grid's carbon intensity; give a Google Cloud region name "
        f"(e.g. us-central1, europe-west4) or {UNKNOWN!r}. Valid: {', '.join(regions())}"
    )


def region_from_env() -> str | None:
    """The region a local run was given with --region (see REGION_ENV), or None."""
    value = (os.environ.get(REGION_ENV) or "").strip()
    return value or None


def grid_intensity(region: str | None) -> GridIntensity:
    """The grid intensity for `region`; the world average, labelled so, when it is unknown or
    not in the table."""
    rows, meta = _table()
    year = meta.get("year", "?")
    key = (region or UNKNOWN).strip().lower()
    if key in rows and key != WORLD:
        location, value = rows[key]
        return GridIntensity(key, value, key, f"{key} ({location}) grid average for {year}, from Google's region-carbon data")
    location, value = rows[WORLD]
    why = "the run's region is unknown" if key == UNKNOWN else f"{key!r} is not in the table"
    return GridIntensity(key, value, WORLD, f"{why}: the world's average grid intensity (Ember), an approximation")


def co2e_grams(wh: float | None, intensity: GridIntensity) -> float | None:
    """Grams of CO2-equivalent for `wh` watt-hours on that grid."""
    return None if wh is None else wh * intensity.gco2e_per_kwh * GRAMS_PER_KWH_PER_WH
