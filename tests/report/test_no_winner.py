"""A trial that was never evaluated is never the winner (issue 27: the cap stopped a $0.10 run's
only trial at step 10, before its one evaluation at step 13; the report made it the winner,
`predict` used it and the export's card said "step None"). The report says why there is none."""

import json

import pytest
from typer.testing import CliRunner

from budgetft.cli import app
from budgetft.report import write_reports
from budgetft.report.load import load_run
from budgetft.rundir import PlanRecord, RunDir, RunInfo, TrialRecord
from budgetft.use import UseError
from budgetft.use.winner import choose_trial


def kept(run: RunDir, trial: TrialRecord) -> None:
    """The trial's record and weights on disk (a manifest is what marks weights as kept)."""
    run.write_trial(trial)
    weights = run.weights_dir(trial.trial_id)
    weights.mkdir(parents=True)
    (weights / "budgetft_method.json").write_text(json.dumps({"method": trial.method, "config": {}, "layout": "tensors"}))


@pytest.fixture
def unevaluated_run(tmp_path, tiny_job_file):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    (run.root / "job.yaml").write_text(tiny_job_file.read_text())
    run.write_run(RunInfo(run_id="r", job="tiny", status="finished", cap_usd="0.10", budget_usd="0.10"))
    run.write_plan(PlanRecord(trials=[{"trial_id": "t001-lora", "method": "lora", "eval_steps": [13], "max_steps": 13}]))
    kept(run, TrialRecord(trial_id="t001-lora", method="lora", status="stopped_by_cap", steps=10, max_steps=13, best_step=10))
    return run


def test_an_unevaluated_trial_is_never_the_winner(unevaluated_run):
    run = unevaluated_run
    assert run.winner() is None
    assert run.no_winner_reason() == ("no trial was evaluated on the selection rows, so none can be handed over: "
                                      "t001-lora was stopped by the cap at step 10, before its first evaluation at step 13")
    kept(run, TrialRecord(trial_id="t002-lora", method="lora", status="finished", steps=13, max_steps=13,
                          evals=[{"step": 13, "accuracy": 0.6}], best_step=13))
    assert run.winner().trial_id == "t002-lora" and run.no_winner_reason() is None


def test_the_report_says_why_there_is_no_winner(unevaluated_run):
    run = unevaluated_run
    run.write_test({"winner": None, "rows": 40, "why": "no trial kept weights (none trained far enough to save them)"})
    report = load_run(run.root)
    assert report.no_winner.startswith("no trial was evaluated")
    write_reports(run.root)
    text = (run.root / "report.md").read_text()
    assert "Held-out test:** not run: no trial was evaluated on the selection rows" in text
    assert "before its first evaluation at step 13" in text and "Nothing to recommend yet: no trial was evaluated" in text
    assert "no trial kept weights" not in text  # the test's own record did not know why


def test_predict_and_export_refuse_it_with_the_reason(unevaluated_run):
    with pytest.raises(UseError, match="has no winner to use: no trial was evaluated.*name a trial with --trial"):
        choose_trial(unevaluated_run.root)
    # A test.json written before this rule named it: it is still not handed over.
    unevaluated_run.write_test({"winner": "t001-lora", "rows": 40})
    with pytest.raises(UseError, match="has no winner to use"):
        choose_trial(unevaluated_run.root)


def test_naming_an_unevaluated_trial_says_it_was_never_evaluated(unevaluated_run, monkeypatch):
    from budgetft.use import predict as P

    said = []
    monkeypatch.setattr(P, "load_chosen", lambda chosen, task: (_ for _ in ()).throw(RuntimeError("stop here")))
    request = P.PredictRequest(unevaluated_run.root, None, trial_id="t001")
    with pytest.raises(RuntimeError, match="stop here"):
        P.predict(request, stdin=__import__("io").StringIO('{"passage": "a", "question": "b"}\n'), say=said.append)
    assert "never evaluated: no accuracy was measured" in said[0] and "None" not in said[0]


def test_the_cli_report_is_one_line_not_a_traceback(unevaluated_run):
    result = CliRunner().invoke(app, ["predict", str(unevaluated_run.root)], input='{"passage": "a", "question": "b"}\n')
    assert result.exit_code == 2 and "no trial was evaluated" in result.output and "Traceback" not in result.output
