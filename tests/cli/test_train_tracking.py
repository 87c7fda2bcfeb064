"""`budgetft train --track`: the one trial as one tracker run, its curves from the loop's
callbacks, its final numbers beside both baselines."""

import pytest
from typer.testing import CliRunner

from budgetft.cli import app

runner = CliRunner()


def test_train_writes_tensorboard_and_mlflow(tiny_job_file, tmp_path, monkeypatch, one_thread):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for key, value in {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_ALLOW_FILE_STORE": "true"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    events = tmp_path / "tb"
    result = runner.invoke(app, ["train", str(tiny_job_file), "--method", "bitfit", "--steps", "6", "--eval-limit", "16", "--set", "train.eval_every=3",
                                 "--track", f"tensorboard={events}", "--track", f"mlflow={uri}"])
    assert result.exit_code == 0, result.output
    assert "tracked as tiny-train-" in result.output and "lost" not in result.output

    client = MlflowClient(uri)
    (record,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert record.info.status == "FINISHED" and record.data.params["method"] == "bitfit" and record.data.tags["budgetft.kind"] == "train"
    assert sorted(m.step for m in client.get_metric_history(record.info.run_id, "train/loss")) == [1, 2, 3, 4, 5, 6]
    assert sorted(m.step for m in client.get_metric_history(record.info.run_id, "eval/accuracy")) == [3, 6]
    assert {"final/accuracy", "baseline/majority_accuracy", "baseline/zero_shot_accuracy", "trainable_params"} <= set(record.data.metrics)

    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert accumulator.Scalars("final/accuracy")[0].value == pytest.approx(record.data.metrics["final/accuracy"])
