"""`run` uses the memory plan on its GPU (faked: no GPU here, and no weights: Qwen2.5-1.5B's
configuration ships with budgetft): each option's micro-batch and checkpointing, QLoRA for a LoRA
that fits only on a 4-bit base, a job nothing fits refused before anything is spent, the
correction calibration measured, and an option whose model does not load dropped from the next
round. The worker applies a trial spec's layout and keeps what out of memory shrank in trial.json."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from budgetft.methods import get
from budgetft.models.placement import Placement
from budgetft.planner import inputs as planner_inputs
from budgetft.planner import memory_correction
from budgetft.planner.budget import MethodPlan, MethodRate, Plan
from budgetft.planner.memory_plan import NothingFits
from budgetft.planner.options import choices
from budgetft.rundir import PlanRecord, RunDir, TrialRecord
from budgetft.spec import load_job
from budgetft.stages import device_memory
from budgetft.stages.plan import load_failures, trial_specs

# Its module fixtures (a run, built once) stay on one test worker (pytest-xdist).
pytestmark = pytest.mark.xdist_group("memory_in_run")

JOB = Path(__file__).resolve().parents[2] / "jobs" / "qwen2.5-1.5b-boolq.yaml"
GPU = "NVIDIA Fake 16GB"


@pytest.fixture(scope="module")
def job():
    return load_job(JOB)


def a_gpu(monkeypatch, gigabytes: float) -> None:
    """This machine has one bf16 GPU of `gigabytes` GB (as torch would report it)."""
    for module in (device_memory, planner_inputs):
        monkeypatch.setattr(module, "device_type", lambda: "cuda")
        monkeypatch.setattr(module, "device_name", lambda: GPU)
        monkeypatch.setattr(module, "gpu_memory_bytes", lambda index=0: gigabytes * 1e9)
        monkeypatch.setattr(module, "placement_for", lambda device=None, quantization=None: Placement("cuda", "bfloat16"))


def lora_only(job):
    return [c for c in choices(job) if c.method == "lora"]


def test_on_a_24gb_gpu_lora_trains_in_16_bits_in_micro_batches_it_fits(job, monkeypatch):
    a_gpu(monkeypatch, 24)
    layouts, refused = device_memory.layouts(job, lora_only(job))
    layout = layouts["lora"]
    assert not refused and layout["method"] == "lora" and "converted_from" not in layout
    assert layout["micro_batch"] < 16 and layout["predicted_bytes"] <= 24e9  # the whole batch of 16 x 513 tokens does not fit


def test_on_a_4gb_gpu_lora_becomes_qlora(job, monkeypatch):
    a_gpu(monkeypatch, 4)
    layouts, _ = device_memory.layouts(job, lora_only(job))
    layout = layouts["lora"]
    assert (layout["method"], layout["quantization"], layout["converted_from"]) == ("qlora", "nf4", "lora")
    assert layout["sixteen_bit_bytes"] > 4e9 >= layout["predicted_bytes"]


def test_a_job_nothing_fits_is_refused_before_spending_with_the_smallest_gpu_that_would(job, monkeypatch):
    a_gpu(monkeypatch, 1)
    with pytest.raises(NothingFits, match=r"smallest GPU that would hold it: T4 16GB"):
        planner_inputs.budget_check({}, job, Decimal("10"), Decimal("0"), Decimal("1"))


def test_what_calibration_measured_scales_the_next_plan(job, monkeypatch):
    a_gpu(monkeypatch, 24)
    tight = device_memory.layouts(job, lora_only(job))[0]["lora"]["predicted_bytes"] * 1.05 / 1e9  # a GPU the first way just fits
    a_gpu(monkeypatch, tight)
    before = device_memory.layouts(job, lora_only(job))[0]["lora"]
    memory_correction.record(GPU, job.model.name, "lora", 1.0, 1.6)  # the GPU held 60% more than predicted
    after = device_memory.layouts(job, lora_only(job))[0]["lora"]
    assert before["scale"] == 1.0 and after["scale"] == 1.6
    assert (after["micro_batch"], after["checkpointing"]) != (before["micro_batch"], before["checkpointing"])
    assert after["predicted_bytes"] <= tight * 1e9


def test_trial_specs_carry_the_layout_and_a_converted_lora_runs_as_qlora(job, monkeypatch, tmp_path):
    a_gpu(monkeypatch, 4)
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    plan = Plan(Decimal("10"), Decimal("0"), Decimal("1"), 3, 1, [MethodPlan("lora", 2, 100, 10, [10, 30], 1.0, 1.0)], 0.0, 0.0,
                Decimal("1"), Decimal("1"), Decimal("0"))
    specs = trial_specs(job, run, plan, {"lora": MethodRate("lora", 1.0, 16.0, eval_seconds=5.0)})
    assert len(specs) == 2
    for spec in specs:
        assert spec["option"] == "lora" and spec["method"] == "qlora" and spec["trial_id"].endswith("-lora")
        assert spec["memory"]["converted_from"] == "lora" and spec["memory"]["micro_batch"] >= 1
        assert spec["config"]["r"] in (8, 16)


def test_a_cpu_gets_no_layout(job):
    assert device_memory.layouts(job, lora_only(job)) == ({}, {})


def test_an_option_whose_model_ran_out_of_memory_loading_is_dropped_from_the_next_round(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.write_plan(PlanRecord(round=1, trials=[{"trial_id": "t001-lora", "option": "lora"}, {"trial_id": "t002-bitfit", "option": "bitfit"}]))
    run.trial_dir("t001-lora").mkdir(parents=True)
    run.write_trial(TrialRecord(trial_id="t001-lora", method="lora", status="failed",
                                error="OutOfMemoryAtLoad: out of memory loading the model (cuda, bfloat16 weights): use a 4-bit base"))
    run.trial_dir("t002-bitfit").mkdir(parents=True)
    run.write_trial(TrialRecord(trial_id="t002-bitfit", method="bitfit", status="finished"))
    assert list(load_failures(run)) == ["lora"]


def test_the_worker_applies_the_layout_and_trial_json_keeps_what_shrank(tiny_job_data, tmp_path, monkeypatch):
    """A trial spec's layout reaches the trial (micro-batch, checkpointing) and trial.json says
    what out of memory halved while it ran, before its first evaluation."""
    import torch

    from budgetft.models import cache
    from budgetft.train import steps
    from budgetft.tune import worker as worker_module

    seen: dict = {}
    real = steps.accumulate

    def accumulate(model, task, idx, micro, *args, **kwargs):
        seen.setdefault("micro", micro)
        if micro > 2 and not seen.get("raised"):
            seen["raised"] = True
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(model, task, idx, micro, *args, **kwargs)

    monkeypatch.setattr(steps, "accumulate", accumulate)
    monkeypatch.setattr(worker_module, "wait_for_payment", lambda *a, **k: type("Verdict", (), {"ok": True, "reason": "", "by_cap": False})())
    saved: list[dict] = []
    monkeypatch.setattr(worker_module.Worker, "save", lambda self: saved.append(dict(self.record.memory or {}, shrunk=list((self.record.memory or {}).get("shrunk") or []))))
    monkeypatch.setattr(worker_module.Worker, "on_eval", lambda self, step, metrics: None)
    layout = {"micro_batch": 4, "checkpointing": True, "method": "lora", "predicted_bytes": 1e9, "memory_bytes": 16e9, "scale": 1.0}
    spec = {"trial_id": "t001-lora", "method": "lora", "config": get("lora").config(), "max_steps": 2,
            "grace": 1, "eval_steps": [], "memory": layout}
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    record = TrialRecord(trial_id="t001-lora", method="lora", max_steps=2)
    worker = worker_module.Worker(spec, {"run_dir": str(run.root), "job": tiny_job_data, "threads": 1}, run, record)
    worker.folder.mkdir(parents=True)
    cache.release()
    try:
        worker_module._train(worker)
    finally:
        cache.release()
    assert seen["micro"] == 4  # the layout's micro-batch, not the job's batch of 8
    memory = record.memory
    assert memory["checkpointing"] is True and memory["planned_micro_batch"] == 4 and memory["batch"] == 8
    assert memory["shrunk"] == [{"what": "micro-batch", "at": 1, "from": 4, "to": 2}] and memory["micro_batch"] == 2
    assert any(s["shrunk"] for s in saved[:-1])  # written when it happened, not only at the end
