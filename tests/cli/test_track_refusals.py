"""--track: a tracker that cannot work is refused with its fix before anything is spent (exit 2,
no run directory), and one that fails once the run goes costs the run nothing but a note."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.track.facts import Point, RunFacts, TrialFacts
from budgetft.track.trackers import Trackers

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def refused(job: Path, out: Path, *args: str) -> str:
    result = runner.invoke(app, ["run", str(job), "--budget", "6", "--price-per-hour", "36", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert not out.exists()  # refused before the run directory, the ledger or the meter existed
    return " ".join(result.output.split())


def test_bad_track_values_name_the_valid_ones(tiny_job_file, tmp_path):
    out = tmp_path / "run"
    assert "unknown tracker 'neptune'; use mlflow[=URI], wandb[=PROJECT] or tensorboard" in refused(tiny_job_file, out, "--track", "neptune")
    assert "nothing after '='; give mlflow=URI, or just mlflow" in refused(tiny_job_file, out, "--track", "mlflow=")
    assert "--track mlflow is given twice" in refused(tiny_job_file, out, "--track", "mlflow", "--track", "mlflow=sqlite:///x.db")
    assert "a run always writes its TensorBoard files into its own directory" in refused(tiny_job_file, out, "--track", "tensorboard=tb")


def test_an_mlflow_server_that_does_not_answer_is_refused_before_spending(tiny_job_file, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = closed_port()
    text = refused(tiny_job_file, tmp_path / "run", "--track", f"mlflow=http://127.0.0.1:{port}")
    assert f"MLflow at http://127.0.0.1:{port} cannot be used: nothing answers there" in text
    assert "mlflow server --host 127.0.0.1 --port 5000" in text and "--track mlflow=sqlite:///mlflow.db" in text


def test_wandb_without_a_key_is_refused_with_the_ways_out(tiny_job_file, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc holding a key
    text = refused(tiny_job_file, tmp_path / "run", "--track", "wandb=my-project")
    assert "no W&B API key for https://api.wandb.ai; run `wandb login` or set WANDB_API_KEY, or set WANDB_MODE=offline" in text


def test_trackers_on_a_cloud_run_are_refused(tiny_job_file, tmp_path):
    result = runner.invoke(app, ["run", str(tiny_job_file), "--budget", "1", "--cloud", "gcp", "--gpu", "t4", "--dry-run", "--track", "mlflow"])
    assert result.exit_code == 2 and "--track mlflow/wandb applies to local runs" in result.output


HIDE_TRACKERS = '''
import sys

class HiddenTrackers:
    """The [track] extra is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlflow", "wandb"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HiddenTrackers())
'''


def test_a_missing_extra_names_the_pip_command(tiny_job_file, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_TRACKERS)
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{ROOT}", HF_HUB_OFFLINE="1", BUDGETFT_CACHE=str(tmp_path / "cache"))
    for tracker in ("mlflow=sqlite:///x.db", "wandb"):
        done = subprocess.run([sys.executable, "-m", "budgetft", "run", str(tiny_job_file), "--budget", "6", "--price-per-hour", "36",
                               "--out", str(tmp_path / "run"), "--track", tracker], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        name = tracker.split("=")[0]
        assert f"--track {tracker} needs {name}, which is not installed (the [track] extra). Fix: pip install 'budgetft[track]'" in " ".join(done.stderr.split())
        assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def test_a_server_that_fails_mid_run_costs_nothing_but_notes(tmp_path, monkeypatch):
    """The checks passed, then the server went away: every call fails fast (no retries), is
    noted, and the calls after it are still made; nothing waits on them but the final close."""
    pytest.importorskip("mlflow")
    from budgetft.track.mlflow_backend import MlflowBackend

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    trackers = Trackers([MlflowBackend(f"http://127.0.0.1:{closed_port()}", "tiny")])
    trackers.start(RunFacts("run-1", "tiny", "run"))
    trackers.trial_started(TrialFacts("t001-lora"))
    for step in range(1, 4):
        trackers.log([Point(step, "train/loss", 1.0 / step, 0.0)], "t001-lora")
    trackers.finish("finished")
    assert trackers.close(60)
    notes = trackers.notes()["mlflow"]
    assert notes["failed"] == 1 and notes["timed_out"] == 0  # opening the run failed; the rest had no run to go to
    assert "opening the run's record failed" in notes["messages"][0]
    assert trackers.lost() == ["mlflow: 1 failed"]
