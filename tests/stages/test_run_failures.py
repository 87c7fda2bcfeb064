"""Failures contained (issue 11): a trial that ends without a report, crashes, runs out of memory
or loses its worker process never ends the run; a Ray cluster already on the machine is not ours;
a driver killed with kill -9 leaves nothing behind once the run is resumed; a run killed near its
end can always be resumed to its report. Each drives the real CLI under Ray Tune on the tiny
model (tens of seconds each)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.money.ledger import Ledger, read_charges
from budgetft.rundir import RunDir

runner = CliRunner()
pytestmark = pytest.mark.slow


def write_job(tiny_job_data, tmp_path, methods, max_steps=12) -> Path:
    tiny_job_data["methods"] = methods
    tiny_job_data["train"]["max_steps"] = max_steps
    tiny_job_data["train"]["eval_every"] = 4
    tiny_job_data["eval"]["limit"] = 20
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job_data))
    return path


def spent(run: RunDir) -> Decimal:
    charges = read_charges(run.ledger)
    return charges[-1].total if charges else Decimal(0)


def test_faults_in_trials_never_end_the_run(tiny_job_data, tmp_path, monkeypatch):
    """Five trials, five faults: one stops itself before its first report (the issue's crash:
    Tune's strict metric check ended the run), one's worker is killed with SIGKILL, one runs out
    of memory, one raises, one takes a step far longer than the prepaid window. The run goes on
    to the report; each trial says what happened to it; no Ray traceback reaches the user."""
    job = write_job(tiny_job_data, tmp_path, {"full": {"learning_rate": [3e-3, 2e-3, 1e-3, 5e-4, 2e-4]}})
    monkeypatch.setenv("BUDGETFT_CHAOS", "unpaid:t001:2,kill:t002:2,memory:t003:2,raise:t004:1,slow:t005:2")
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(job), "--budget", "6", "--price-per-hour", "36", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "TuneError" not in result.output
    run = RunDir(out)
    assert run.run()["status"] == "finished"
    trials = {t["trial_id"][:4]: t for t in run.trials()}
    assert trials["t001"]["status"] == "interrupted" and trials["t001"]["evals"] == []
    assert trials["t002"]["status"] == "failed" and "worker process died" in trials["t002"]["error"]
    assert trials["t003"]["status"] == "failed" and "ran out of" in trials["t003"]["error"] and "memory" in trials["t003"]["error"]
    assert trials["t004"]["status"] == "failed" and "RuntimeError: chaos" in trials["t004"]["error"]
    # The slow step waited for its payment and the trial went on to the end.
    assert trials["t005"]["status"] == "finished" and trials["t005"]["steps"] == trials["t005"]["max_steps"]
    report = (out / "report.md").read_text()
    assert "Trials that did not end as planned" in report
    for prefix in ("t001", "t002", "t003", "t004"):
        assert trials[prefix]["trial_id"] in report
    assert spent(run) <= Decimal("6")


def test_a_ray_cluster_already_up_is_not_ours(tiny_job_data, tmp_path):
    """`ray start --head` on the machine: a plain run starts its own Ray (it used to attach and
    die with "num_cpus and num_gpus must not be provided" after paying for baselines and
    calibration); with --ray-address it uses that cluster, and Ray's log lines stay out of the
    output."""
    ray_bin = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    port = _free_port()
    started = subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2", "--disable-usage-stats", "--include-dashboard=false"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        job = write_job(tiny_job_data, tmp_path, {"bitfit": {"learning_rate": [3e-3]}}, max_steps=12)
        plain = runner.invoke(app, ["run", str(job), "--budget", "6", "--price-per-hour", "36", "--out", str(tmp_path / "plain")])
        assert plain.exit_code == 0, plain.output
        assert RunDir(tmp_path / "plain").trials()[0]["status"] == "finished"
        attached = runner.invoke(app, ["run", str(job), "--budget", "6", "--price-per-hour", "36", "--out", str(tmp_path / "attached"), "--ray-address", "auto"])
        assert attached.exit_code == 0, attached.output
        assert RunDir(tmp_path / "attached").trials()[0]["status"] == "finished"
        assert "Connecting to existing Ray cluster" not in attached.output and "INFO" not in attached.output
    finally:
        _stop_cluster(port)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_cluster(port: int) -> None:
    """End the processes of the cluster whose GCS listens on `port`, and only those: `ray stop`
    would end every Ray on the machine, the other test workers' runs among them. Its processes
    name its session directory (or its GCS port); its agents and workers are their children."""
    import re

    from ray._private.utils import get_ray_address_file

    def args(proc) -> str:
        try:
            return " ".join(proc.cmdline())
        except psutil.Error:
            return ""

    processes = list(psutil.process_iter())
    session = next((m.group(1) for p in processes if f"--gcs_server_port={port}" in args(p) for m in [re.search(r"--session-name=(\S+)", args(p))] if m), None)
    ours = re.compile(rf"[:=]{port}\b" + (f"|{re.escape(session)}" if session else ""))
    mine = {p.pid: p for p in processes if ours.search(args(p))}
    for proc in list(mine.values()):
        try:
            mine.update({c.pid: c for c in proc.children(recursive=True)})
        except psutil.Error:
            pass
    for proc in mine.values():
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(mine.values()), timeout=10)
    address_file = Path(get_ray_address_file(None))
    if address_file.exists() and address_file.read_text().strip().endswith(f":{port}"):
        address_file.unlink(missing_ok=True)  # as `ray stop` does: no later ray.init finds it


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_during_tuning_then_resume_leaves_nothing_behind(tiny_job_data, tmp_path):
    """A driver killed with kill -9 mid-trial used to leave two Ray processes running for good
    (DashboardAgent, RuntimeEnvAgent). --resume ends them, finishes the run under the cap, and
    the killed session's trial is recorded as interrupted."""
    from budgetft.paths import cache_root

    job = write_job(tiny_job_data, tmp_path, {"full": {"learning_rate": [3e-3, 1e-3]}}, max_steps=400)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "budgetft", "run", str(job), "--budget", "0.9", "--price-per-hour", "36", "--out", str(out)]
    # stderr to a file: an unread pipe fills (64 KiB of a busy machine's warnings) and blocks the driver.
    log = tmp_path / "driver.err"
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True, start_new_session=True)
    run = RunDir(out)
    def trained() -> bool:
        if driver.poll() is not None:  # it ended before training: say why, not "timed out"
            raise AssertionError(f"the driver exited {driver.returncode} before a trial trained: {log.read_text()[-3000:]}")
        return any(t.get("steps", 0) >= 2 for t in run.trials())

    _wait_for(trained, 300, "a trial to train")
    record = cache_root() / "ray-sessions" / f"{driver.pid}.json"
    recorded = json.loads(record.read_text())["processes"]
    assert recorded, "the run recorded its Ray processes"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # Ray's dashboard and runtime-env agents outlive the driver here (Ray 2.60): --resume ends them.

    resumed = subprocess.run([sys.executable, "-m", "budgetft", "run", "--resume", str(out)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    time.sleep(1.0)
    left = [p["pid"] for p in recorded if _same_process(p)]
    assert left == [], f"stray Ray processes of the killed driver: {left}"
    assert not record.exists()
    info = run.run()
    assert info["status"] == "finished" and info["sessions"] == 2
    assert spent(run) <= Decimal("0.9") and (out / "report.md").exists()
    assert all(t["status"] != "running" for t in run.trials())


def _same_process(entry: dict) -> bool:
    try:
        return abs(psutil.Process(entry["pid"]).create_time() - entry["created"]) < 1.0
    except psutil.Error:
        return False


def test_a_run_killed_near_its_end_resumes_to_its_report(tiny_job_data, tmp_path):
    """The meter stopped at the reserve, then the driver died mid-report: --resume was refused as
    "too small ... raise --budget", so no report was ever written. Now it finishes the report with
    what is left, and the cap stays what it was."""
    job = write_job(tiny_job_data, tmp_path, {"bitfit": {"learning_rate": [3e-3]}}, max_steps=12)
    out = tmp_path / "run"
    first = runner.invoke(app, ["run", str(job), "--budget", "6", "--price-per-hour", "36", "--out", str(out)])
    assert first.exit_code == 0, first.output
    run = RunDir(out)
    # Rewind to the moment of the kill: run and trial "running", the ledger 10 s short of the cap.
    info = run.run()
    info.status, info.finished = "running", None
    run.write_run(info)
    trial = run.trials()[0]
    trial.status, trial.ended = "running", None
    run.write_trial(trial)
    (out / "report.md").unlink()
    ledger = Ledger(out, "6")
    ledger.charge(Decimal("6") - ledger.spent - Decimal("0.10"), "training", "time used before the kill")
    ledger.close()

    resumed = runner.invoke(app, ["run", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert "finishing the run's report" in resumed.output
    assert (out / "report.md").exists()
    assert run.run()["status"] == "finished" and run.run()["cap_usd"] == info["cap_usd"]
    assert all(t["status"] != "running" for t in run.trials())
    assert spent(run) <= Decimal("6")
    shutil.rmtree(out / "ray", ignore_errors=True)
