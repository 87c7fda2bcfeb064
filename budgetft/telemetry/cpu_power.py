"""The processor's rated power, for estimating a CPU run's energy when RAPL cannot be read.

The estimate is the rated (TDP) watts per hardware thread x the logical CPUs this machine shows,
for every second the run was sampled: a package at its TDP is a fully busy one, so this is an
upper bound, and every report labels it an estimate. The ratings are data (cpu_power.csv).
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class RatedPower:
    watts: float  # for the whole machine as this process sees it
    per_thread_w: float
    cpus: int
    basis: str  # "<model> rated <tdp> W / <threads> threads" or "default ..."


def _plain(name: str | None) -> str:
    """'Intel(R) Xeon(R) Platinum 8380 CPU' -> 'intel xeon platinum 8380 cpu': marks and spacing vary."""
    return re.sub(r"\s+", " ", re.sub(r"\((?:r|tm)\)", " ", (name or "").lower())).strip()


@functools.lru_cache(maxsize=1)
def _table() -> tuple[list[tuple[str, float, int]], float]:
    text = resources.files("budgetft.telemetry").joinpath("cpu_power.csv").read_text("utf-8")
    default = None
    body = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and key.strip() == "default_w_per_thread":
                default = float(value.strip())
        elif line.strip():
            body.append(line)
    if default is None:
        raise ValueError("cpu_power.csv has no '# default_w_per_thread:' line")
    rows = [(r["model"].strip(), float(r["tdp_w"]), int(r["threads"])) for r in csv.DictReader(io.StringIO("\n".join(body)))]
    return rows, default


def rated_power(cpu_model: str, cpus: int) -> RatedPower:
    """Rated watts of `cpus` logical CPUs of a `cpu_model` processor (its name in /proc/cpuinfo)."""
    rows, default = _table()
    cpus = max(1, int(cpus or 1))
    name = _plain(cpu_model)
    for model, tdp, threads in rows:
        if _plain(model) in name:
            per = tdp / threads
            return RatedPower(per * cpus, per, cpus, f"{model} rated {tdp:g} W / {threads} threads")
    return RatedPower(default * cpus, default, cpus,
                      f"{cpu_model or 'this CPU'} is not in budgetft's table of rated powers: {default:g} W per thread assumed (high)")
