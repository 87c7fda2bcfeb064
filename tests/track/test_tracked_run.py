"""A tiny `budgetft run --track ...` read back through each tracker's own reader: MLflow's client
(its file store, then an `mlflow server` on loopback), the files W&B writes offline, and
TensorBoard's event reader on the run directory.

A few minutes: each run starts Ray and a worker per trial; the MLflow server takes up to a minute
to start on a busy machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.money.ledger import read_charges
from budgetft.rundir import RunDir

runner = CliRunner()
mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def tracked_job(tiny_job_data, tmp_path, monkeypatch):
    # One learning rate that learns and one that does not: ASHA stops the second at its first rung.
    tiny_job_data["methods"] = {"full": {"learning_rate": [3e-3, 1e-7]}}
    tiny_job_data["train"]["max_steps"] = 45
    tiny_job_data["eval"] = {"limit": 30, "test_rows": 20, "batch_size": 16}  # a held-out test: the summary has one
    path = tmp_path / "tracked.yaml"
    path.write_text(yaml.safe_dump(tiny_job_data))
    # What budgetft sets for MLflow, restored after the test; W&B writes its files, offline.
    for key, value in {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_ALLOW_FILE_STORE": "true",
                       "WANDB_MODE": "offline", "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return path


def run_tracked(job: Path, out: Path, *track: str):
    args = ["run", str(job), "--budget", "6", "--price-per-hour", "36", "--out", str(out)]
    for t in track:
        args += ["--track", t]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tracking:" not in result.output, result.output  # nothing was dropped
    return RunDir(out)


def assert_mlflow_holds(uri: str, run: RunDir) -> None:
    """One parent for the run, one child per trial; params, metrics over steps, tags,
    the report files and the winner's export as artefacts."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    info = run.run()
    assert parent.info.run_name == run.root.name and parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["budgetft.cap_usd"] == info.cap_usd and tags["budgetft.price_per_hour_usd"] == "36"
    assert info.device in tags["budgetft.hardware"]
    assert parent.data.params["job"] == "tiny" and parent.data.params["methods"] == '["full"]'
    test = run.test()
    metrics = parent.data.metrics
    assert metrics["test/accuracy"] == pytest.approx(test["metrics"]["accuracy"])
    assert metrics["test/majority_accuracy"] == pytest.approx(test["majority"]["accuracy"])
    assert metrics["baseline/majority_accuracy"] == pytest.approx(run.baselines()["majority"]["accuracy"])
    charges = read_charges(run.ledger)
    by_category = {}
    for c in charges:
        by_category[c.category] = by_category.get(c.category, Decimal(0)) + c.amount
    # As the ledger says, but for what is charged after the summary is sent: the report's own
    # time, and the billing minimum charged as the run closes.
    for category, amount in by_category.items():
        if category not in ("report", "minimum"):
            assert metrics[f"spend/{category}_usd"] == pytest.approx(float(amount))
    assert metrics["spend/cap_usd"] == float(info.cap_usd)
    # The report stage charges the tracking wait too: the total is at least what was on the ledger then.
    assert 0 < metrics["spend/total_usd"] <= float(charges[-1].total)
    spend_curve = client.get_metric_history(parent.info.run_id, "spend/run_usd")
    assert len(spend_curve) >= 2 and spend_curve[-1].value <= float(charges[-1].total)

    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    trials = {t.trial_id: t for t in run.trials()}
    assert set(children) == set(trials) and len(trials) == 2
    for trial_id, trial in trials.items():
        child = children[trial_id]
        assert child.data.params["method"] == "full" and float(child.data.params["config.learning_rate"]) == trial.config["learning_rate"]
        assert child.data.tags["budgetft.status"] == trial.status and child.data.tags["budgetft.cap_usd"] == info.cap_usd
        assert child.info.status == "FINISHED"
        loss = client.get_metric_history(child.info.run_id, "train/loss")
        assert sorted(m.step for m in loss) == list(range(1, trial.steps + 1))
        accuracy = sorted((m.step, round(m.value, 5)) for m in client.get_metric_history(child.info.run_id, "eval/accuracy"))
        assert accuracy == [(e["step"], round(e["accuracy"], 5)) for e in trial.evals]
        assert child.data.metrics["best/accuracy"] == pytest.approx(max(e["accuracy"] for e in trial.evals))

    artefacts = {f.path for folder in ("report", "export", "summary") for f in client.list_artifacts(parent.info.run_id, folder)}
    assert {"report/report.md", "report/report.json", "report/results.csv", "report/test.json"} <= artefacts
    assert {"export/README.md", "export/budgetft_scoring.json", "export/config.json"} <= artefacts  # the winner, as `budgetft export` writes it
    assert "summary/report.md" in artefacts


def assert_tensorboard_holds(run: RunDir) -> None:
    """TensorBoard's reader finds each trial's curves and the run's summary in the run directory."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    events = plugin_event_multiplexer.EventMultiplexer()
    events.AddRunsFromDirectory(str(run.root))
    events.Reload()
    for trial in run.trials():
        name = f"tensorboard/{trial.trial_id}"
        assert name in events.Runs(), sorted(events.Runs())
        assert [e.step for e in events.Tensors(name, "train/loss")] == list(range(1, trial.steps + 1))
        assert [e.step for e in events.Tensors(name, "eval/accuracy")] == [e["step"] for e in trial.evals]
        assert events.Tensors(name, "spend/trial_usd")
    summary = set(events.Runs()["tensorboard/summary"]["tensors"])
    assert {"test/accuracy", "test/lift_over_majority_points", "test/zero_shot_accuracy", "baseline/majority_accuracy", "spend/total_usd", "spend/cap_usd",
            "spend/run_usd", "report/text_summary"} <= summary


@pytest.mark.slow
def test_a_run_in_mlflow_wandb_and_tensorboard(tracked_job, tmp_path):
    pytest.importorskip("wandb")
    pytest.importorskip("tensorboard")
    uri = (tmp_path / "mlruns").as_uri()
    run = run_tracked(tracked_job, tmp_path / "run", f"mlflow={uri}", "wandb=budgetft-test")
    assert_mlflow_holds(uri, run)
    assert_tensorboard_holds(run)
    assert_wandb_holds(run)
    record = json.loads((run.root / "tracking.json").read_text())
    assert record["trackers"] == ["tensorboard", f"mlflow={uri}", "wandb=budgetft-test"]
    assert all(n["failed"] == n["timed_out"] == n["dropped"] == 0 for n in record["notes"].values())


@pytest.mark.slow
def test_a_run_in_an_mlflow_server_on_loopback(tracked_job, tmp_path):
    with mlflow_server(tmp_path / "server") as uri:
        run = run_tracked(tracked_job, tmp_path / "run", f"mlflow={uri}")
        assert_mlflow_holds(uri, run)


# -- W&B's offline files, read back

BLOCK = 32768  # W&B's run file: a LevelDB-style log of 32 KiB blocks after a 7-byte header


def wandb_records(path: Path):
    """The protobuf records of a W&B run file (`run-<id>.wandb`), in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    at, parts = 7, []
    while at + 7 <= len(data):
        left = BLOCK - at % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            at += left
            continue
        _, length, kind = struct.unpack("<IHB", data[at : at + 7])
        if kind == 0 and length == 0:
            at += left
            continue
        body, at = data[at + 7 : at + 7 + length], at + 7 + length
        parts = [body] if kind in (1, 2) else parts + [body]
        if kind in (1, 4):  # a whole record, or a record's last piece
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            yield record


def read_wandb_run(path: Path) -> dict:
    out = {"history": [], "summary": {}, "artifacts": {}}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(name=record.run.display_name, group=record.run.run_group, job_type=record.run.job_type,
                       tags=list(record.run.tags), config={i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "artifact":
            out["artifacts"][record.artifact.type] = sorted(m.path for m in record.artifact.manifest.contents)
    return out


def assert_wandb_holds(run: RunDir) -> None:
    files = sorted((run.root / "wandb").glob("offline-run-*/run-*.wandb"))
    runs = {r["name"]: r for r in map(read_wandb_run, files)}
    trials = {t.trial_id: t for t in run.trials()}
    assert set(runs) == {run.root.name, *trials}
    parent = runs[run.root.name]
    assert parent["job_type"] == "run" and parent["group"] == run.root.name
    assert f"cap_usd {run.run().cap_usd}" in parent["tags"] and "price_per_hour_usd 36" in parent["tags"]
    assert parent["summary"]["test/accuracy"] == pytest.approx(run.test()["metrics"]["accuracy"])
    assert "spend/total_usd" in parent["summary"] and "report.md" in parent["artifacts"]["report"]
    assert {"README.md", "budgetft_scoring.json"} <= set(parent["artifacts"]["model"])
    for trial_id, trial in trials.items():
        record = runs[trial_id]
        assert record["job_type"] == "trial" and record["group"] == run.root.name and record["config"]["method"] == "full"
        steps = sorted(h["_step"] for h in record["history"] if "train/loss" in h)
        assert steps == list(range(1, trial.steps + 1))
        evals = sorted((h["_step"], round(h["eval/accuracy"], 5)) for h in record["history"] if "eval/accuracy" in h)
        assert evals == [(e["step"], round(e["accuracy"], 5)) for e in trial.evals]
        assert record["summary"]["budgetft/status"] == trial.status


# -- an MLflow server on loopback, started and stopped by the test


class mlflow_server:
    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self) -> str:
        self.folder.mkdir(parents=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.log = open(self.folder / "server.log", "w")
        command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}", "--artifacts-destination", str(self.folder / "artifacts")]
        self.process = subprocess.Popen(command, cwd=self.folder, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"http://127.0.0.1:{port}"
        for _ in range(300):  # its database is made on first start: up to a minute on a busy machine
            if self.process.poll() is not None:
                raise AssertionError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return uri
            except OSError:
                time.sleep(1)
        raise AssertionError("mlflow server did not start within 5 minutes")

    def __exit__(self, *exc) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)  # the server and the workers it started
        self.process.wait(timeout=60)
        self.log.close()
