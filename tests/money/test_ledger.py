"""The ledger (durable, capped, idempotent, crash-safe) and the cost meter on top of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from budgetft.money import ledger as ledger_module
from budgetft.money.usd import cost
from budgetft.money.ledger import (
    LEDGER_FILENAME,
    BudgetExceeded,
    Ledger,
    LedgerError,
    read_charges,
)
from budgetft.money.meter import Meter

ROOT = Path(__file__).resolve().parents[2]  # the repository


def lines(run_dir: Path) -> list[str]:
    return (run_dir / LEDGER_FILENAME).read_text().splitlines()


# ----------------------------------------------------------------------------- durability


def test_charge_is_fsynced_before_it_returns(tmp_path, monkeypatch):
    seen: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        real_fsync(fd)
        if (tmp_path / LEDGER_FILENAME).exists():
            seen.append((tmp_path / LEDGER_FILENAME).read_text())

    monkeypatch.setattr(ledger_module.os, "fsync", spy)
    with Ledger(tmp_path, cap="1") as ledger:
        seen.clear()
        record = ledger.charge("0.25", "training", "trial 1, steps 0-100", trial="t1")
        # The line was written, then fsynced, all before charge() returned.
        assert seen and seen[-1].endswith(record.to_json() + "\n")


def test_reopening_recovers_the_exact_total(tmp_path):
    with Ledger(tmp_path, cap="5") as ledger:
        ledger.charge("0.1", "baselines", "majority + zero-shot")
        ledger.charge(0.2, "calibration", "lora 20 steps")  # a float enters through its repr
        ledger.charge(Decimal("0.3"), "training", "trial 3", trial="t3")
        ledger.charge("0.0000001", "overhead", "rounding check")  # rounds UP to $0.000001
        before = ledger.records
    assert before[-1].amount == Decimal("0.000001")
    with Ledger(tmp_path, cap="5") as again:
        assert again.spent == Decimal("0.600001")
        assert again.records == before
        assert again.remaining == Decimal("4.399999")
        assert again.charge("0.1", "evaluation", "final eval").seq == 5
    assert [json.loads(line)["total_usd"] for line in lines(tmp_path)][-1] == "0.700001"


def test_a_torn_last_line_is_ignored_and_cut_off(tmp_path):
    with Ledger(tmp_path, cap="1") as ledger:
        for i in range(3):
            ledger.charge("0.1", "training", f"unit {i}")
    path = tmp_path / LEDGER_FILENAME
    intact = path.read_bytes()
    with path.open("ab") as f:  # what a crash mid-write leaves: a prefix without its newline
        f.write(b'{"seq":4,"ts":"2025-06-01T00:00:00Z","category":"train')
    assert [c.seq for c in read_charges(path)] == [1, 2, 3]  # readers skip it, untouched
    assert path.read_bytes() != intact
    with Ledger(tmp_path, cap="1") as ledger:
        assert ledger.spent == Decimal("0.3")
        assert ledger.repaired_bytes > 0
        assert path.read_bytes() == intact  # repaired before anything is appended
        assert ledger.charge("0.1", "training", "unit 3").seq == 4
    assert [c.seq for c in read_charges(path)] == [1, 2, 3, 4]


def test_a_garbled_terminated_last_line_is_also_treated_as_torn(tmp_path):
    with Ledger(tmp_path, cap="1") as ledger:
        ledger.charge("0.1", "training", "unit")
    with (tmp_path / LEDGER_FILENAME).open("ab") as f:
        f.write(b"\x00\x00\x00\n")  # e.g. zero-filled blocks after a power cut
    with Ledger(tmp_path, cap="1") as ledger:
        assert ledger.spent == Decimal("0.1") and len(lines(tmp_path)) == 1


def test_damage_before_the_last_line_is_an_error_not_a_silent_loss(tmp_path):
    with Ledger(tmp_path, cap="1") as ledger:
        for i in range(3):
            ledger.charge("0.1", "training", f"unit {i}")
    path = tmp_path / LEDGER_FILENAME
    good = path.read_text().splitlines()
    path.write_text("\n".join([good[0], "not json", good[2]]) + "\n")
    with pytest.raises(LedgerError, match="line 2"):
        Ledger(tmp_path, cap="1")
    tampered = json.loads(good[1]) | {"amount_usd": "0.050000"}  # total no longer adds up
    path.write_text("\n".join([good[0], json.dumps(tampered), good[2]]) + "\n")
    with pytest.raises(LedgerError, match="breaks the chain"):
        Ledger(tmp_path, cap="1")


# ----------------------------------------------------------------------------- the cap


def test_a_charge_past_the_cap_raises_and_records_nothing(tmp_path):
    with Ledger(tmp_path, cap="1.00") as ledger:
        ledger.charge("0.6", "training", "trial 1")
        with pytest.raises(BudgetExceeded) as err:
            ledger.charge("0.5", "training", "trial 2")
        assert (err.value.cap, err.value.spent, err.value.requested) == (Decimal(1), Decimal("0.6"), Decimal("0.5"))
        message = str(err.value)
        assert "$1.000000" in message and "$0.600000" in message and "$0.500000" in message
        assert "trial 2" in message
        assert ledger.spent == Decimal("0.6") and len(lines(tmp_path)) == 1
        assert ledger.can_afford("0.4") and not ledger.can_afford("0.400001")
        ledger.charge("0.4", "evaluation", "exactly to the cap")  # reaching the cap is allowed
        assert ledger.remaining == 0
        with pytest.raises(BudgetExceeded):
            ledger.charge("0.000001", "overhead", "one more micro-dollar")
        assert ledger.can_afford(0) and not ledger.can_afford("0.0000001")
    assert len(lines(tmp_path)) == 2


def test_reopening_with_a_lower_cap_allows_nothing_more(tmp_path):
    with Ledger(tmp_path, cap="1") as ledger:
        ledger.charge("0.6", "training", "trial 1")
    with Ledger(tmp_path, cap="0.5") as ledger:
        assert ledger.spent == Decimal("0.6") and ledger.remaining == 0
        with pytest.raises(BudgetExceeded):
            ledger.charge("0.01", "training", "trial 2")


def test_bad_charges_are_refused(tmp_path):
    with Ledger(tmp_path, cap="1") as ledger:
        with pytest.raises(ValueError, match="no refunds"):
            ledger.charge("-0.1", "training", "refund?")
        with pytest.raises(ValueError, match="valid: baselines, boot, calibration"):
            ledger.charge("0.1", "trainig", "typo")
        with pytest.raises(ValueError):
            ledger.charge("NaN", "training", "nan")
    assert lines(tmp_path) == []
    with pytest.raises(ValueError):
        Ledger(tmp_path / "other", cap="-1")


# ----------------------------------------------------------------------------- idempotency, totals


def test_an_idempotency_key_is_charged_once_even_across_a_resume(tmp_path):
    with Ledger(tmp_path, cap="1") as ledger:
        first = ledger.charge("0.1", "training", "trial 1 rung 0", trial="t1", key="t1/rung0")
        assert ledger.charge("0.1", "training", "again", key="t1/rung0") == first
        assert ledger.charge_once("0.2", "training", "other amount", key="t1/rung0") == (first, False)
        ledger.charge("0.9", "training", "fill to the cap", key="t2/rung0")
    with Ledger(tmp_path, cap="1") as resumed:
        # At the cap, a unit already paid for is still acknowledged, not refused.
        assert resumed.charge("0.1", "training", "resumed", key="t1/rung0") == first
        assert resumed.find("t2/rung0").amount == Decimal("0.9")
        assert resumed.spent == Decimal("1.0")
    assert len(lines(tmp_path)) == 2


def test_totals_per_category_and_trial(tmp_path):
    with Ledger(tmp_path, cap="10") as ledger:
        ledger.charge("0.01", "boot", "vm boot")
        ledger.charge("0.05", "baselines", "majority + zero-shot")
        ledger.charge("0.20", "training", "t1", trial="t1")
        ledger.charge("0.30", "training", "t2", trial="t2")
        ledger.charge("0.02", "evaluation", "t1 eval", trial="t1")
    with Ledger(tmp_path, cap="10") as ledger:
        assert ledger.by_category() == {
            "boot": Decimal("0.01"),
            "baselines": Decimal("0.05"),
            "training": Decimal("0.50"),
            "evaluation": Decimal("0.02"),
        }
        assert ledger.by_trial() == {"t1": Decimal("0.22"), "t2": Decimal("0.30")}
        assert sum(ledger.by_category().values()) == ledger.spent


# ----------------------------------------------------------------------------- crashes and sharing

CHILD = textwrap.dedent(
    """
    import sys
    from budgetft.money.ledger import BudgetExceeded, Ledger
    run_dir, cap, amount, stop_at_cap = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    ledger = Ledger(run_dir, cap)
    i = 0
    while True:
        try:
            record = ledger.charge(amount, "training", f"unit {i}", key=f"{sys.argv[5]}-{i}")
        except BudgetExceeded:
            if stop_at_cap:
                break
            print("capped", flush=True)
            continue
        print(record.seq, flush=True)  # acknowledged only after charge() returned (fsynced)
        i += 1
    """
)


def _spawn(tmp_path: Path, run_dir: Path, cap: str, amount: str, stop_at_cap: bool, tag: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(script), str(run_dir), cap, amount, "1" if stop_at_cap else "0", tag]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)


def test_kill_9_mid_charging_loses_nothing_acknowledged_and_never_passes_the_cap(tmp_path):
    run_dir = tmp_path / "run"
    child = _spawn(tmp_path, run_dir, cap="0.25", amount="0.0007", stop_at_cap=False, tag="u")
    acked = 0
    deadline = time.monotonic() + 20
    while acked < 40 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if line.strip().isdigit():
            acked = int(line)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert acked >= 40

    raw = (run_dir / LEDGER_FILENAME).read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1].splitlines()
    amounts = [Decimal(json.loads(line)["amount_usd"]) for line in complete]
    with Ledger(run_dir, cap="0.25") as ledger:
        assert ledger.spent == sum(amounts)
        assert len(ledger.records) >= acked  # every acknowledged charge survived the kill
        assert [c.seq for c in ledger.records] == list(range(1, len(ledger.records) + 1))
        assert ledger.spent <= Decimal("0.25")
        ledger.charge("0", "overhead", "still appendable after the crash")
    assert read_charges(run_dir / LEDGER_FILENAME)[-1].seq == len(amounts) + 1


def test_two_processes_sharing_a_ledger_stop_exactly_at_the_cap(tmp_path):
    run_dir = tmp_path / "run"
    children = [_spawn(tmp_path, run_dir, cap="0.1", amount="0.001", stop_at_cap=True, tag=t) for t in "ab"]
    for child in children:
        child.communicate(timeout=60)
        assert child.returncode == 0
    with Ledger(run_dir, cap="0.1") as ledger:
        assert ledger.spent == Decimal("0.1")  # 100 charges between them, no more, none lost
        assert [c.seq for c in ledger.records] == list(range(1, 101))


# ----------------------------------------------------------------------------- meter


def test_the_one_minute_minimum_is_paid_once_per_run(tmp_path):
    with Ledger(tmp_path, cap="1") as ledger:
        meter = Meter(ledger, "3.6")  # $0.001 per second
        assert meter.charge_for(10, "boot", "vm boot").amount == Decimal("0.06")  # the first minute
        assert meter.charge_for(20, "baselines", "majority").amount == 0  # inside that minute
        assert meter.charge_for(40, "training", "t1").amount == Decimal("0.01")  # 70 s in all
        assert ledger.spent == Decimal("0.07") == cost("3.6", 70)


def test_per_charge_rounding_does_not_accumulate(tmp_path):
    with Ledger(tmp_path, cap="10") as ledger:
        meter = Meter(ledger, "2.86")
        for i in range(200):
            meter.charge_for(Decimal("1.5"), "training", f"step {i}")
        # Charging 200 x 1.5 s one by one costs what 300 s costs at once, to the micro-dollar.
        assert ledger.spent == cost("2.86", 300) == Decimal("0.238334")


def test_reconcile_charges_overruns_and_never_refunds(tmp_path):
    now = [0.0]
    with Ledger(tmp_path, cap="1") as ledger:
        meter = Meter(ledger, "3.6", clock=lambda: now[0])
        meter.charge_for(100, "training", "t1 planned 100 s", trial="t1")
        assert meter.reconcile(80) is None  # ran shorter: no refund
        extra = meter.reconcile(130, category="training", trial="t1")  # ran 30 s longer
        assert extra.amount == Decimal("0.03") and extra.trial == "t1"
        now[0] = 150.5  # the meter's own clock: 20.5 s more of uptime
        assert meter.reconcile().amount == Decimal("0.021")  # billed in whole seconds, rounded up
        assert ledger.spent == cost("3.6", 151)


def test_a_resumed_meter_does_not_pay_twice_for_a_keyed_unit(tmp_path):
    with Ledger(tmp_path, cap="1") as ledger:
        first = Meter(ledger, "3.6").charge_for(100, "training", "t1", key="t1/rung0")
    with Ledger(tmp_path, cap="1") as ledger:
        meter = Meter(ledger, "3.6")  # new VM after a crash
        assert meter.charge_for(100, "training", "t1 again", key="t1/rung0") == first
        assert meter.charged == 0 and meter.paid_seconds == 0
        assert ledger.spent == Decimal("0.1") and len(ledger.records) == 1


def test_the_meter_cannot_prepay_past_the_cap(tmp_path):
    with Ledger(tmp_path, cap="0.5") as ledger:
        meter = Meter(ledger, "3.6")
        assert meter.affordable_seconds() == 500
        meter.charge_for(100, "training", "t1")
        assert meter.affordable_seconds() == 400
        with pytest.raises(BudgetExceeded):
            meter.charge_for(401, "training", "t2")
        assert meter.paid_seconds == 100 and ledger.spent == Decimal("0.1")
        meter.charge_for(400, "training", "t2")
        assert ledger.spent == Decimal("0.5") and meter.affordable_seconds() == 0
    with Ledger(tmp_path / "tiny", cap="0.05") as ledger:
        assert Meter(ledger, "3.6").affordable_seconds() == 0  # 50 s < the one-minute minimum
        assert Meter(ledger, "0").affordable_seconds() is None  # a free local run


def test_two_threads_sharing_one_ledger_never_write_the_same_sequence_number(tmp_path):
    """The machine meter charges from its thread while the driver may charge from its own: flock
    alone is held per open file, so both held it at once and wrote seq N twice (found by a
    test that charged beside the meter: "line 1092 breaks the chain")."""
    import threading

    ledger = Ledger(tmp_path, "1000")

    def charge_many(name):
        for i in range(300):
            ledger.charge("0.000001", "training", f"{name} {i}")

    threads = [threading.Thread(target=charge_many, args=(n,)) for n in ("meter", "driver")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    charges = read_charges(tmp_path / "ledger.jsonl")
    assert [c.seq for c in charges] == list(range(1, 601))
    assert charges[-1].total == Decimal("0.000600")
