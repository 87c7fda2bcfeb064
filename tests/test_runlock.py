"""One live driver per run directory (issue 27): a second is refused at once, naming the first;
a driver's death, kill -9 included, frees the directory; an --out that cannot be written is
refused before any work."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.runlock import LOCK_FILE, RunDirBusy, RunDirUnwritable, RunLock, owner_of

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def hold(run_dir: Path) -> subprocess.Popen:
    """Another process that holds the run directory's lock, as a live driver does."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from budgetft.runlock import RunLock
        RunLock({str(run_dir)!r}).acquire()
        print("held", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_driver_is_refused_naming_the_first(tmp_path):
    run_dir = tmp_path / "run"
    holder = hold(run_dir)
    try:
        with pytest.raises(RunDirBusy) as refused:
            RunLock(run_dir).acquire(resuming=True)
        assert f"PID {holder.pid}" in str(refused.value) and f"kill -INT {holder.pid}" in str(refused.value)
        assert owner_of(run_dir)["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_of_the_owner_frees_the_directory_at_once(tmp_path):
    run_dir = tmp_path / "run"
    holder = hold(run_dir)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert owner_of(run_dir) is None  # the file is still there; no live process holds it
    lock = RunLock(run_dir).acquire()
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_refused_run_leaves_no_directory_behind(tmp_path):
    run_dir = tmp_path / "new" / "run"
    RunLock(run_dir).acquire().release(clean=True)
    assert not (tmp_path / "new").exists()
    run_dir.mkdir(parents=True)
    (run_dir / "ledger.jsonl").write_text("")
    RunLock(run_dir).acquire().release(clean=True)
    assert (run_dir / "ledger.jsonl").exists()  # a directory with records is never removed


def test_an_out_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(LOCK_FILE):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(RunDirUnwritable, match=r"--out .* cannot be written \(Permission denied\): give a directory you can write to"):
        RunLock(tmp_path / "run").acquire()


def test_cli_refuses_resume_and_out_on_a_live_run_before_anything(tiny_job_file, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"status": "running", "cap_usd": "2", "price_per_hour": "36"}))
    (run_dir / "job.yaml").write_text(tiny_job_file.read_text())
    holder = hold(run_dir)
    try:
        t0 = time.monotonic()
        resumed = runner.invoke(app, ["run", "--resume", str(run_dir)])
        assert resumed.exit_code == 2 and f"PID {holder.pid}" in resumed.output and "in use by a running budgetft driver" in resumed.output
        second = runner.invoke(app, ["run", str(tiny_job_file), "--budget", "2", "--price-per-hour", "36", "--out", str(run_dir)])
        assert second.exit_code == 2 and f"PID {holder.pid}" in second.output and "choose another --out" in second.output
        assert time.monotonic() - t0 < 60  # refused at once: no data read, no model loaded (generous for a busy machine)
        assert not (run_dir / "ledger.jsonl").exists() and json.loads((run_dir / "run.json").read_text())["status"] == "running"
    finally:
        holder.kill()
        holder.wait()


def test_cli_refuses_a_read_only_out_before_reading_the_job(tmp_path, monkeypatch):
    def unwritable(self, resuming=False):
        raise RunDirUnwritable(f"--out {self.root} cannot be written (Read-only file system): give a directory you can write to")

    monkeypatch.setattr(RunLock, "acquire", unwritable)
    missing_job = tmp_path / "nowhere.yaml"  # never read: the directory is checked first
    result = runner.invoke(app, ["run", str(missing_job), "--budget", "1", "--price-per-hour", "36", "--out", str(tmp_path / "ro")])
    assert result.exit_code == 2 and "Read-only file system" in result.output and "not found" not in result.output
