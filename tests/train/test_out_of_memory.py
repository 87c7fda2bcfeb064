"""Out of memory injected where a trial meets it: its load, its class-bias fit, an evaluation, a
step. The trial (and so the run) goes on, smaller, and says what shrank; a load that does not
fit ends the trial with the fix, and calibration drops that option, not the run."""

from __future__ import annotations

import pytest
import torch

from budgetft.methods import get
from budgetft.models import cache
from budgetft.scoring import class_bias
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from budgetft.train import loop as loop_module
from budgetft.train import steps
from budgetft.train.memory import OutOfMemoryAtLoad
from budgetft.train.trial import TrialSettings, run_trial


@pytest.fixture
def task(tiny_job_data):
    cache.release()
    yield prepare_task(validate_job(tiny_job_data))
    cache.release()


def once(real, when=lambda *a, **k: True):
    """real, raising torch.OutOfMemoryError the first time `when` holds."""
    state = {"raised": False}

    def wrapped(*args, **kwargs):
        if not state["raised"] and when(*args, **kwargs):
            state["raised"] = True
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(*args, **kwargs)

    return wrapped


def settings(task, steps_=4):
    s = TrialSettings.from_job(task, "lora", get("lora").config(), steps=steps_)
    s.eval_steps = [steps_]
    return s


def test_a_step_out_of_memory_halves_the_micro_batch_and_trains_on(task, monkeypatch):
    monkeypatch.setattr(steps, "accumulate", once(steps.accumulate, lambda *a, **k: a[3] > 4))
    result, _ = run_trial(task, settings(task))
    assert result.steps == 4 and result.evals
    assert {"what": "micro-batch", "at": 1, "from": 8, "to": 4} in result.memory["shrunk"]


def test_class_bias_fit_and_evaluation_out_of_memory_halve_their_batch(task, monkeypatch):
    monkeypatch.setattr(class_bias, "fit_on_training_rows", once(class_bias.fit_on_training_rows))
    monkeypatch.setattr(loop_module, "evaluate", once(loop_module.evaluate))
    result, _ = run_trial(task, settings(task))
    whats = [s["what"] for s in result.memory["shrunk"]]
    assert "class-bias batch" in whats and "evaluation batch" in whats
    assert result.class_bias is not None and result.evals[-1]["accuracy"] >= 0
    assert result.memory["placement"] == {"device": "cpu", "weight_dtype": "float32", "quantization": None}


def test_out_of_memory_at_load_ends_the_trial_with_the_fix(task, monkeypatch):
    def no_room(resolved, placement, read):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(cache, "load", no_room)
    with pytest.raises(OutOfMemoryAtLoad, match="qlora"):
        run_trial(task, settings(task))


def test_calibration_drops_the_option_that_runs_out_of_memory_and_goes_on(tiny_job_data, monkeypatch):
    from budgetft.stages import calibrate as stage

    job = validate_job({**tiny_job_data, "methods": {"lora": {}, "bitfit": {}}})
    tasks = {job.model.name: prepare_task(job)}
    real = stage.calibrate_method
    monkeypatch.setattr(stage, "calibrate_method", lambda task, method, steps=2, layout=None: (_ for _ in ()).throw(OutOfMemoryAtLoad("no room (injected)")) if method == "lora" else real(task, method, steps, layout))
    record = stage.calibrate(tasks, job, steps=1)
    assert set(record["methods"]) == {"bitfit"}
    assert "lora" in record["dropped"] and "out of memory" in record["dropped"]["lora"]
