"""`budgetft predict` and `budgetft export` after a real tiny `budgetft run` (under Ray, ~25 s per
run): predictions reproduce the run's own evaluation row by row; an export loaded by a script
that imports only transformers and peft (in a subprocess that refuses to import budgetft) gives
the same classes and probabilities (within 1e-5) as `budgetft predict`, for a peft method (lora,
as an adapter and merged) and one of ours (bitfit, a full model), on a decoder and an encoder,
and for a prompt-tuning adapter on the decoder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from budgetft.cli import app
from tests.conftest import make_rows, tiny_job_dict, write_jsonl

runner = CliRunner()
SAME_PROBABILITY = 1e-5

# Its module fixtures (a run, built once) stay on one test worker (pytest-xdist).
pytestmark = pytest.mark.xdist_group("predict_export")

# Runs the model card's recipe on rows.jsonl, from inside the export folder, with budgetft
# unimportable, and prints each row's probabilities as one JSON list.
PLAIN_SCRIPT = r'''
import json, re, sys

class NoBudgetft:
    def find_spec(self, name, path=None, target=None):
        if name == "budgetft" or name.startswith("budgetft."):
            raise ImportError("the export must load without budgetft")

sys.meta_path.insert(0, NoBudgetft())
code = re.search(r"```python\n(.*?)```", open("README.md").read(), re.S).group(1)
exec(compile(code, "README.md recipe", "exec"))
rows = [json.loads(line) for line in open(sys.argv[1])]
result = [classify(row) for row in rows]
assert not [m for m in sys.modules if m.split(".")[0] == "budgetft"]
assert "transformers" in sys.modules
print("RESULT " + json.dumps(result))
'''


def build_tiny_bert(folder: Path, tokenizer_dir: Path) -> Path:
    """A 2-layer random BERT with a 2-class head, sharing the tiny Llama's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128, num_labels=2, pad_token_id=0)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


# One configuration each: one trial per method.
TWO_METHODS = {"lora": {"learning_rate": [1e-2]}, "bitfit": {"learning_rate": [3e-3]}}
PROMPT_TOO = {**TWO_METHODS, "prompt_tuning": {"learning_rate": [3e-2], "num_virtual_tokens": [4]}}


def tiny_run(model_dir: Path, folder: Path, methods: dict) -> Path:
    """A finished `budgetft run` with one trial of each method."""
    job = tiny_job_dict(model_dir, folder)
    job["methods"] = methods
    job["train"].update(max_steps=20, eval_every=10)
    job["eval"]["limit"] = 40
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    out = folder / "run"
    result = runner.invoke(app, ["run", str(path), "--budget", "6", "--price-per-hour", "36", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(t.name.split("-", 1)[1] for t in (out / "trials").iterdir()) == sorted(methods), result.output
    return out


def trial_of(run: Path, method: str) -> str:
    """The run's trial of `method` (the plan decides the order of trials, so ids vary)."""
    (found,) = [t.name for t in (run / "trials").iterdir() if t.name.endswith(f"-{method}")]
    return found


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """The runs are built once per module, before any test's own cache is set: give them one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BUDGETFT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def decoder_run(tiny_model_dir, tmp_path_factory, module_cache):
    return tiny_run(tiny_model_dir, tmp_path_factory.mktemp("decoder-run"), PROMPT_TOO)


@pytest.fixture(scope="module")
def encoder_run(tiny_model_dir, tmp_path_factory, module_cache):
    bert = build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tiny_model_dir)
    return tiny_run(bert, tmp_path_factory.mktemp("encoder-run"), TWO_METHODS)


@pytest.fixture(scope="module")
def rows20(tmp_path_factory) -> Path:
    """20 new rows (a seed the run's data did not use), with labels."""
    return write_jsonl(tmp_path_factory.mktemp("rows") / "rows20.jsonl", make_rows(20, seed=7))


def predict_json(*args: str) -> dict:
    result = runner.invoke(app, ["predict", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stdout holds the JSON alone; messages went to stderr


def plain_predictions(folder: Path, rows: Path, tmp_path: Path) -> list[dict]:
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BUDGETFT_CACHE")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, str(script), str(rows)], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def assert_same(predicted: dict, plain: list[dict]) -> None:
    assert len(predicted["predictions"]) == len(plain) == 20
    for mine, theirs in zip(predicted["predictions"], plain):
        assert set(theirs) == set(mine["probabilities"])
        for name, p in theirs.items():
            assert abs(p - mine["probabilities"][name]) < SAME_PROBABILITY, (mine, theirs)
        assert mine["class"] == max(theirs, key=theirs.get)


# --- predict -----------------------------------------------------------------------------

def test_predict_reproduces_the_runs_own_evaluation_row_by_row(decoder_run, tmp_path):
    """The winner's predictions on the run's evaluation rows are right exactly where its kept
    evaluation was: same encoding, weights and class bias. Batches of 4 rows, chunks of 16:
    the rows are scored in several chunks, out of order, and put back in place."""
    from budgetft.spec import load_job
    from budgetft.task import split_eval_rows

    job = load_job(decoder_run / "job.yaml")
    valid = [json.loads(line) for line in Path(job.data.files["validation"]).read_text().splitlines()]
    _, selection = split_eval_rows(len(valid), job.eval.test_rows or 0, job.eval.limit, job.seed)
    rows = [valid[i] for i in selection]
    doc = predict_json(str(decoder_run), str(write_jsonl(tmp_path / "eval.jsonl", rows)), "--batch-size", "4")
    from budgetft.rundir import RunDir

    winner = RunDir(decoder_run).winner().trial_id  # the one rule that picks what a run hands over
    assert doc["trial_id"] == winner and doc["chosen_by"] == "winner"
    trial = json.loads((decoder_run / "trials" / winner / "trial.json").read_text())
    kept = max(trial["evals"], key=lambda e: e["accuracy"])  # the first best: what the run kept
    correct = [p["class"] == p["label"] for p in doc["predictions"]]
    assert correct == [bool(c) for c in kept["correct"]]
    assert doc["accuracy"]["accuracy"] == pytest.approx(kept["accuracy"])
    manifest = json.loads((decoder_run / "trials" / winner / "adapter" / "budgetft_method.json").read_text())
    assert doc["class_bias"] == manifest["class_bias"] and len(doc["class_bias"]) == 2  # trained, saved with the weights


def test_predict_writes_jsonl_csv_and_reads_standard_input(decoder_run, rows20, tmp_path):
    base = predict_json(str(decoder_run), str(rows20))
    for name in ("p.jsonl", "p.csv"):
        result = runner.invoke(app, ["predict", str(decoder_run), str(rows20), "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert lines == base["predictions"]
    header, *records = (tmp_path / "p.csv").read_text().splitlines()
    assert header == "index,class,p_false,p_true,label" and len(records) == 20
    first = records[0].split(",")
    assert first[1] == base["predictions"][0]["class"] and float(first[3]) == pytest.approx(base["predictions"][0]["probabilities"]["true"])
    # The same rows as JSON lines on standard input, without labels.
    text = "".join(json.dumps({"passage": r["passage"], "question": r["question"]}) + "\n" for r in map(json.loads, rows20.read_text().splitlines()))
    result = runner.invoke(app, ["predict", str(decoder_run), "-", "--json"], input=text)
    assert result.exit_code == 0, result.output
    piped = json.loads(result.stdout)
    assert [p["probabilities"] for p in piped["predictions"]] == [p["probabilities"] for p in base["predictions"]]
    assert piped["accuracy"] is None and "label" not in piped["predictions"][0]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-9 for p in piped["predictions"])


def test_a_long_input_is_scored_in_chunks_with_a_progress_bar(decoder_run, tmp_path):
    from budgetft.cli.predict import PROGRESS_ROWS

    rows = make_rows(PROGRESS_ROWS + 50, seed=11)
    result = runner.invoke(app, ["predict", str(decoder_run), str(write_jsonl(tmp_path / "long.jsonl", rows)), "--json", "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["rows"] == len(rows) and [p["index"] for p in doc["predictions"]] == list(range(len(rows)))
    assert doc["accuracy"]["rows"] == len(rows)


def test_plain_text_lines_score_a_one_field_template(decoder_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(decoder_run, run)
    job = yaml.safe_load((run / "job.yaml").read_text())
    job["prompt"].update(template="passage : {passage} . question : is it there ? answer :", truncate_field="passage")
    (run / "job.yaml").write_text(yaml.safe_dump(job))
    result = runner.invoke(app, ["predict", str(run), "--json"], input="alpha the sky\nbeta the sea\n\n")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["rows"] == 2 and doc["input"] == "standard input"


# --- bad input is refused before the model loads -------------------------------------------

@pytest.fixture
def no_model_loading(monkeypatch):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was refused")

    for auto in (transformers.AutoModelForCausalLM, transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(auto, "from_pretrained", refuse)


def _refused(args: list[str], needle: str, input: str | None = None) -> None:
    result = runner.invoke(app, args, input=input)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr, result.stderr
    assert result.stdout == ""


@pytest.fixture
def odd_run(decoder_run, tmp_path):
    """A copy of the run with two more trials: one that kept no weights, and Houlsby adapters
    (only their manifest: the refusal must come before any loading)."""
    run = tmp_path / "odd-run"
    shutil.copytree(decoder_run, run)
    lora = json.loads((run / "trials" / trial_of(run, "lora") / "trial.json").read_text())
    for trial_id, method, kept in (("x01-houlsby", "houlsby", True), ("x02-lora", "lora", False)):
        folder = run / "trials" / trial_id
        folder.mkdir()
        record = dict(lora, trial_id=trial_id, method=method)
        if not kept:
            record.update(status="stopped_early", evals=[])
        (folder / "trial.json").write_text(json.dumps(record))
        if kept:
            (folder / "adapter").mkdir()
            (folder / "adapter" / "budgetft_method.json").write_text(json.dumps({"method": method, "config": {}, "layout": "tensors"}))
    return run


def test_bad_input_is_refused_before_the_model_loads(decoder_run, odd_run, rows20, tmp_path, no_model_loading):
    run = str(decoder_run)
    _refused(["predict", str(tmp_path), str(rows20)], "is not a budgetft run directory")
    _refused(["predict", run, str(rows20), "--trial", "t009"], "no trial 't009'")
    _refused(["predict", str(odd_run), str(rows20), "--trial", "x02"], "trial x02-lora kept no weights")
    _refused(["predict", run, str(tmp_path / "none.jsonl")], "no such file")
    (tmp_path / "rows.xlsx").write_text("x")
    _refused(["predict", run, str(tmp_path / "rows.xlsx")], "not .xlsx")
    write_jsonl(tmp_path / "few.jsonl", [{"passage": "alpha"}])
    _refused(["predict", run, str(tmp_path / "few.jsonl")], "row 1: no field 'question'")
    (tmp_path / "empty.csv").write_text("passage,question\n")
    _refused(["predict", run, str(tmp_path / "empty.csv")], "holds no rows")
    _refused(["predict", run, "-"], "each line must be an object with them", input="just some text\n")
    _refused(["predict", run, str(rows20), "--out", str(tmp_path / "p.txt")], "the suffix picks the format")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    _refused(["export", run, "--to", str(tmp_path / "full")], "is not an empty folder")
    _refused(["export", run, "--to", str(tmp_path / "e1"), "--trial", trial_of(decoder_run, "prompt_tuning"), "--merge"], "nothing to merge")
    _refused(["export", str(odd_run), "--to", str(tmp_path / "e2"), "--trial", "x01"], "houlsby inserts bottleneck adapter modules")
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()


def test_a_run_without_kept_weights_says_why(decoder_run, tmp_path, no_model_loading):
    run = tmp_path / "run"
    shutil.copytree(decoder_run, run)
    for folder in (run / "trials").iterdir():
        shutil.rmtree(folder / "adapter")
    _refused(["predict", str(run), "-"], "has no winner to use: no evaluated trial kept its weights", input="{}\n")


# --- export: plain transformers / peft give predict's answers --------------------------------

@pytest.mark.parametrize("which, method, merge, files", [
    ("decoder", "lora", False, {"adapter_config.json", "adapter_model.safetensors"}),
    ("decoder", "lora", True, {"config.json", "model.safetensors"}),
    ("decoder", "bitfit", False, {"config.json", "model.safetensors"}),
    ("decoder", "prompt_tuning", False, {"adapter_config.json", "adapter_model.safetensors"}),
    ("encoder", "lora", False, {"adapter_config.json", "adapter_model.safetensors"}),
    ("encoder", "lora", True, {"config.json", "model.safetensors"}),
    ("encoder", "bitfit", False, {"config.json", "model.safetensors"}),
], ids=["decoder-lora-adapter", "decoder-lora-merged", "decoder-bitfit-full", "decoder-prompt-adapter", "encoder-lora-adapter", "encoder-lora-merged", "encoder-bitfit-full"])
def test_export_loads_with_transformers_alone_and_matches_predict(which, method, merge, files, request, rows20, tmp_path):
    run = request.getfixturevalue(f"{which}_run")
    args = ["--trial", trial_of(run, method)]
    folder = tmp_path / "export"
    result = runner.invoke(app, ["export", str(run), "--to", str(folder), *args, *(["--merge"] if merge else [])])
    assert result.exit_code == 0, result.output
    present = {p.name for p in folder.iterdir()}
    assert files | {"README.md", "budgetft_scoring.json", "tokenizer.json"} <= present
    assert json.loads((folder / "budgetft_scoring.json").read_text())["architecture"] == which
    predicted = predict_json(str(run), str(rows20), *args)
    assert_same(predicted, plain_predictions(folder, rows20, tmp_path))


@pytest.mark.parametrize("which, method", [("decoder", "lora"), ("encoder", "bitfit")])
def test_the_exports_recipe_shortens_long_rows_as_training_did(which, method, request, tmp_path):
    """Rows far over prompt.max_length lose the end of their truncate field in the model card's
    recipe exactly as in budgetft: the same probabilities as `budgetft predict`."""
    run = request.getfixturevalue(f"{which}_run")
    rows = [{**r, "passage": " ".join([r["passage"]] * 12)} for r in make_rows(20, seed=11)]
    long_rows = write_jsonl(tmp_path / "long.jsonl", rows)
    folder = tmp_path / "export"
    args = ["--trial", trial_of(run, method)]
    result = runner.invoke(app, ["export", str(run), "--to", str(folder), *args])
    assert result.exit_code == 0, result.output
    predicted = predict_json(str(run), str(long_rows), *args)
    assert_same(predicted, plain_predictions(folder, long_rows, tmp_path))


def test_the_model_card_carries_the_proof(decoder_run, tmp_path):
    folder = tmp_path / "export"
    bitfit = trial_of(decoder_run, "bitfit")
    result = runner.invoke(app, ["export", str(decoder_run), "--to", str(folder), "--trial", bitfit])
    assert result.exit_code == 0, result.output
    card = (folder / "README.md").read_text()
    report = json.loads((decoder_run / "report.json").read_text())
    row = next(t for t in report["trials"] if t["id"] == bitfit)
    majority, zero_shot = report["baselines"]
    lo, hi = row["accuracy_ci95"]
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert f"| **this model** ({bitfit}) | {100 * row['accuracy']:.1f} | {100 * lo:.1f}–{100 * hi:.1f} |" in card
    assert f"| majority baseline (always 'true') | {100 * majority['accuracy']:.1f} |" in card
    assert f"| zero-shot baseline (the untuned model) | {100 * zero_shot['accuracy']:.1f} |" in card
    assert "McNemar's exact test (two-sided, alpha = 0.05)" in card
    p = row["vs_majority"]["p_value"]
    assert (f"p = {p:.3f}" if p >= 0.001 else "p = <0.001") in card
    assert "BitFit is budgetft's own method, not a peft adapter" in card and "attention_bias" in card
    assert "| where the money went | USD |" in card and "| overhead |" in card and "| training |" in card
    assert "Machine: CPU" in card and re.search(r"Run started 20\d\d-\d\d-\d\dT", card) and "Exported 20" in card
    assert "learning_rate" in card and "Class bias (nats" in card
    scoring = json.loads((folder / "budgetft_scoring.json").read_text())
    assert scoring["format"] == "full_model" and scoring["classes"] == ["false", "true"]
    assert scoring["class_bias"] == json.loads((decoder_run / "trials" / bitfit / "adapter" / "budgetft_method.json").read_text())["class_bias"]
