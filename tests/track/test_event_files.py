"""A trial's TensorBoard curves: written off the paid path by its worker's callbacks, read back by
TensorBoard's own reader, and read incrementally (a record cut short is read once it is whole)."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from budgetft.files import read_json
from budgetft.track.events import EventsReader, scalars_from
from budgetft.track.tensorboard import CURVES_NOTES, TrialCurves, trial_events_dir


@dataclass
class Log:  # the fields of budgetft.train.settings.StepLog that the curves read
    step: int
    loss: float
    examples_per_s: float
    lr: float


def write_trial(run_root: Path, trial_id: str = "t001-lora", steps: int = 12, evals=(5, 10)) -> Path:
    folder = run_root / "trials" / trial_id
    folder.mkdir(parents=True, exist_ok=True)
    ledger = run_root / "ledger.jsonl"
    ledger.write_text('{"seq": 1, "total_usd": "0.012500"}\n{"seq": 2, "total_usd": "0.025000"}\n')
    curves = TrialCurves.for_trial(run_root, trial_id, folder, ledger, {"method": "lora", "r": 8})
    for step in range(1, steps + 1):
        curves.step(Log(step, 1.0 / step, 10.0 + step, 1e-3 * step))
        if step in evals:
            curves.evaluated(step, {"accuracy": 0.5 + step / 100, "balanced_accuracy": 0.5, "eval_loss": 0.7, "accuracy_ci95": [0.4, 0.7],
                                    "macro_f1": 0.5, "correct": [True, False], "cost_usd": "0.01"})
    curves.close(wait_s=60)
    return folder


def test_tensorboard_reads_every_step_and_evaluation(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = write_trial(tmp_path)
    notes = read_json(folder / CURVES_NOTES)
    assert notes["closed"] is True and notes["tensorboard"]["dropped"] == 0
    events = EventAccumulator(str(trial_events_dir(tmp_path, "t001-lora")))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "train/examples_per_s", "eval/accuracy", "eval/balanced_accuracy", "eval/loss",
            "eval/accuracy_ci95_low", "spend/trial_usd", "spend/run_usd"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 13))
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("eval/accuracy")] == [(5, 0.55), (10, 0.6)]
    assert events.Scalars("spend/run_usd")[0].value == pytest.approx(0.025)  # the ledger's running total
    assert "trial/text_summary" in events.Tags()["tensors"]  # the method and its configuration, as text


def test_the_reader_takes_whole_records_only_and_goes_on_from_its_offset(tmp_path):
    write_trial(tmp_path)
    path = next(trial_events_dir(tmp_path, "t001-lora").glob("events.out.tfevents.*"))
    whole = path.read_bytes()
    everything, end = scalars_from(path)
    assert end == len(whole) and [p.step for p in everything if p.name == "train/loss"] == list(range(1, 13))
    # The file as a writer leaves it mid-record: what is whole is read, the rest waits.
    path.write_bytes(whole[:-7])
    first, offset = scalars_from(path)
    assert 0 < len(first) < len(everything) and offset < len(whole) - 7
    path.write_bytes(whole)
    rest, offset = scalars_from(path, offset)
    assert first + rest == everything and offset == len(whole)
    reader = EventsReader(path.parent)
    assert reader.read_new() == everything and reader.read_new() == []


def test_a_stalled_disk_never_holds_up_a_step(tmp_path, monkeypatch):
    """Writes that block (a disk that hangs) leave every step free to go on; the curves wait
    for them only at close, and at most as long as they are told."""
    import threading

    blocked = threading.Event()
    real_write = TrialCurves._write

    def stalled(self, points):
        blocked.wait()
        real_write(self, points)

    monkeypatch.setattr(TrialCurves, "_write", stalled)
    folder = tmp_path / "trials" / "t001-lora"
    folder.mkdir(parents=True)
    curves = TrialCurves.for_trial(tmp_path, "t001-lora", folder, tmp_path / "ledger.jsonl", {})
    for step in range(1, 201):
        curves.step(Log(step, 0.5, 10.0, 1e-3))  # each returns at once: the write waits, not the step
    assert not blocked.is_set()
    blocked.set()
    curves.close(wait_s=60)
    assert read_json(folder / CURVES_NOTES)["tensorboard"]["dropped"] == 0
    points, _ = scalars_from(next(trial_events_dir(tmp_path, "t001-lora").glob("events.out.tfevents.*")))
    assert [p.step for p in points if p.name == "train/loss"] == list(range(1, 201))
