"""Where weights live (budgetft.models.placement) and the process's held model (budgetft.models.cache)."""

from __future__ import annotations

import pytest
import torch

from budgetft.methods import get
from budgetft.models import cache
from budgetft.models.loading import load_model
from budgetft.models.placement import Placement, placement_for
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from budgetft.train.trial import TrialSettings, run_trial


@pytest.fixture
def task(tiny_job_data):
    cache.release()
    yield prepare_task(validate_job(tiny_job_data))
    cache.release()


@pytest.mark.parametrize("capability, dtype", [((8, 0), "bfloat16"), ((9, 0), "bfloat16"), ((7, 5), "float16"), ((6, 1), "float32")])
def test_a_gpu_keeps_its_weights_in_its_training_dtype(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert placement_for(torch.device("cuda")) == Placement("cuda", dtype)


def test_a_cpu_keeps_fp32_weights_and_a_4bit_base_computes_in_16_bits():
    assert placement_for(torch.device("cpu")) == Placement("cpu", "float32")
    assert placement_for(torch.device("cpu"), "nf4") == Placement("cpu", "bfloat16", "nf4")


def test_a_workers_second_trial_of_the_same_model_reads_no_weights(task):
    before = cache.READS["count"]
    fresh = {k: v.clone() for k, v in load_model(task.model).state_dict().items()}
    assert cache.READS["count"] == before + 1
    # Full fine-tuning trains the base's own tensors in place: the held weights must not move.
    run_trial(task, TrialSettings.from_job(task, "full", get("full").config({"learning_rate": 1e-2}), steps=3))
    run_trial(task, TrialSettings.from_job(task, "lora", get("lora").config(), steps=2))
    assert cache.READS["count"] == before + 1  # both trials, and the load above: one read
    again = load_model(task.model).state_dict()
    assert all(torch.equal(again[k], v) for k, v in fresh.items())


def test_a_held_model_is_handed_out_as_if_read_again(task):
    torch.manual_seed(3)
    first = load_model(task.model)
    after_first = torch.rand(1)
    torch.manual_seed(3)
    second = load_model(task.model)
    assert torch.equal(torch.rand(1), after_first)  # what follows the load draws alike
    assert first is not second
    p1, p2 = next(first.parameters()), next(second.parameters())
    assert p1 is not p2 and p1.data_ptr() == p2.data_ptr()  # new parameters, the same weights
