"""The driver's follower: trials' records and event files become tracker calls; a trial's record
closes once it is settled and its curves are closed (or a grace period after a worker died); a
resumed run goes on from where the last session stopped, sending nothing twice."""

from budgetft.rundir import RunDir, TrialRecord
from budgetft.track.backend import Backend
from budgetft.track.follow import GRACE_S, TrialFollower
from budgetft.track.trackers import Trackers
from tests.track.test_event_files import write_trial


class Recorder(Backend):
    name = "recorder"

    def __init__(self):
        self.calls = []

    def trial_started(self, trial):
        self.calls.append(("started", trial.trial_id, dict(trial.params), dict(trial.tags)))

    def log(self, points, trial_id):
        self.calls.append(("log", trial_id, [(p.step, p.name) for p in points]))

    def trial_ended(self, trial_id, status, final, tags):
        self.calls.append(("ended", trial_id, status, dict(final), dict(tags)))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def follow(run, backend, state=None, clock=None):
    trackers = Trackers([backend])
    return trackers, TrialFollower(run, trackers, state, tags={"budgetft.cap_usd": "1.00"}, clock=clock or Clock())


def test_a_trial_is_opened_followed_and_closed(tmp_path):
    run = RunDir(tmp_path)
    record = TrialRecord(trial_id="t001-lora", method="lora", config={"r": 8, "learning_rate": 1e-3}, max_steps=12, status="running")
    run.write_trial(record)
    backend = Recorder()
    trackers, follower = follow(run, backend)
    follower.poll()
    assert trackers.wait_idle(30)
    started = backend.calls[0]
    assert started[:2] == ("started", "t001-lora")
    assert started[2]["method"] == "lora" and started[2]["config.r"] == "8" and started[3]["budgetft.cap_usd"] == "1.00"
    write_trial(tmp_path)  # the worker's curves, closed
    follower.poll()  # still running: its points pass, its record stays open
    assert trackers.wait_idle(30)
    steps = [s for call in backend.calls if call[0] == "log" and call[1] == "t001-lora" for s, name in call[2] if name == "train/loss"]
    assert steps == list(range(1, 13)) and not any(c[0] == "ended" for c in backend.calls)
    record.status, record.steps, record.evals = "finished", 12, [{"step": 10, "accuracy": 0.6, "balanced_accuracy": 0.55}]
    run.write_trial(record)
    follower.poll()
    assert trackers.close(30)
    ended = [c for c in backend.calls if c[0] == "ended"]
    assert len(ended) == 1 and ended[0][2] == "finished"
    assert ended[0][3]["best/accuracy"] == 0.6 and ended[0][3]["steps"] == 12 and ended[0][4]["budgetft.status"] == "finished"


def test_a_worker_that_died_is_closed_after_the_grace_period(tmp_path):
    run = RunDir(tmp_path)
    run.write_trial(TrialRecord(trial_id="t001-lora", method="lora", max_steps=12, status="failed", error="killed"))
    backend, clock = Recorder(), Clock()
    trackers, follower = follow(run, backend, clock=clock)
    follower.poll()  # settled, but its curves were never closed: wait for them
    clock.now += GRACE_S - 1
    follower.poll()
    assert trackers.wait_idle(30) and not any(c[0] == "ended" for c in backend.calls)
    clock.now += 2
    follower.poll()
    assert trackers.close(30)
    ended = [c for c in backend.calls if c[0] == "ended"]
    assert len(ended) == 1 and ended[0][2] == "failed" and ended[0][4]["budgetft.error"] == "killed"


def test_a_resumed_run_sends_nothing_twice(tmp_path):
    run = RunDir(tmp_path)
    run.write_trial(TrialRecord(trial_id="t001-lora", method="lora", max_steps=12, status="running"))
    write_trial(tmp_path)
    first = Recorder()
    trackers, follower = follow(run, first)
    follower.poll()
    assert trackers.close(30)
    state = follower.state()
    second = Recorder()
    trackers, follower = follow(run, second, state)
    follower.poll()
    assert trackers.close(30)
    assert not any(c[0] in ("started", "log") and c[1] == "t001-lora" for c in second.calls)
    assert any(c[0] == "log" and c[1] == "t001-lora" for c in first.calls)
