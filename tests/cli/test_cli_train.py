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
    result = runner.invoke(app, ["train", str(tiny_job_file), "--method", "galore"])
    assert result.exit_code == 2 and "valid methods: lora" in result.output
    result = runner.invoke(app, ["train", "no-such-job"])
    assert result.exit_code == 2 and "job 'no-such-job' not found" in result.output


def test_an_encoder_with_a_classification_head_trains_from_the_cli(tiny_model_dir, tmp_path):
    """A BERT-style model is detected from its config, gets a head with one output per class,
    and is scored by that head (no label words are read): the whole train command works."""
    import torch
    import yaml
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tests.conftest import tiny_job_dict

    folder = tmp_path / "tiny-bert"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)  # a bare encoder, as sentence-embedding models ship
    data = tiny_job_dict(folder, tmp_path)
    job = tmp_path / "encoder.yaml"
    job.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["train", str(job), "--method", "lora", "--steps", "4", "--eval-limit", "20", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout[result.stdout.index("{"):])
    assert record["final"]["n"] == 20 and sum(record["final"]["prediction_share"].values()) == 1.0
    # The head is trained along with the adapter; nothing else of the encoder is.
    assert 0 < record["trainable_params"] < 0.5 * record["total_params"]
    # `budgetft methods` sizes the same model: an encoder, with the job's two-class head.
    listed = runner.invoke(app, ["methods", str(job), "--json"])
    assert listed.exit_code == 0, listed.output
    listing = json.loads(listed.stdout[listed.stdout.index("{"):])
    lora = next(m for m in listing["methods"] if m["method"] == "lora")
    assert listing["architecture"] == "encoder" and lora["trainable_params"] == record["trainable_params"]
    assert not next(m for m in listing["methods"] if m["method"] == "prefix_tuning")["error"]


def test_methods_option_keeps_the_jobs_spaces_of_the_chosen_methods(tiny_job_file):
    from budgetft.spec import load_job, methods_override

    spec = load_job(str(tiny_job_file), methods_override(str(tiny_job_file), [], "bitfit, full"))
    assert list(spec.methods) == ["bitfit", "full"]
    assert spec.methods["bitfit"] == load_job(str(tiny_job_file)).methods.get("bitfit", {})
    result = runner.invoke(app, ["plan", str(tiny_job_file), "--budget", "5", "--price-per-hour", "36", "--no-calibrate", "--methods", "bitfit"])
    assert result.exit_code == 0, result.output
    assert "bitfit" in result.output and "│ lora" not in result.output
    result = runner.invoke(app, ["plan", str(tiny_job_file), "--budget", "5", "--price-per-hour", "36", "--no-calibrate", "--methods", "galore"])
    assert result.exit_code == 2 and "--methods: unknown method 'galore'; valid methods: lora" in result.output
    result = runner.invoke(app, ["run", str(tiny_job_file), "--resume", str(tiny_job_file.parent), "--methods", "lora"])
    assert result.exit_code == 2 and "--methods cannot change a run being resumed" in result.output
