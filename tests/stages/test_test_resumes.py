"""The held-out test is a stage that resumes (issue 27, point 4): a run killed during it scores it
on resume, reusing the winner's scoring when it is for the same winner and rows; where the money
left cannot pay for it, test.json, the report and the model card say plainly that it is missing
and that the recommendation is unproven."""

import pytest

from budgetft.methods import ApplyContext, get
from budgetft.models.loading import load_model
from budgetft.rundir import RunDir, TrialRecord
from budgetft.spec import validate_job
from budgetft.stages import test as stage
from budgetft.task import prepare_task
from budgetft.train.persist import save_trained

CONFIG = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "learning_rate": 1e-3}


@pytest.fixture
def run_with_a_winner(tiny_job_data, tmp_path):
    tiny_job_data["eval"] = {"test_rows": 20, "limit": 20, "batch_size": 8}
    task = prepare_task(validate_job(tiny_job_data))
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.write_calibration({"methods": {}, "eval_rows_per_s": 50.0})  # the test: 2 x (20 rows / 50 + 3 s) = 6.8 s
    run.write_trial(TrialRecord(trial_id="t001-lora", method="lora", config=CONFIG, max_steps=10, steps=10, status="finished",
                                evals=[{"step": 10, "accuracy": 0.6}], best_step=10))
    save_trained(get("lora").apply(load_model(task.model), CONFIG, ApplyContext()), "lora", CONFIG, run.weights_dir("t001-lora"))
    return {task.job.model.name: task}, run


def test_a_kill_during_the_test_is_scored_on_resume_reusing_the_winners_scoring(run_with_a_winner, monkeypatch):
    tasks, run = run_with_a_winner
    real_untuned = stage.score_untuned_on

    def killed(task):
        raise KeyboardInterrupt  # SIGINT (or a kill) while the untuned model is scored

    monkeypatch.setattr(stage, "score_untuned_on", killed)
    with pytest.raises(KeyboardInterrupt):
        stage.held_out_test(tasks, run)
    assert not run.test_json.exists() and stage.test_begun(run)
    kept = stage.read_json(run.root / stage.PARTIAL_FILE, None)["metrics"]

    def not_again(*args):
        raise AssertionError("the winner was scored again")

    monkeypatch.setattr(stage, "score_untuned_on", real_untuned)
    monkeypatch.setattr(stage, "score_trial_on", not_again)
    record = stage.held_out_test(tasks, run, money_left=lambda: 100.0)
    assert record["winner"] == "t001-lora" and record["metrics"] == kept and record["zero_shot"]["n"] == 20 and record["reused"]
    assert run.test() == record and not stage.test_begun(run) and not (run.root / stage.PARTIAL_FILE).exists()


def test_a_test_the_money_cannot_pay_for_is_said_to_be_missing_and_the_recommendation_unproven(run_with_a_winner, monkeypatch):
    from budgetft.report.test_section import summary_items

    tasks, run = run_with_a_winner
    record = stage.held_out_test(tasks, run, money_left=lambda: 5.0)  # 5 s of the 6.8 s it needs
    assert record["metrics"] is None and "held-out test is missing" in record["missing"] and "unproven" in record["missing"]
    assert "5 s of the 7 s" in record["missing"]
    (label, words), = summary_items(record, None)
    assert label == "Held-out test" and "missing" in words and "unproven" in words
    # A later resume with the money scores it.
    record = stage.held_out_test(tasks, run, money_left=lambda: 60.0)
    assert record["metrics"]["n"] == 20 and not record.get("missing")
