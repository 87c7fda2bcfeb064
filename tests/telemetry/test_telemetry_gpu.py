"""Telemetry on a real NVIDIA GPU: NVML detection and sampling, the price of the GPU we got,
the chosen precision training for real, and a two-trial packed run measured against one trial
alone and fed to the packing decision. Skipped without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if not _cuda():
    pytest.skip("needs an NVIDIA GPU: torch.cuda.is_available() is False", allow_module_level=True)

from budgetft.money.catalog_store import default_catalog  # noqa: E402
from budgetft.telemetry import hardware, packing, precision, summary  # noqa: E402
from budgetft.telemetry.sampler import TelemetrySampler  # noqa: E402

# A stand-in trial: a small MLP trained for a fixed time, small enough to leave an H100 or an L4
# partly idle. Prints its examples/s as JSON.
TRIAL = r"""
import json, sys, time, torch
seconds, batch = float(sys.argv[1]), 64
model = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU()) for _ in range(4)]).cuda()
opt = torch.optim.AdamW(model.parameters(), 1e-3)
x, y = torch.randn(batch, 512, device="cuda"), torch.randn(batch, 512, device="cuda")
for _ in range(20):  # warm-up: CUDA context, kernels
    torch.nn.functional.mse_loss(model(x), y).backward(); opt.step(); opt.zero_grad()
torch.cuda.synchronize()
steps, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    torch.nn.functional.mse_loss(model(x), y).backward(); opt.step(); opt.zero_grad(); steps += 1
torch.cuda.synchronize()
print(json.dumps({"examples_per_s": steps * batch / (time.perf_counter() - t0)}))
"""


def test_detect_and_price_the_real_gpu():
    hw = hardware.detect()
    assert hw.has_gpu and hw.source == "nvml", hw.note
    gpu = hw.gpus[0]
    assert gpu.mem_total_mb > 1000 and gpu.capability is not None
    try:
        choice = hardware.local_price(default_catalog(), None, hw)
    except hardware.HardwareError as exc:  # a GPU the catalogue does not price (e.g. a GeForce)
        assert gpu.name in str(exc) and "--price-per-hour" in str(exc)
    else:
        assert choice.source == "catalogue" and choice.usd_per_hour > 0 and gpu.name in choice.reason


def test_real_nvml_sampling_sees_this_process(tmp_path):
    import os

    import torch

    path = tmp_path / "telemetry.jsonl"
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # 256 MiB
    with TelemetrySampler(path, interval_s=0.2, pids=lambda: {"me": os.getpid()}) as s:
        assert s.source == "nvml", s.note
        a = torch.randn(2048, 2048, device="cuda")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            a = (a @ a).tanh()
        torch.cuda.synchronize()
    del block
    rows = summary.read_samples(path)
    assert len(rows) >= 4 and all(r["source"] == "nvml" for r in rows)
    dev = rows[-1]["devices"][0]
    assert dev["mem_total_mb"] > dev["mem_used_mb"] >= 256 and dev["util_pct"] is not None
    assert max(d["util_pct"] for r in rows for d in r["devices"]) > 0
    seen = [r["processes"]["me"] for r in rows if "me" in r["processes"]]
    if seen:  # NVML lists host PIDs; inside a container with its own PID namespace it cannot match ours
        assert max(seen) >= 256


def test_precision_trains_on_this_gpu():
    import torch

    p = precision.choose_precision("cuda", torch.cuda.get_device_capability(0))
    precision.apply_precision(p)
    try:
        model = torch.nn.Linear(64, 64).cuda()
        opt = torch.optim.SGD(model.parameters(), 0.1)
        scaler = precision.grad_scaler(p)
        with precision.autocast(p):
            out = model(torch.randn(8, 64, device="cuda"))
            loss = out.float().pow(2).mean()
        assert out.dtype == getattr(torch, p.dtype_name)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        assert model.weight.dtype == torch.float32  # master weights stay fp32
    finally:
        torch.set_float32_matmul_precision("highest")


def _level(tmp_path, k: int, seconds: float = 6.0) -> dict:
    """Run k stand-in trials at once with the sampler watching; their calibration figures."""
    procs = [subprocess.Popen([sys.executable, "-c", TRIAL, str(seconds)], stdout=subprocess.PIPE, text=True)
             for _ in range(k)]
    path = tmp_path / f"level{k}.jsonl"
    with TelemetrySampler(path, interval_s=0.25, pids=lambda: {f"t{i}": p.pid for i, p in enumerate(procs)}):
        outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    rows = summary.read_samples(path)
    busy = [r for r in rows if r["processes"]] or rows  # samples while the trials held the GPU
    own = [sum(r["processes"].values()) for r in busy if r["processes"]]
    peak = max(own) if own else max(r["devices"][0]["mem_used_mb"] for r in rows)
    utils = [r["devices"][0]["util_pct"] for r in busy if r["devices"][0]["util_pct"] is not None]
    return {
        "trials": k,
        "examples_per_s_total": sum(json.loads(o.strip().splitlines()[-1])["examples_per_s"] for o in outs),
        "mean_util_pct": sum(utils) / len(utils) if utils else None,
        "peak_mem_mb": peak,
    }


def test_two_trial_packed_run(tmp_path):
    hw = hardware.detect()
    gpu_mem = hw.gpus[0].mem_total_mb
    alone = _level(tmp_path, 1)
    together = _level(tmp_path, 2)
    decision = packing.choose_packing([alone, together], gpu_mem)
    fits = together["peak_mem_mb"] <= packing.memory_limit_mb(gpu_mem)
    pays = together["examples_per_s_total"] >= alone["examples_per_s_total"] * (1 + packing.MIN_GAIN)
    assert decision.trials_per_gpu == (2 if fits and pays else 1), decision.reason
    assert decision.figures["levels"][1]["examples_per_s_total"] == together["examples_per_s_total"]
    print(decision.reason)
