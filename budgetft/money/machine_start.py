"""Machine starts: what the one-minute billing minimum is charged per.

A provider bills a machine from its start: per second, one minute at least. A run's sessions
(the first, and each `--resume`) are processes, not machine starts: a resume on the machine that
ran the session before it starts no new machine, so it pays no new minimum; a new boot (a local
machine restarted, a new cloud VM) is a new start, and pays for its first minute if it runs
less. Each session records the start it ran on (run.json's `machine_starts`: start id -> the
sessions on it); the ledger says what those sessions paid (every charge of session n is keyed
"s<n>:..."), so a session owes only the part of the minute its start has not paid yet, and a
session killed before it could settle is counted by what it paid.

A cloud VM's start is billed by its launcher: the charge keyed "vm<n>:boot" carries Compute
Engine's minimum (budgetft.cloud.estimate), and it is made before the VM is created. The driver
that runs on that VM (booted after that charge, and the first session since it) pays none of
its own.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Iterable

from budgetft.money.ledger import Charge

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: a new random id at every boot
_SESSION_KEY = re.compile(r"^s(\d+):")
_VM_BOOT_KEY = re.compile(r"^vm\d+:boot$")


def current_start() -> str:
    """This machine's start: the kernel's boot id, or the boot time where there is none."""
    try:
        return "boot:" + BOOT_ID.read_text().strip()
    except OSError:
        import psutil

        return f"boot-time:{int(psutil.boot_time())}"


def session_of(charge: Charge) -> int | None:
    match = _SESSION_KEY.match(charge.key or "")
    return int(match.group(1)) if match else None


def seconds_paid(charges: Iterable[Charge], sessions: Iterable[int], usd_per_hour: Decimal) -> float:
    """Machine seconds the ledger paid for in `sessions`, at `usd_per_hour` (rounded down:
    charges are rounded up to the micro-dollar, so a start is never counted as paid for
    more than it was)."""
    wanted = set(sessions)
    paid = sum((c.amount for c in charges if session_of(c) in wanted), Decimal(0))
    if usd_per_hour <= 0:
        return float("inf") if wanted else 0.0  # free time: no minimum to settle
    return float(int(paid * 3600 / usd_per_hour))


def launcher_billed_start(charges: list[Charge], booted_at: float | None = None) -> bool:
    """Whether this session runs on a cloud VM whose start its launcher billed: this machine
    booted after the ledger's latest VM boot charge (the launcher charges before it creates the
    VM; 60 s allow for clocks that disagree), and no driver session charged since that charge
    (a session that ran later, on this machine or another, started a machine of its own)."""
    boots = [i for i, c in enumerate(charges) if _VM_BOOT_KEY.match(c.key or "")]
    if not boots:
        return False
    sessions = [i for i, c in enumerate(charges) if session_of(c) is not None]
    if sessions and sessions[-1] > boots[-1]:
        return False
    if booted_at is None:
        import psutil

        booted_at = psutil.boot_time()
    try:
        charged_at = datetime.fromisoformat(charges[boots[-1]].ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    return booted_at >= charged_at - 60


def start_paid_seconds(charges: list[Charge], starts: dict[str, list[int]], start: str, session: int,
                       usd_per_hour: Decimal, minimum_seconds: int = 60, booted_at: float | None = None) -> float:
    """Seconds machine start `start` has already paid for before session `session`: what its
    earlier sessions paid, or the whole minimum when a cloud launcher billed it."""
    if launcher_billed_start(charges, booted_at):
        return float(minimum_seconds)
    earlier = [s for s in starts.get(start, []) if s != session]
    return seconds_paid(charges, earlier, usd_per_hour) if earlier else 0.0
