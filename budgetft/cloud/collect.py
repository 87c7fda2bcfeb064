"""Bringing a cloud run home: the uploaded run directory into the local one (the VM's ledger
replaces ours only if it extends it), and the VM's true time charged if the uploads missed some:
after a watched run, from the VM's own record; after a launcher that died, from the zone's
operations (or, without them, the minute before the VM's last upload); and for a start that
failed after the cloud had begun to bill it."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from budgetft.cloud.estimate import RESERVE_SECONDS
from budgetft.cloud.plan import LAUNCH_DIR
from budgetft.cloud.provider import STOPPED_STATES, VM, VmEvent
from budgetft.cloud.startup import SYNC_EVERY_S
from budgetft.cloud.storage import Bucket
from budgetft.files import write_text
from budgetft.money.usd import cost, round_up
from budgetft.money.ledger import Charge, Ledger, parse_charges, read_charges
from budgetft.rundir import FROZEN_STATES_DIR, LEDGER_FILE

LEDGER = LEDGER_FILE  # the ledger comes home by its own rule (below)


def download_run(bucket: Bucket, prefix: str, run_dir: Path, session: int) -> tuple[list[Path], str | None]:
    """Copy <prefix>/run/** into run_dir and the VM's start-up log into run_dir/cloud/. Returns the
    files written and a warning when the VM's ledger could not be taken."""
    # cloud/ holds our launch records, which the VM only has stale copies of.
    written = bucket.download_prefix(f"{prefix}/run", run_dir, skip=(LEDGER, f"{LAUNCH_DIR}/", "ray/", f"{FROZEN_STATES_DIR}/"))
    log = bucket.read_text(f"{prefix}/vm/startup-{session}.log")
    if log is not None:
        target = run_dir / LAUNCH_DIR / f"startup-{session}.log"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(log, encoding="utf-8")
        written.append(target)
    warning = None
    remote = bucket.read_text(f"{prefix}/run/{LEDGER}")
    if remote is not None:
        warning = adopt_ledger(run_dir, remote)
        if warning is None:
            written.append(run_dir / LEDGER)
    return written, warning


def adopt_ledger(run_dir: Path, remote_text: str) -> str | None:
    """Replace the local ledger by the VM's if the VM's starts with every local charge (it was
    seeded from ours); keep ours if it extends the VM's. Otherwise keep ours, save the VM's beside
    it, and say so."""
    local_path = run_dir / LEDGER
    local = read_charges(local_path) if local_path.exists() else []
    try:
        remote = parse_charges(remote_text)
    except Exception as exc:
        return f"the VM's ledger could not be read ({exc}); kept the local one"
    if all(_same(a, b) for a, b in zip(local, remote)):
        if len(remote) >= len(local):
            write_text(local_path, remote_text)
        # else ours has charges made here since (e.g. VM time reconciled after the last upload)
        return None
    kept = write_text(run_dir / "ledger.vm.jsonl", remote_text)
    return f"the VM's ledger does not extend the local one; kept the local ledger and saved the VM's as {kept.name}"


def _same(a: Charge, b: Charge) -> bool:
    return (a.seq, a.total, a.key, a.category) == (b.seq, b.total, b.key, b.category)


def vm_usd(rate: Decimal, disk_rate: Decimal, vm: VM | None, gone_at: datetime | None) -> tuple[Decimal, float]:
    """What Compute Engine bills for this VM, at most: at `rate` (the VM's catalogue price and
    side costs) from start to stop (or to when we saw it gone), one-minute minimum; the disk at
    `disk_rate` until deletion. Returns (usd, running seconds)."""
    if vm is None:
        return Decimal(0), 0.0
    start = vm.last_start or vm.created
    now = datetime.now(timezone.utc)
    end_of_life = gone_at or now
    stopped = vm.last_stop if vm.status in STOPPED_STATES and vm.last_stop else end_of_life
    running = max(0.0, (stopped - start).total_seconds()) if start else 0.0
    disk_only = max(0.0, (end_of_life - stopped).total_seconds())
    total = cost(rate, running) + cost(disk_rate, disk_only, 0)
    return total, running


def failed_start_usd(rate: Decimal, disk_rate: Decimal, vm: VM, now: datetime | None = None) -> Decimal:
    """What the cloud bills for an instance whose start failed and that we delete now: if it
    ever ran, its running time plus the deletion (at least Compute Engine's one minute) at the
    full rate; if it never ran (PROVISIONING, STAGING), its boot disk's life plus the deletion."""
    now = now or datetime.now(timezone.utc)
    if vm.last_start is not None or vm.status in ("RUNNING", "STOPPING"):
        return cost(rate, vm.billed_seconds(now) + RESERVE_SECONDS)
    return cost(disk_rate, vm.age_seconds(now) + RESERVE_SECONDS, 0)


def settle_missing_tail(
    run_dir: Path, cap: Decimal, session: int, seeded: int, rate: Decimal, events: list[VmEvent], finished: bool
) -> tuple[Decimal, str]:
    """A VM whose launcher died: its ledger came home only as of its last upload. From the zone's
    operations (created .. preempted or deleted), charge the bill the ledger lacks; without
    them, a VM that never wrote its exit code is charged the last minute before its last upload
    (uploads come every SYNC_EVERY_S; its shutdown was charged before it was created). Returns
    (charged, how it was worked out)."""
    start = next((e.time for e in events if e.kind == "created"), None)
    end = next((e.time for e in reversed(events) if e.kind in ("preempted", "deleted", "stopped", "guest-shutdown")), None)
    if start is not None and end is not None and end > start:
        running = (end - start).total_seconds()
        charged, _ = reconcile(run_dir, cap, session, seeded, cost(rate, running), running)
        return charged, f"VM #{session} lived {running:.0f} s by its zone's operations"
    if finished:
        return Decimal(0), f"VM #{session} uploaded its exit code: its ledger is whole"
    with Ledger(run_dir, cap) as ledger:
        amount = min(cost(rate, SYNC_EVERY_S, 0), ledger.remaining)
        if amount > 0:
            ledger.charge(amount, "overhead", f"VM #{session}: up to {SYNC_EVERY_S} s after its last upload, never brought home", key=f"vm{session}:tail")
    return amount, f"VM #{session}'s operations are gone: its last {SYNC_EVERY_S} s are charged"


def reconcile(run_dir: Path, cap: Decimal, session: int, seeded: int, billed: Decimal, running_s: float) -> tuple[Decimal, Decimal]:
    """Charge the part of the VM's bill the ledger lacks (e.g. the minute after the last upload of
    a preempted VM). `seeded`: how many charges the ledger held when the VM got it. Returns
    (charged, uncovered beyond the cap)."""
    with Ledger(run_dir, cap) as ledger:
        records = ledger.records
        ours = sum((c.amount for c in records if c.key and c.key.startswith(f"vm{session}:")), Decimal(0))
        on_vm = sum((c.amount for c in records[seeded:] if not (c.key and c.key.startswith(f"vm{session}:"))), Decimal(0))
        missing = round_up(billed - ours - on_vm)
        if missing <= 0:
            return Decimal(0), Decimal(0)
        amount = min(missing, ledger.remaining)
        if amount > 0:
            ledger.charge(
                amount,
                "overhead",
                f"VM time the uploaded ledger missed ({running_s:.0f} s running, billed up to ${billed})",
                key=f"vm{session}:reconcile",
            )
        return amount, missing - amount
