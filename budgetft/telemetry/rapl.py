"""CPU package energy from RAPL counters, where the Linux kernel exposes them.

Intel (and AMD Zen, through the same driver) CPUs count the energy each package has used in
microjoules; Linux shows the counters under /sys/class/powercap/intel-rapl:<N>/ as `energy_uj`,
with `max_energy_range_uj` (where the counter wraps back to 0) and `name` ("package-0", ...).
Since Linux 5.10 `energy_uj` is readable by root only (a side channel, CVE-2020-8694), and most
cloud VMs do not pass RAPL through at all: then there are no zones here and energy is estimated
from the processor's rated power instead (cpu_power.py), and labelled an estimate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
# Top-level zones only ("intel-rapl:0"); "intel-rapl:0:0" (core, uncore, dram) are parts of a
# package and would be counted twice.
_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")
UJ_PER_J = 1_000_000


@dataclass(frozen=True)
class RaplZone:
    name: str  # "package-0"
    energy_file: Path
    max_uj: int  # the counter wraps to 0 after this many microjoules


def zones(root: Path | str = POWERCAP) -> list[RaplZone]:
    """The CPU packages whose counters this process can read; [] when there are none (no RAPL,
    a VM, or counters readable by root only)."""
    root = Path(root)
    found = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    for zone in entries:
        if not _PACKAGE_ZONE.match(zone.name):
            continue
        try:
            name = (zone / "name").read_text().strip()
            max_uj = int((zone / "max_energy_range_uj").read_text().strip())
            int((zone / "energy_uj").read_text().strip())  # readable now, or skip the zone
        except (OSError, ValueError):
            continue
        if name.startswith("package") and max_uj > 0:
            found.append(RaplZone(name, zone / "energy_uj", max_uj))
    return found


def read(found: list[RaplZone]) -> dict[str, int]:
    """Each zone's counter now, in microjoules; a zone that fails to read is left out."""
    out = {}
    for z in found:
        try:
            out[z.name] = int(z.energy_file.read_text().strip())
        except (OSError, ValueError):
            continue
    return out


def joules_between(before: dict, after: dict, max_uj: dict) -> float | None:
    """Energy used between two readings, summed over the zones both have, in joules. A counter
    that went down wrapped once (at 1 s sampling a package would need megawatts to wrap twice).
    None when the readings share no zone."""
    common = [z for z in before if z in after]
    if not common:
        return None
    total_uj = 0
    for z in common:
        delta = int(after[z]) - int(before[z])
        if delta < 0:
            delta += int(max_uj.get(z) or 0)
            if delta < 0:  # no range recorded: the interval cannot be measured
                return None
        total_uj += delta
    return total_uj / UJ_PER_J
