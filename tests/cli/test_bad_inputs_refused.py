"""Data and job errors are refusals before any spend: exit 2 and one plain line, never "the run
failed unexpectedly" (issue 27); a tampered ledger is refused in one line, without a traceback."""

import json
import os

import pytest
import yaml
from typer.testing import CliRunner

from budgetft.cli import app
from tests.conftest import make_rows, write_jsonl

runner = CliRunner()


def _rows(tmp_path, name, rows):
    return str(write_jsonl(tmp_path / name, rows))


def _file(tmp_path, name, data: bytes):
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


BAD_DATA = {
    "a missing data file": (lambda tmp, d: d["files"].update(train=str(tmp / "nowhere.jsonl")), "data file not found"),
    "a directory as data": (lambda tmp, d: d["files"].update(train=str(tmp)), "is a directory"),
    "no label column": (lambda tmp, d: d["files"].update(train=_rows(tmp, "nolabel.jsonl", [{"passage": "a", "question": "b"}] * 20)),
                        "has no label field 'label'"),
    "a label outside the map": (lambda tmp, d: d["files"].update(train=_rows(tmp, "maybe.jsonl", make_rows(40) + [{"passage": "a", "question": "b", "label": "maybe"}])),
                                "labels not in prompt.labels: 'maybe'"),
    "one class only": (lambda tmp, d: d["files"].update(train=_rows(tmp, "one.jsonl", [dict(r, label=True) for r in make_rows(40)])), "one class only"),
    "an empty evaluation split": (lambda tmp, d: d["files"].update(validation=_rows(tmp, "empty.jsonl", [])), "split is empty"),
    "a CSV inside a .jsonl": (lambda tmp, d: d["files"].update(train=_file(tmp, "csv.jsonl", b"passage,question,label\na b,is it,true\n")),
                              "holds comma-separated text"),
    "random bytes": (lambda tmp, d: d["files"].update(train=_file(tmp, "rand.jsonl", bytes([0xAD, 0xC1, 0x07, 0xFE]) * 64)), "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_every_data_error_exits_2_before_any_spend(tiny_job_data, tmp_path, case):
    mutate, words = BAD_DATA[case]
    mutate(tmp_path, tiny_job_data["data"])
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job_data))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(job), "--budget", "2", "--price-per-hour", "36", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert words in result.output and "unexpectedly" not in result.output and "Traceback" not in result.output
    assert not (out / "ledger.jsonl").exists() and not out.exists()  # nothing spent, nothing left behind


def test_a_tampered_ledger_is_refused_in_one_line(tiny_job_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "job.yaml").write_text(tiny_job_file.read_text())
    (out / "run.json").write_text(json.dumps({"status": "interrupted", "cap_usd": "2", "price_per_hour": "36"}))
    lines, total = [], 0
    for seq, amount in enumerate(["0.010000", "0.020000", "0.030000"], start=1):
        total += float(amount)
        lines.append(json.dumps({"seq": seq, "ts": "2026-01-01T00:00:00Z", "category": "training", "description": "x", "trial": None, "key": None,
                                 "amount_usd": amount, "total_usd": f"{total:.6f}", "cap_usd": "2.000000"}))
    edited = json.loads(lines[1])
    edited["amount_usd"] = "0.001000"  # one amount edited by hand
    lines[1] = json.dumps(edited)
    (out / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    before = (out / "ledger.jsonl").read_bytes()
    result = runner.invoke(app, ["run", "--resume", str(out)])
    assert result.exit_code == 2, result.output
    assert "line 2 breaks the chain" in result.output and "a run never continues on a ledger it cannot trust" in result.output
    assert "Traceback" not in result.output and (out / "ledger.jsonl").read_bytes() == before
    assert sum(1 for line in result.output.splitlines() if line.startswith("error:")) == 1


def test_a_read_only_out_is_refused_before_any_work(tiny_job_file, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere; tests/test_runlock.py covers the refusal with a refused open")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        result = runner.invoke(app, ["run", str(tiny_job_file), "--budget", "2", "--price-per-hour", "36", "--out", str(ro / "run")])
        assert result.exit_code == 2 and "cannot be written" in result.output
    finally:
        ro.chmod(0o755)
