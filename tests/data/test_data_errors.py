"""Every bad-input refusal of issue 2, before any model weights are loaded."""

import pytest

from budgetft.data import DataError
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from tests.conftest import make_rows, write_jsonl


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch):
    """Fail loudly if any check lets a model be loaded."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was refused")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def refused(job_data) -> str:
    with pytest.raises(DataError) as err:
        prepare_task(validate_job(job_data))
    return str(err.value)


def test_missing_file(tiny_job_data, tmp_path):
    tiny_job_data["data"]["files"]["train"] = str(tmp_path / "nope.jsonl")
    assert "data file not found:" in refused(tiny_job_data) and "nope.jsonl" in refused(tiny_job_data)


def test_missing_text_field(tiny_job_data):
    tiny_job_data["prompt"]["template"] = "{passage} {title} answer :"
    msg = refused(tiny_job_data)
    assert "has no field(s) 'title'" in msg and "its fields: passage, question, label" in msg


def test_missing_label_field(tiny_job_data):
    tiny_job_data["data"]["label_field"] = "answer"
    assert "has no label field 'answer'" in refused(tiny_job_data)


def test_label_not_in_label_map(tiny_job_data, tmp_path):
    rows = make_rows(20) + [{"passage": "sky", "question": "is it there", "label": "maybe"}]
    tiny_job_data["data"]["files"]["train"] = str(write_jsonl(tmp_path / "odd.jsonl", rows))
    msg = refused(tiny_job_data)
    assert "labels not in prompt.labels: 'maybe' (1 rows)" in msg and "'true', 'false'" in msg


def test_one_class_only(tiny_job_data, tmp_path):
    rows = [r for r in make_rows(50) if r["label"]]
    tiny_job_data["data"]["files"]["train"] = str(write_jsonl(tmp_path / "one.jsonl", rows))
    assert "has one class only ('true'" in refused(tiny_job_data)


def test_empty_split(tiny_job_data, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    tiny_job_data["data"]["files"]["validation"] = str(empty)
    assert f"the 'validation' split is empty (file:{empty})" in refused(tiny_job_data)


def test_label_word_that_tokenizes_to_nothing(tiny_job_data):
    tiny_job_data["prompt"]["labels"] = {"true": " yes", "false": "   \t"}
    # whitespace-only words are refused by the spec itself
    with pytest.raises(Exception, match="empty label word"):
        validate_job(tiny_job_data)
    # a word the tokenizer drops entirely (its normalizer removes control characters) is
    # refused once the tokenizer is known
    tiny_job_data["prompt"]["labels"] = {"true": " yes", "false": "\x07"}
    assert "label word '\\x07' for class 'false' tokenizes to nothing" in refused(tiny_job_data)


def test_label_word_unknown_to_the_tokenizer(tiny_job_data):
    tiny_job_data["prompt"]["labels"] = {"true": " yes", "false": " nope"}
    assert "label word ' nope' for class 'false' is unknown to this model's tokenizer" in refused(tiny_job_data)


def test_unsupported_file_type(tiny_job_data, tmp_path):
    bad = tmp_path / "data.txt"
    bad.write_text("x")
    tiny_job_data["data"]["files"]["train"] = str(bad)
    assert "unsupported type '.txt'" in refused(tiny_job_data)


def test_csv_and_parquet_files_load(tiny_job_data, tmp_path):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = make_rows(40)
    with (tmp_path / "t.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["passage", "question", "label"])
        writer.writeheader()
        writer.writerows({**r, "label": str(r["label"])} for r in rows)  # "True"/"False" text
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "v.parquet")
    tiny_job_data["data"]["files"] = {"train": str(tmp_path / "t.csv"), "validation": str(tmp_path / "v.parquet")}
    task = prepare_task(validate_job(tiny_job_data))
    assert len(task.train) == 40 and len(task.eval) == 40
    assert sorted(set(task.train.labels.tolist())) == [0, 1]


def test_single_file_holds_out_an_eval_split(tiny_job_data, tmp_path):
    path = write_jsonl(tmp_path / "all.jsonl", make_rows(100))
    tiny_job_data["data"] = {"name": str(path), "label_field": "label", "eval_fraction": 0.25}
    tiny_job_data["eval"]["limit"] = None
    task = prepare_task(validate_job(tiny_job_data))
    assert (len(task.train), len(task.eval)) == (75, 25)


def test_unquoted_yes_no_label_keys_get_the_quoting_fix(tiny_job_data, tmp_path):
    """`labels: {yes: " yes", no: " no"}` in YAML: the keys become true/false, and data labelled
    "yes"/"no" matched none of them; the refusal now says to quote the keys (issue 27)."""
    import yaml

    from budgetft.spec import load_job

    rows = [dict(r, label="yes" if r["label"] else "no") for r in make_rows(40)]
    tiny_job_data["data"]["files"]["train"] = str(write_jsonl(tmp_path / "yesno.jsonl", rows))
    tiny_job_data["data"]["files"]["validation"] = tiny_job_data["data"]["files"]["train"]
    text = yaml.safe_dump(tiny_job_data).replace("'true': ' yes'", "yes: ' yes'").replace("'false': ' no'", "no: ' no'")
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        prepare_task(load_job(path))
    msg = str(err.value)
    assert "YAML reads unquoted no, yes as true/false" in msg and "quote them in prompt.labels (e.g. 'yes': ' yes'" in msg


def test_a_csv_named_jsonl_and_random_bytes_say_what_the_file_is(tiny_job_data, tmp_path):
    (tmp_path / "rows.jsonl").write_text("passage,question,label\nthe sky,is it there,true\n")
    tiny_job_data["data"]["files"]["train"] = str(tmp_path / "rows.jsonl")
    msg = refused(tiny_job_data)
    assert "holds comma-separated text" in msg and "rename it to .csv" in msg and "could not be read" not in msg
    (tmp_path / "noise.jsonl").write_bytes(bytes(range(128, 256)) * 8)
    tiny_job_data["data"]["files"]["train"] = str(tmp_path / "noise.jsonl")
    msg = refused(tiny_job_data)
    assert "is not UTF-8 text (byte 0 is 0x80)" in msg and "check that this is the data file" in msg and "codec" not in msg
