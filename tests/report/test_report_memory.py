"""The report names what the memory plan changed and what out of memory shrank or dropped
(trial.json "memory", calibration.json "dropped": budgetft/report/memory.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from budgetft.report import render

FIXTURE = Path(__file__).parent / "fixtures" / "recorded_run"


def test_the_report_names_a_qlora_conversion_checkpointing_each_halving_and_each_dropped_option(tmp_path):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    trial = run / "trials" / "lora-000" / "trial.json"
    data = json.loads(trial.read_text())
    data["memory"] = {
        "method": "qlora", "converted_from": "lora", "sixteen_bit_bytes": 19.0e9, "predicted_bytes": 13.4e9, "memory_bytes": 16.0e9,
        "checkpointing": True, "planned_micro_batch": 4, "batch": 16, "micro_batch": 2,
        "shrunk": [{"what": "micro-batch", "at": 12, "from": 4, "to": 2}, {"what": "evaluation batch", "at": 50, "from": 16, "to": 8}],
    }
    trial.write_text(json.dumps(data))
    (run / "calibration.json").write_text(json.dumps({"methods": {}, "dropped": {"bitfit": "out of memory in calibration on NVIDIA T4 (OutOfMemoryError: injected)"}}))

    markdown = render(run, "md")
    assert "### Memory: what the plan changed, and what shrank or was dropped" in markdown
    assert "lora-000 ran as QLoRA (a 4-bit NF4 base)" in markdown and "16-bit lora needs 19.0 GB" in markdown
    assert "micro-batches of 4 rows (of 16 a step) and activation checkpointing" in markdown
    assert "lora-000 ran out of memory at step 12: its micro-batch was halved from 4 to 2" in markdown
    assert "its evaluation batch was halved from 16 to 8" in markdown
    assert "option bitfit was dropped before its trials: out of memory in calibration on NVIDIA T4" in markdown

    document = json.loads(render(run, "json"))
    assert document["memory"]["dropped"] == {"bitfit": "out of memory in calibration on NVIDIA T4 (OutOfMemoryError: injected)"}
    assert len(document["memory"]["lines"]) == 5
    row = next(t for t in document["trials"] if t["id"] == "lora-000")
    assert row["memory"]["shrunk"][0] == {"what": "micro-batch", "at": 12, "from": 4, "to": 2}


def test_a_cpu_run_has_no_memory_lines(tmp_path):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    assert "### Memory" not in render(run, "md")
    assert json.loads(render(run, "json"))["memory"] == {"dropped": {}, "lines": []}
