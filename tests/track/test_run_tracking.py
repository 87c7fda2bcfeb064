"""A run's tracking at its end: it waits for the trackers only as long as it is given (what the
cap still pays for), drops what is left, and writes down what was lost."""

import json
import threading

from budgetft.rundir import RunDir, RunInfo
from budgetft.track import run_tracking
from budgetft.track.backend import Backend
from budgetft.track.run_tracking import RunTracking, run_facts


class Hanging(Backend):
    """A tracker whose server stops answering as the run ends."""

    name = "hanging"

    def __init__(self, release: threading.Event):
        self.release, self.calls = release, []

    def start(self, run):
        self.calls.append("start")

    def summary(self, scalars, texts):
        self.calls.append("summary")
        self.release.wait()

    def finish(self, status):
        self.calls.append("finish")


def test_the_last_wait_is_bounded_and_what_it_drops_is_recorded(tmp_path, monkeypatch):
    release = threading.Event()
    hanging = Hanging(release)
    monkeypatch.setattr(run_tracking, "remote_backends", lambda *args, **kwargs: [hanging])
    run = RunDir(tmp_path)
    run.write_run(RunInfo(run_id="run-1", job="tiny", cap_usd="1.000000", price_per_hour="1", device="CPU", hardware={"cpus": 2}))
    tracking = RunTracking(run, [], run_facts(run, run.run(), {"name": "tiny"})).start()
    try:
        line = tracking.finish("finished", seconds=0.2)  # returns though the summary call never does
        assert hanging.calls[:2] == ["start", "summary"] and "finish" not in hanging.calls
        assert "hanging: 1 dropped" in line and str(run.root / "tracking.json") in line
        record = json.loads((run.root / "tracking.json").read_text())
        assert record["finished"] is True and record["notes"]["hanging"]["dropped"] == 1
        assert "1 queued call (closing the run's record) dropped: the run stopped waiting" in record["notes"]["hanging"]["messages"][0]
    finally:
        release.set()


def test_the_run_is_described_by_its_cap_price_and_hardware(tmp_path):
    run = RunDir(tmp_path)
    info = RunInfo(run_id="run-1", job="tiny", budget_usd="1.00", cap_usd="1.000000", price_per_hour="2.86", price_source="catalogue",
                   device="Tesla V100", hardware={"cpus": 8, "platform": "Linux"}, budgetft_version="0.1.0")
    facts = run_facts(run, info, {"name": "tiny", "model": {"name": "m"}, "data": {"name": "d", "label_field": "label"},
                                  "methods": {"lora": {}, "ia3": {}}, "seed": 0, "train": {"batch_size": 8}})
    assert facts.run_id == "run-1" and facts.kind == "run"
    assert facts.tags["budgetft.cap_usd"] == "1.000000" and facts.tags["budgetft.price_per_hour_usd"] == "2.86"
    assert facts.tags["budgetft.hardware"] == "Tesla V100; 8 CPUs; Linux"
    assert facts.params["methods"] == '["lora", "ia3"]' and facts.params["train.batch_size"] == "8" and facts.params["budget_usd"] == "1.00"
