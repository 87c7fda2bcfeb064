"""The one-minute billing minimum is charged per machine start the provider bills, not per
resume session (issue 27: every resume paid a minute, one whose Ray start failed after 8 s
included). A local machine: once per boot; a cloud VM: its launcher's boot charge carries it."""

from datetime import datetime
from decimal import Decimal

from budgetft.money.ledger import Ledger, read_charges
from budgetft.money.machine_meter import MachineMeter
from budgetft.money.machine_start import current_start, launcher_billed_start, seconds_paid, start_paid_seconds

PRICE = Decimal("36")  # $0.01 a second


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def session(tmp_path, number, seconds, start_paid_s=0.0):
    """One short session of `seconds` on the meter; returns what it charged."""
    clock = Clock()
    ledger = Ledger(tmp_path, "5.00")
    before = ledger.spent
    meter = MachineMeter(ledger, PRICE, tmp_path, Decimal("0.05"), slice_s=1.0, lookahead_s=1.0, session=number, clock=clock,
                         start_paid_s=start_paid_s).start(thread=False)
    while clock.now < 1_000_000.0 + seconds:
        clock.now += 0.5
        meter.top_up()
    meter.close()
    ledger.refresh()
    return ledger.spent - before


def test_a_resume_on_the_same_boot_pays_no_second_minimum(tmp_path):
    first = session(tmp_path, 1, 8)  # e.g. Ray's start failed after 8 s
    assert first == Decimal("0.60")  # the machine start's minute
    charges = read_charges(tmp_path / "ledger.jsonl")
    starts = {"boot:a": [1, 2]}
    paid = start_paid_seconds(charges, starts, "boot:a", 2, PRICE)
    assert paid >= 60
    second = session(tmp_path, 2, 8, start_paid_s=paid)
    assert second < Decimal("0.20")  # its own ~10 s, no new minute
    assert [c.key for c in read_charges(tmp_path / "ledger.jsonl") if "minimum" in (c.description or "")] == ["s1:minimum"]


def test_a_new_boot_pays_its_own_minimum(tmp_path):
    session(tmp_path, 1, 8)
    charges = read_charges(tmp_path / "ledger.jsonl")
    assert start_paid_seconds(charges, {"boot:a": [1], "boot:b": [2]}, "boot:b", 2, PRICE) == 0.0
    assert session(tmp_path, 2, 8) == Decimal("0.60")


def test_a_long_first_session_covers_the_minute_of_a_short_second_one(tmp_path):
    session(tmp_path, 1, 90)
    charges = read_charges(tmp_path / "ledger.jsonl")
    assert not any("minimum" in c.description for c in charges)
    assert seconds_paid(charges, [1], PRICE) >= 90
    assert session(tmp_path, 2, 5, start_paid_s=start_paid_seconds(charges, {"boot:a": [1, 2]}, "boot:a", 2, PRICE)) < Decimal("0.10")


def test_a_vm_start_is_billed_by_its_launcher(tmp_path):
    ledger = Ledger(tmp_path, "5.00")
    ledger.charge("0.80", "boot", "cloud VM #1: boot", key="vm1:boot")
    charged_at = datetime.fromisoformat(read_charges(ledger.path)[-1].ts.replace("Z", "+00:00")).timestamp()
    charges = read_charges(ledger.path)
    assert launcher_billed_start(charges, booted_at=charged_at + 40)  # the VM booted after its launcher paid
    assert not launcher_billed_start(charges, booted_at=charged_at - 86400)  # a machine up for a day: not that VM
    assert start_paid_seconds(charges, {}, "boot:vm", 1, PRICE, booted_at=charged_at + 40) == 60
    ledger.charge("0.05", "training", "the VM's session", key="s1:1")
    later = read_charges(ledger.path)
    assert not launcher_billed_start(later, booted_at=charged_at + 40)  # a session after it: a new start is its own


def test_this_machine_has_a_start_id():
    start = current_start()
    assert start.startswith(("boot:", "boot-time:")) and start == current_start()  # stable within a boot
