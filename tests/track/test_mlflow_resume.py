"""A resumed run goes on in the MLflow runs its first session opened (their ids are in
tracking.json): no second parent, no second child for a trial, its curve continued."""

import pytest

from budgetft.track.facts import Point, RunFacts, TrialFacts
from budgetft.track.trackers import Trackers

mlflow = pytest.importorskip("mlflow")


def test_a_resumed_run_goes_on_in_the_same_mlflow_runs(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from budgetft.track.mlflow_backend import MlflowBackend

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    facts = RunFacts("run-1", "tiny", "run", params={"job": "tiny"}, tags={"budgetft.cap_usd": "1.00"})
    first = Trackers([MlflowBackend(uri, "tiny")])
    first.start(facts)
    first.trial_started(TrialFacts("t001-lora", params={"method": "lora"}))
    first.log([Point(step, "train/loss", 1.0 / step, 1.0) for step in (1, 2)], "t001-lora")
    assert first.close(60)  # the session dies here, its trial still open
    state = first.state()["mlflow"]

    second = Trackers([MlflowBackend(uri, "tiny", state)])
    second.start(facts)
    second.log([Point(3, "train/loss", 1 / 3, 2.0)], "t001-lora")
    second.trial_ended("t001-lora", "interrupted", {"steps": 3.0}, {"budgetft.stop_reason": "the run was stopped"})
    second.finish("finished")
    assert second.close(60) and not second.lost()

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 2
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert parent.info.status == "FINISHED" and child.info.status == "KILLED"
    assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "train/loss")) == [1, 2, 3]
    assert child.data.tags["budgetft.stop_reason"] == "the run was stopped"
