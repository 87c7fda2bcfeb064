"""With a GPU present (faked: no GPU here), every stage that runs a model loads it on the trials'
device and in their dtype: a spy on the one place models are made (budgetft.models.cache.load)."""

from __future__ import annotations

import pytest
import torch

from budgetft.methods import get
from budgetft.models import cache
from budgetft.models.placement import Placement
from budgetft.spec import validate_job
from budgetft.task import prepare_task

GPU = Placement("cuda", "bfloat16")


@pytest.fixture
def on_a_gpu(monkeypatch):
    """torch sees an A100 (compute capability 8.0); models are still built on this CPU, and
    moving one to the 'GPU' is a no-op, so that every stage's choice is what the spy sees."""
    import peft.tuners.lora  # noqa: F401 - imported (and bitsandbytes with it) before torch "sees" a GPU

    seen: list = []
    real = cache.load

    def spy(resolved, placement, read):
        seen.append(placement)
        return real(resolved, Placement("cpu", "float32"), read)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(cache, "load", spy)
    monkeypatch.setattr(Placement, "move", lambda self, model: model)
    cache.release()
    yield seen
    cache.release()


def test_every_stage_loads_on_the_trials_device_and_dtype(tiny_job_data, tmp_path, on_a_gpu):
    from budgetft.stages.baselines import run_baselines
    from budgetft.stages.calibrate import eval_rate
    from budgetft.stages.test import score_untuned_on
    from budgetft.train.trial import TrialSettings, run_trial
    from budgetft.use.bridge import load_trained_model

    job = validate_job({**tiny_job_data, "eval": {"limit": 30, "batch_size": 16, "test_rows": 20}})
    task = prepare_task(job)
    run_baselines(prepare_task(validate_job(tiny_job_data)))  # the zero-shot pass (no test rows)
    eval_rate(task)  # calibration's scoring probe
    settings = TrialSettings.from_job(task, "lora", get("lora").config(), steps=2)
    settings.eval_steps = []
    result, model = run_trial(task, settings)  # a trial
    assert result.memory["placement"] == GPU.to_dict()
    score_untuned_on(task)  # the held-out test's untuned model
    from budgetft.train.persist import save_trained

    save_trained(model, "lora", settings.config, tmp_path / "w")
    load_trained_model(task.model, "lora", settings.config, tmp_path / "w", None, 0)  # predict / export
    assert on_a_gpu and all(p == GPU for p in on_a_gpu), on_a_gpu
    assert len(on_a_gpu) >= 5


def test_a_qlora_trial_asks_for_a_4bit_base(tiny_job_data, on_a_gpu):
    from budgetft.train.trial import TrialSettings, run_trial

    task = prepare_task(validate_job({**tiny_job_data, "methods": {"qlora": {}}}))
    settings = TrialSettings.from_job(task, "qlora", get("qlora").config(), steps=1)
    settings.eval_steps, settings.class_bias = [], "none"
    run_trial(task, settings)
    assert on_a_gpu[-1] == Placement("cuda", "bfloat16", "nf4")
