import json

from typer.testing import CliRunner

from budgetft.cli import app

runner = CliRunner()


def test_help_is_instant_and_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "train" in result.output and "prices" in result.output


def test_train_json_reports_metrics_and_both_baselines(tiny_job_file):
    result = runner.invoke(app, ["train", str(tiny_job_file), "--method", "full", "--set", "methods.full.learning_rate=3e-3", "--steps", "20", "--eval-limit", "40", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout[result.stdout.index("{"):])
    assert record["method"] == "full" and record["steps"] == 20 and record["examples"] == 160
    assert set(record["baselines"]) == {"majority", "zero_shot"}
    for metrics in (record["final"], record["baselines"]["majority"], record["baselines"]["zero_shot"]):
        assert metrics["n"] == 40
        assert 0 <= metrics["accuracy_ci95"][0] <= metrics["accuracy"] <= metrics["accuracy_ci95"][1] <= 1
        assert {"balanced_accuracy", "macro_f1", "prediction_share"} <= set(metrics)
    assert record["final"]["eval_loss"] > 0 and record["examples_per_s"] > 0 and 0 <= record["padded_share"] < 1


def test_train_table_output(tiny_job_file):
    result = runner.invoke(app, ["train", str(tiny_job_file), "--method", "bitfit", "--steps", "4", "--eval-limit", "20"])
    assert result.exit_code == 0, result.output
    assert "majority" in result.output and "zero-shot" in result.output and "bitfit @ step 4" in result.output


def test_bad_input_exits_2_with_the_fix(tiny_job_file, tmp_path):
    result = runner.invoke(app, ["train", str(tiny_job_file), "--set", "data.files.train=" + str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "data file not found" in result.output
    result = runner.invoke(app, ["train", str(tiny_job_file), "--method", "qlora"])
    assert result.exit_code == 2 and "valid methods: lora" in result.output
    result = runner.invoke(app, ["train", "no-such-job"])
    assert result.exit_code == 2 and "job 'no-such-job' not found" in result.output
