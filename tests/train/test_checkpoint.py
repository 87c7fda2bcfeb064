"""A trial checkpoints its whole training state and goes on from it as if it had never stopped
(issue 27, point 3): the weights, AdamW's moments, the schedule, the data order and the random
state (dropout) all come back, so a trial interrupted at step 12 and continued ends with the
weights of the trial that never stopped."""

import pytest
import torch

from budgetft.methods import get
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from budgetft.train import checkpoint
from budgetft.train.trial import TrialSettings, run_trial


@pytest.fixture
def task(tiny_job_data):
    return prepare_task(validate_job(tiny_job_data))


def _settings(task, steps=20):
    config = get("lora").config({"r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "learning_rate": 5e-3})
    settings = TrialSettings.from_job(task, "lora", config, steps=steps)
    settings.eval_steps = [steps]
    return settings


def _trained(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_a_trial_continued_from_its_checkpoint_ends_as_if_it_never_stopped(task, tmp_path):
    # Uninterrupted, checkpointing every 6 steps (the checkpoints must not change the training).
    written = []

    def keep(step, end, model, optimizer, scheduler, schedule):
        checkpoint.save(tmp_path / "whole", model, "lora", _settings(task).config, optimizer, scheduler, schedule, step=step, end=end, examples=step * 8)
        written.append(step)

    whole, whole_model = run_trial(task, _settings(task), checkpoint=(6, keep))
    assert written == [6, 12, 18]

    # Interrupted after step 14 (the last checkpoint at 12), then continued from it.
    def stop_after(limit):
        return lambda what: what != "step" or stop_after.steps < limit

    def count(log):
        stop_after.steps = log.step

    stop_after.steps = 0

    def keep_part(step, end, model, optimizer, scheduler, schedule):
        checkpoint.save(tmp_path / "part", model, "lora", _settings(task).config, optimizer, scheduler, schedule, step=step, end=end, examples=step * 8)

    part, _ = run_trial(task, _settings(task), on_step=count, may_continue=stop_after(14), checkpoint=(6, keep_part))
    assert part.steps == 14 and part.stop_reason
    found = checkpoint.find(tmp_path / "part")
    assert found is not None and checkpoint.load(found)["step"] == 12

    steps = []
    rest, rest_model = run_trial(task, _settings(task), on_step=lambda log: steps.append(log.step), resume_from=found)
    assert steps == list(range(13, 21))  # only the steps still to run
    assert rest.steps == 20 and rest.final["accuracy"] == whole.final["accuracy"]
    a, b = _trained(whole_model), _trained(rest_model)
    assert a.keys() == b.keys() and all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)


def test_a_kill_mid_write_leaves_the_previous_checkpoint(task, tmp_path, monkeypatch):
    from budgetft.train import persist

    saved = []

    def keep(step, end, model, optimizer, scheduler, schedule):
        if step == 10:  # the second checkpoint dies half-written (a kill, a full disk)
            monkeypatch.setattr(checkpoint, "save_trained", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
        try:
            checkpoint.save(tmp_path, model, "lora", _settings(task).config, optimizer, scheduler, schedule, step=step, end=end, examples=0)
            saved.append(step)
        except OSError:
            pass
        monkeypatch.setattr(checkpoint, "save_trained", persist.save_trained)

    run_trial(task, _settings(task, steps=12), checkpoint=(5, keep))
    assert saved == [5]
    assert checkpoint.load(checkpoint.find(tmp_path))["step"] == 5
    assert not any(p.name.startswith(".checkpoint.new") for p in tmp_path.iterdir())


def test_which_methods_can_go_on_from_a_checkpoint():
    assert checkpoint.continuable("lora") and checkpoint.continuable("full") and checkpoint.continuable("prompt_tuning")
    assert not checkpoint.continuable("pet") and not checkpoint.continuable("adalora") and not checkpoint.continuable("no-such-method")
