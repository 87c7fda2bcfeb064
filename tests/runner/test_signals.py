"""SIGTERM and SIGHUP stop a run as Ctrl-C does, in every stage (issue 27): trials stop and keep
what they learned, the report is written, the exit code is the shell's for the signal (143,
129, 130) with the line that resumes the run. While Ray runs the trials, the signal must not
raise inside Ray's code: it asks the meter to stop every trial, and the driver stops after."""

import json
import os
import signal

import pytest
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.money.machine_meter import payment_for
from budgetft.rundir import RunDir
from budgetft.runner import driver
from budgetft.runner.signals import StopSignals, Stopped

runner = CliRunner()


def run_cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_a_signal_raises_in_our_code_and_only_asks_inside_deferred():
    asked = []
    signals = StopSignals(on_stop=asked.append).install()
    try:
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)  # Ray's code would run here: nothing may be raised
            finished_the_block = True
        assert finished_the_block and asked == ["the run was stopped by SIGTERM"]
        with pytest.raises(Stopped) as stopped:
            signals.raise_if_stopped()
        assert stopped.value.exit_code == 143 and stopped.value.name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGINT)  # a second signal: the stop is already under way
        assert asked == ["the run was stopped by SIGTERM"]
    finally:
        signals.restore()
    fresh = StopSignals().install()
    try:
        with pytest.raises(Stopped) as stopped:
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(1000):  # the handler runs at the next bytecode
                pass
        assert stopped.value.exit_code == 129
    finally:
        fresh.restore()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_signal_ignored_on_purpose_stays_ignored():
    """`nohup budgetft run ...` ignores SIGHUP so that the run outlives the terminal."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        signals = StopSignals().install()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)
        assert signals.received is None
        signals.restore()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def _signal_in(monkeypatch, name: str, signum: int):
    """Replace the driver's stage `name` by one that receives `signum` and then does its work."""
    real = getattr(driver, name)

    def stage(*args, **kwargs):
        os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, name, stage)


@pytest.mark.parametrize("stage, signum, code", [
    ("run_baselines", signal.SIGTERM, 143),
    ("calibrate", signal.SIGHUP, 129),
    ("held_out_test", signal.SIGTERM, 143),
])
def test_a_signal_in_our_own_stages_stops_and_reports(tiny_job_data, tmp_path, monkeypatch, stage, signum, code):
    import yaml

    from budgetft.stages.tune import TuneSession

    tiny_job_data["eval"]["test_rows"] = 20  # a held-out test to be stopped in
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job_data))
    monkeypatch.setattr(TuneSession, "round", lambda self, plan, specs: None)  # no Ray here: the stages around it
    _signal_in(monkeypatch, stage, signum)
    out = tmp_path / "run"
    result = run_cli("run", job, "--budget", "2", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == code, result.output
    name = {signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}[signum]
    assert f"interrupted by {name}" in result.output and f"budgetft run --resume {out}" in result.output
    run = RunDir(out)
    assert run.run()["status"] == "interrupted" and (out / "report.md").exists()
    assert run.run()["stop_reason"] == f"the run was stopped by {name}"


def test_sigterm_while_ray_runs_the_trials_stops_them_through_the_meter(tiny_job_file, tmp_path, monkeypatch):
    """The round (Ray Tune's fit) is not interrupted by an exception: the trials are told to stop
    by the meter (interrupted, not the cap), the round returns, then the run stops."""
    from budgetft.stages.tune import TuneSession

    seen = {}

    def round_(self, plan, specs):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):  # Ray's loop goes on; the meter's thread publishes the stop
            self.meter.top_up()
        seen["completed"] = True
        seen["meter"] = json.loads(self.run.meter_json.read_text())

    monkeypatch.setattr(TuneSession, "round", round_)
    out = tmp_path / "run"
    result = run_cli("run", tiny_job_file, "--budget", "2", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == 143, result.output
    assert seen.get("completed"), "the signal raised inside the round"
    state = seen["meter"]
    assert state["stop"] and state["interrupted"] and state["reason"] == "the run was stopped by SIGTERM"
    verdict = payment_for(state, 1.0, state["session"], state["heartbeat"])
    assert not verdict.ok and not verdict.by_cap  # a worker records "interrupted", not "stopped by the cap"
    assert RunDir(out).run()["status"] == "interrupted" and (out / "report.md").exists()


def test_a_signal_during_the_report_waits_for_it(tiny_job_file, tmp_path, monkeypatch):
    from budgetft.stages.tune import TuneSession

    monkeypatch.setattr(TuneSession, "round", lambda self, plan, specs: None)
    _signal_in(monkeypatch, "finish", signal.SIGTERM)
    out = tmp_path / "run"
    result = run_cli("run", tiny_job_file, "--budget", "2", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == 143, result.output
    assert (out / "report.md").exists() and (out / "report.json").exists()
    assert "after the run had finished" in result.output


def test_a_signal_as_the_session_starts_leaves_a_run_that_resumes(tiny_job_file, tmp_path, monkeypatch):
    """SIGTERM between run.json and the meter's start once left run.json without job.yaml: the
    resume could not find its job. A session now starts whole, then stops."""
    from budgetft.money.machine_meter import MachineMeter
    from budgetft.stages.tune import TuneSession

    real_start = MachineMeter.start

    def start(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_start(self, *args, **kwargs)

    monkeypatch.setattr(MachineMeter, "start", start)
    out = tmp_path / "run"
    result = run_cli("run", tiny_job_file, "--budget", "2", "--price-per-hour", "36", "--out", out)
    assert result.exit_code == 143, result.output
    assert (out / "job.yaml").exists() and RunDir(out).run()["status"] == "interrupted" and (out / "report.md").exists()
    monkeypatch.setattr(MachineMeter, "start", real_start)
    monkeypatch.setattr(TuneSession, "round", lambda self, plan, specs: None)
    resumed = run_cli("run", "--resume", out)
    assert resumed.exit_code == 0, resumed.output
