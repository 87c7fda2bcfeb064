"""SIGTERM to a real driver while Ray Tune trains a trial (issue 27: exit 134 after ~3 s, no
report, status "failed", twice in two tries): the run stops its trial, keeps what it trained,
writes the report and exits 143 with the resume hint; the resume then finishes the run."""

import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest
import yaml

from budgetft.money.ledger import read_charges
from budgetft.rundir import RunDir

pytestmark = pytest.mark.slow  # the real CLI under Ray on the tiny model: a minute or two


def test_sigterm_mid_trial_reports_and_exits_143(tiny_job_data, tmp_path):
    tiny_job_data["methods"] = {"full": {"learning_rate": [3e-3, 1e-3]}}
    tiny_job_data["train"].update(max_steps=3000, eval_every=500)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job_data))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "budgetft", "run", str(job), "--budget", "2", "--price-per-hour", "36", "--out", str(out)]
    log = tmp_path / "driver.err"  # a file, not a pipe: an unread pipe that fills blocks the driver
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True, start_new_session=True)
    run = RunDir(out)
    deadline = time.time() + 300
    while not any(t.get("steps", 0) >= 2 and t.get("status") == "running" for t in run.trials()):
        assert driver.poll() is None and time.time() < deadline, "no trial trained"
        time.sleep(0.1)
    driver.send_signal(signal.SIGTERM)
    driver.wait(timeout=300)
    stderr = log.read_text()
    assert driver.returncode == 143, stderr
    assert "SIGTERM received" not in stderr and "Traceback" not in stderr  # Ray's crash handler stays out
    assert "interrupted by SIGTERM" in stderr and f"budgetft run --resume {out}" in stderr
    info = run.run()
    assert info["status"] == "interrupted" and (out / "report.md").exists()
    trial = next(t for t in run.trials() if t.steps >= 2)
    assert trial.status == "interrupted" and run.has_weights(trial.trial_id)  # what it trained is kept

    resumed = subprocess.run([sys.executable, "-m", "budgetft", "run", "--resume", str(out)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert run.run()["status"] == "finished" and read_charges(run.ledger)[-1].total <= Decimal("2")
