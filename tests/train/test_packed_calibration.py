"""Packing in a run: the trials-per-GPU decision from calibration figures, the resources Ray
gets from it, and packed calibration's workers (run for real on the CPU: the barrier, the
overlapping timed steps and the summed throughput do not need a GPU)."""

from datetime import datetime, timedelta, timezone

import pytest

from budgetft.planner.costs import tuning_resources
from budgetft.train.packing_probe import alone_level, calibrate_packing, measure_level, window_figures

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
GPU_MB = 23_034.0  # an L4


def nvml(second: int, util: float, used_mb: float, processes: dict | None = None) -> dict:
    ts = (T0 + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
    return {"ts": ts, "source": "nvml", "cpu_pct": 30.0, "processes": processes or {},
            "devices": [{"index": 0, "name": "NVIDIA L4", "util_pct": util, "mem_used_mb": used_mb, "mem_total_mb": GPU_MB}]}


def result(examples_per_s: float, peak_mb: float) -> dict:
    return {"examples_per_s": examples_per_s, "peak_memory_mb": peak_mb, "window": [0.0, 10.0]}


def test_window_figures_prefer_the_watched_processes_memory():
    samples = [nvml(0, 40, 9000, {"pack-0": 3000, "pack-1": 3100, "driver": 800}), nvml(1, 60, 9500, {"pack-0": 3200, "pack-1": 3100})]
    figures = window_figures(samples, {"pack-0", "pack-1"})
    assert figures == {"peak_mem_mb": 6300, "mean_util_pct": 50.0}
    # Without per-process figures: the device's memory in use, which can only overstate.
    assert window_figures([nvml(0, 40, 9000)], {"pack-0"})["peak_mem_mb"] == 9000
    assert window_figures([{"ts": "x", "source": "cpu", "devices": []}]) == {"peak_mem_mb": None, "mean_util_pct": None}


def test_alone_level_falls_back_to_torch_memory_without_nvml():
    assert alone_level(result(12.0, 2500.0), []) == {"trials": 1, "examples_per_s_total": 12.0, "peak_mem_mb": 2500.0, "mean_util_pct": None}


def test_a_busy_gpu_is_not_packed_and_nothing_more_is_measured():
    measured = []
    decision = calibrate_packing({"lora": result(20.0, 3000.0)}, GPU_MB, lambda a, b: [nvml(0, 95, 3000)] * 3,
                                 lambda name, k: measured.append(k))
    assert measured == [] and decision["trials_per_gpu"] == 1 and decision["gpu_fraction"] == 1.0
    assert "keeps the GPU busy" in decision["reason"]


def test_packing_is_chosen_when_the_measured_levels_favour_it_and_stops_when_they_do_not():
    levels = {2: {"trials": 2, "examples_per_s_total": 17.0, "peak_mem_mb": 6200, "mean_util_pct": 80},
              3: {"trials": 3, "examples_per_s_total": 17.5, "peak_mem_mb": 9300, "mean_util_pct": 85},
              4: {"trials": 4, "examples_per_s_total": 30.0, "peak_mem_mb": 12400, "mean_util_pct": 90}}
    measured = []

    def measure(name, k):
        measured.append((name, k))
        return levels[k]

    # IA3 needs more memory than BitFit: it bounds the packing and is the one measured.
    results = {"bitfit": result(9.0, 2000.0), "ia3": result(10.0, 3000.0)}
    decision = calibrate_packing(results, GPU_MB, lambda a, b: [nvml(0, 45, 3100)] * 3, measure)
    assert measured == [("ia3", 2), ("ia3", 3)]  # 3 barely beat 2: 4 is not tried
    assert decision["trials_per_gpu"] == 2 and decision["gpu_fraction"] == 0.5 and decision["method"] == "ia3"
    assert "+70%" in decision["reason"]


def test_packing_that_does_not_pay_keeps_one_trial_per_gpu():
    decision = calibrate_packing({"lora": result(10.0, 3000.0)}, GPU_MB, lambda a, b: [nvml(0, 50, 3100)] * 3,
                                 lambda name, k: {"trials": k, "examples_per_s_total": 10.5, "peak_mem_mb": 6000, "mean_util_pct": 70})
    assert decision["trials_per_gpu"] == 1 and "did not pay" in decision["reason"]


@pytest.mark.parametrize(
    "packing, cpus, gpus, expected",
    [
        (None, 2, 0, (1, {"cpu": 2, "gpu": 0.0})),
        (None, 16, 1, (1, {"cpu": 16, "gpu": 1.0})),
        ({"trials_per_gpu": 3, "gpu_fraction": 0.3333}, 16, 1, (3, {"cpu": 5, "gpu": 0.3333})),
        ({"trials_per_gpu": 2, "gpu_fraction": 0.5}, 16, 2, (4, {"cpu": 4, "gpu": 0.5})),
        ({"trials_per_gpu": 1, "gpu_fraction": 1.0}, 8, 2, (2, {"cpu": 4, "gpu": 1.0})),
    ],
)
def test_tuning_resources_follow_the_packing_decision(packing, cpus, gpus, expected):
    assert tuning_resources(packing, cpus, gpus) == expected


def test_packed_workers_start_together_and_their_throughput_adds_up(tiny_job_data):
    """Two real calibration workers on the tiny model: both wait at the barrier, both report,
    and the level's throughput is the sum of theirs."""
    from budgetft.spec import validate_job

    tiny_job_data["train"]["train_limit"] = 32
    job = validate_job(tiny_job_data).model_dump(mode="json")
    watched = []
    level = measure_level(job, "bitfit", 2, 1, lambda a, b: [nvml(0, 55, 4000, {"pack-0": 1000, "pack-1": 1100})], watched.append)
    assert "error" not in level, level
    assert level["trials"] == 2 and level["examples_per_s_total"] > 0
    assert level["peak_mem_mb"] == 2100 and level["mean_util_pct"] == 55
    assert set(watched[0]) == {"pack-0", "pack-1"} and watched[-1] == {}


def test_a_failing_worker_fails_its_level_not_the_run(tiny_job_data):
    from budgetft.spec import validate_job

    job = validate_job(tiny_job_data).model_dump(mode="json")
    level = measure_level(job, "no_such_method", 2, 1, lambda a, b: [])
    assert level["examples_per_s_total"] == 0.0 and "no_such_method" in level["error"]


def test_a_failing_worker_ends_its_siblings_at_once():
    """A worker that dies before the barrier must not leave the others waiting out the
    barrier's timeout (ten minutes)."""
    import subprocess
    import sys
    import time

    from budgetft.train.packing_probe import _wait_all

    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], stderr=subprocess.PIPE, text=True)
    failing = subprocess.Popen([sys.executable, "-c", "raise SystemExit('cannot load the model')"], stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    assert _wait_all([waiting, failing], 600) == ["cannot load the model"]
    assert time.time() - t0 < 30 and waiting.returncode < 0


def test_concurrent_tokenizers_share_the_cache_safely(tiny_job_data, monkeypatch):
    """Trials that start together tokenize the same rows at once. Here a second writer finishes
    the same cache entry while the first is between writing its temporary file and moving it
    into place (a shared temporary name once made the first crash there)."""
    import numpy as np

    from budgetft.data import encode
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task

    job = validate_job(tiny_job_data)
    real_savez = np.savez
    nested = []

    def savez_then_another_writer(path, **arrays):
        real_savez(path, **arrays)
        if not nested:
            nested.append(True)
            prepare_task(job)  # the other trial: writes and moves the same entry now

    monkeypatch.setattr(encode.np, "savez", savez_then_another_writer)
    task = prepare_task(job)
    assert nested and len(task.train) > 0
    assert not list((encode.cache_root() / "tokenized").glob("*.tmp.npz"))  # nothing left behind
