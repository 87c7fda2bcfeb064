"""A full disk stops a run with one clear line and its own exit code (74), nothing recorded lost
(issue 27: on a 2 MiB --out every trial failed at its checkpoint and the run exited 0). Free
space is checked before anything is spent, before each round, and watched while trials run."""

import json
import time
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.disk import DiskFull
from budgetft.money.ledger import Ledger, read_charges
from budgetft.money.machine_meter import MachineMeter
from budgetft.rundir import RunDir, TrialRecord
from budgetft.runner import disk_room

runner = CliRunner()


def run_cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_too_little_room_is_refused_before_anything_is_spent(tiny_job_file, tmp_path, monkeypatch):
    monkeypatch.setattr(disk_room, "free_bytes", lambda path: 1024 * 1024)  # 1 MiB free
    out = tmp_path / "run"
    result = run_cli("run", tiny_job_file, "--budget", "2", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == 74, result.output
    assert "not enough room on the disk for this run" in result.output and "nothing was spent" in result.output
    assert "1.0 MiB free" in result.output and "for the report" in result.output
    assert not out.exists()  # refused before the run directory was made


def test_a_trial_that_meets_a_full_disk_stops_the_run(tiny_job_file, tmp_path, monkeypatch):
    from budgetft.stages.tune import TuneSession

    def round_(self, plan, specs):
        trial = TrialRecord(trial_id=specs[0]["trial_id"], method=specs[0]["method"], max_steps=specs[0]["max_steps"], steps=12,
                            error="DiskFull: the disk is full (writing the trial's weights): 12 KiB free under /x")
        trial.settle(budget_stopped=False, error=trial.error)
        self.run.write_trial(trial)

    monkeypatch.setattr(TuneSession, "round", round_)
    out = tmp_path / "run"
    result = run_cli("run", tiny_job_file, "--budget", "2", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == 74, result.output
    assert "the disk is full" in result.output and f"budgetft run --resume {out}" in result.output
    assert "unexpectedly" not in result.output and "Traceback" not in result.output
    run = RunDir(out)
    assert run.run()["status"] == "interrupted"  # resumable once there is room
    assert len(run.plan().rounds) == 1  # no second round launched into the same full disk
    assert (out / "report.md").exists() and read_charges(run.ledger)[-1].total <= Decimal("2")


def test_a_disk_full_from_the_start_is_one_line(tiny_job_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("BUDGETFT_DISK_FULL", str(out))
    result = run_cli("run", tiny_job_file, "--budget", "2", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == 74, result.output
    assert "the disk is full (writing job.yaml)" in result.output and "nothing was spent" in result.output
    assert "--resume" not in result.output and "Traceback" not in result.output
    assert not (out / "ledger.jsonl").exists() or read_charges(out / "ledger.jsonl") == []


def test_the_watch_stops_the_run_before_a_write_fails(tmp_path):
    stopped = []
    watch = disk_room.DiskWatch(tmp_path, floor=lambda: 10**18, on_full=stopped.append)  # more than any disk holds
    full = watch.check()
    assert isinstance(full, DiskFull) and stopped == [full] and "nearly full" in str(full)
    assert watch.check() is full and len(stopped) == 1  # said once
    roomy = disk_room.DiskWatch(tmp_path, floor=lambda: 1, on_full=stopped.append)
    assert roomy.check() is None


def test_a_ledger_the_meter_cannot_write_interrupts_the_run(tmp_path, monkeypatch):
    ledger = Ledger(tmp_path, "1.00")
    meter = MachineMeter(ledger, Decimal("36"), tmp_path, Decimal("0.05"), slice_s=0.5, lookahead_s=0.5, minimum_seconds=0).start()
    try:
        monkeypatch.setenv("BUDGETFT_DISK_FULL", str(tmp_path / "ledger.jsonl"))
        deadline = time.time() + 30
        while meter.disk_full is None and time.time() < deadline:
            time.sleep(0.1)
        assert meter.disk_full is not None and not meter.stopped.is_set()  # a full disk is no cap
        monkeypatch.delenv("BUDGETFT_DISK_FULL")
        while not json.loads((tmp_path / "meter.json").read_text()).get("interrupted") and time.time() < deadline:
            time.sleep(0.1)
        state = json.loads((tmp_path / "meter.json").read_text())
        assert state["stop"] and state["interrupted"] and "the disk is full" in state["reason"]
    finally:
        meter.close()


@pytest.mark.parametrize("trainable, method, expected", [
    (8192, "lora", 8192 * 4 + disk_room.WEIGHTS_OVERHEAD),
    (None, "full", 1_000_000 * 4 + disk_room.WEIGHTS_OVERHEAD),
    (None, "lora", 100_000 * 4 + disk_room.WEIGHTS_OVERHEAD),
])
def test_what_a_plan_writes(trainable, method, expected):
    class MP:
        def __init__(self, m, n):
            self.method, self.trials = m, n

    class Plan:
        methods = [MP(method, 3)]

    calibration = {"methods": {method: {"trainable_params": trainable}}} if trainable else None
    writes = disk_room.run_writes(Plan(), calibration, lambda option: 1_000_000, run_seconds=100)
    assert writes["weights"] == 3 * expected and writes["largest_weights"] == expected
    assert writes["records"] == 3 * disk_room.TRIAL_RECORDS + 100 * disk_room.RECORDS_PER_S
