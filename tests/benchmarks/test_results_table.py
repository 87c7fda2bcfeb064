"""benchmarks/results.md is written by benchmarks/dollar.py from run directories: one row per run,
a run tabulated again replaces its row, and the table reads back as it was written."""

import json
from pathlib import Path

import yaml

from tests.conftest import load_script


def _dollar():
    return load_script("benchmarks/dollar.py")


def _run(root: Path, run_id: str, threads: int, lift: float) -> Path:
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"run_id": run_id, "cap_usd": "0.250000", "started": "2026-12-07T20:00:00+00:00",
                                               "code": "abc1234", "hardware": {"cpus": 2}}))
    (root / "job.yaml").write_text(yaml.safe_dump({"seed": 1}))
    (root / "ledger.jsonl").write_text(json.dumps({"seq": 1, "ts": "2026-12-07T20:00:01+00:00", "category": "training", "description": "x",
                                                   "amount": "0.200000", "total": "0.200000", "cap": "0.250000", "trial": None, "key": None}) + "\n")
    (root / "plan.json").write_text(json.dumps({"rounds": [{"forecast": {"lift_points": 5.0, "low_points": 1.0, "high_points": 9.0}}]}))
    (root / "test.json").write_text(json.dumps({"winner": "t001-full", "rows": 942, "metrics": {"accuracy": 0.66},
                                                "majority": {"accuracy": 0.615}, "zero_shot": {"accuracy": 0.55},
                                                "vs_majority": {"lift_points": lift, "p_value": 0.004}}))
    trial = root / "trials" / "t001-full"
    trial.mkdir(parents=True)
    (trial / "trial.json").write_text(json.dumps({"trial_id": "t001-full", "steps": 1200, "threads": threads}))
    return root


def test_runs_become_rows_and_a_run_tabulated_again_replaces_its_own(tmp_path):
    dollar = _dollar()
    results = tmp_path / "results.md"
    idle = dollar.row(dollar.summary(_run(tmp_path / "a", "run-a", threads=2, lift=4.5)))
    busy = dollar.row(dollar.summary(_run(tmp_path / "b", "run-b", threads=1, lift=12.0)))
    dollar.write_results([idle, busy], results)
    rows = dollar.read_results(results)
    assert [r["run"] for r in rows] == ["run-a", "run-b"]
    assert rows[0]["setting"] == "idle" and rows[1]["setting"] == "busy (1 of 2 cores)"
    assert rows[0]["lift"] == "+4.5" and rows[0]["in range"] == "yes" and rows[1]["in range"] == "no"
    assert rows[0]["seed"] == "1" and rows[0]["code"] == "abc1234" and rows[0]["steps"] == "1,200"
    again = dict(idle, lift="+4.6")
    dollar.write_results([again], results)
    assert [r["lift"] for r in dollar.read_results(results)] == ["+4.6", "+12.0"]
