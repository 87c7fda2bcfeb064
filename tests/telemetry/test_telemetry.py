"""Telemetry without a GPU: the sampler and pricing against a stand-in NVML module, the CPU
path for real, packing and precision decisions from recorded figures."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from types import SimpleNamespace

import pytest

from budgetft.money.catalog_store import default_catalog
from budgetft.telemetry import hardware, packing, precision, summary
from budgetft.telemetry.hardware import Hardware, HardwareError, detect, local_price
from budgetft.telemetry.sampler import TelemetrySampler

MIB = 2**20


class StandInNVMLError(Exception):
    pass


class StandInNVML:
    """The slice of pynvml budgetft uses. GPUs are (name, total MiB, capability); handles are
    indexes. `fail_init` breaks nvmlInit; `fail_after` breaks memory reads after that many;
    `power` False makes power unsupported, as on some vGPUs."""

    NVMLError = StandInNVMLError

    def __init__(self, gpus=(("NVIDIA L4", 23034, (8, 9)),), *, fail_init=False, fail_after=None,
                 power=True, procs=None, util=42):
        self.gpus = list(gpus)
        self.fail_init, self.fail_after, self.power, self.util = fail_init, fail_after, power, util
        self.procs = procs or {}  # pid -> MiB on GPU 0
        self.memory_reads = 0
        self.inits = self.shutdowns = 0

    def nvmlInit(self):
        if self.fail_init:
            raise StandInNVMLError("Driver Not Loaded")
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"  # older bindings return bytes

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        if not 0 <= i < len(self.gpus):
            raise StandInNVMLError("Invalid Argument")
        return i

    def nvmlDeviceGetName(self, h):
        return self.gpus[h][0].encode() if h % 2 else self.gpus[h][0]  # both shapes bindings use

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self.gpus[h][2]

    def nvmlDeviceGetMemoryInfo(self, h):
        self.memory_reads += 1
        if self.fail_after is not None and self.memory_reads > self.fail_after:
            raise StandInNVMLError("GPU is lost")
        total = self.gpus[h][1] * MIB
        used = (1000 + sum(self.procs.values())) * MIB if h == 0 else 500 * MIB
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self.util, memory=10)

    def nvmlDeviceGetPowerUsage(self, h):
        if not self.power:
            raise StandInNVMLError("Not Supported")
        return 61_250  # milliwatts

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        if h != 0:
            return []
        return [SimpleNamespace(pid=pid, usedGpuMemory=mb * MIB) for pid, mb in self.procs.items()]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_lines(path, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} samples in {timeout} s")


# ----------------------------------------------------------------------------- sampler


def test_nvml_sample_format(tmp_path):
    nvml = StandInNVML(gpus=[("NVIDIA L4", 23034, (8, 9)), ("NVIDIA L4", 23034, (8, 9))], procs={4242: 3072, 777: 100})
    path = tmp_path / "telemetry.jsonl"
    with TelemetrySampler(path, interval_s=0.05, pids=lambda: {"lora-0001": 4242, "lora-0002": 9999}, nvml=nvml) as s:
        wait_for_lines(path, 3)
        assert s.source == "nvml"
        live = s.latest()
    rows = lines(path)
    first = rows[0]
    assert set(first) == {"ts", "elapsed_s", "source", "cpu_pct", "devices", "processes"}
    assert first["ts"].endswith("Z") and first["source"] == "nvml"
    assert first["devices"][0] == {"index": 0, "name": "NVIDIA L4", "util_pct": 42.0, "mem_used_mb": 4172.0,
                                   "mem_total_mb": 23034.0, "power_w": 61.2}
    assert first["devices"][1]["name"] == "NVIDIA L4"  # bytes from the binding decoded
    # Only the trial processes the GPU lists: 9999 is not on the GPU, 777 is no trial of ours.
    assert first["processes"] == {"lora-0001": 3072.0}
    elapsed = [r["elapsed_s"] for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    assert live["source"] == "nvml"
    assert nvml.shutdowns == 1  # NVML released on stop


def test_unsupported_power_is_null_not_a_failure(tmp_path):
    path = tmp_path / "t.jsonl"
    s = TelemetrySampler(path, interval_s=60, nvml=StandInNVML(power=False)).start()
    try:
        sample = s.sample_once()
    finally:
        s.stop()
    assert sample["source"] == "nvml" and sample["devices"][0]["power_w"] is None
    assert lines(path)[0]["devices"][0]["util_pct"] == 42.0


def test_nvml_failing_at_init_samples_the_cpu(tmp_path):
    path = tmp_path / "t.jsonl"
    with TelemetrySampler(path, interval_s=0.05, nvml=StandInNVML(fail_init=True)) as s:
        wait_for_lines(path, 2)
    assert s.source == "cpu" and "Driver Not Loaded" in s.note
    assert {r["source"] for r in lines(path)} == {"cpu"}


def test_nvml_failing_mid_run_never_crashes(tmp_path):
    nvml = StandInNVML(fail_after=2)
    path = tmp_path / "t.jsonl"
    with TelemetrySampler(path, interval_s=0.05, nvml=nvml) as s:
        wait_for_lines(path, 5)
        thread_alive = s._thread.is_alive()
    rows = lines(path)
    assert thread_alive
    assert [r["source"] for r in rows[:3]] == ["nvml", "nvml", "cpu"]
    assert "GPU is lost" in rows[2]["error"] and "error" not in rows[3]
    assert all(r["source"] == "cpu" for r in rows[2:])
    assert nvml.shutdowns == 1


def test_no_gpu_and_broken_callbacks(tmp_path):
    path = tmp_path / "t.jsonl"

    def broken():
        raise RuntimeError("ray went away")

    with TelemetrySampler(path, interval_s=0.05, pids=broken, nvml=StandInNVML(gpus=[])) as s:
        wait_for_lines(path, 2)
    assert s.source == "cpu" and s.note == "NVML found no GPU"
    assert lines(path)[0]["processes"] == {}


def test_real_cpu_path_writes_lines(tmp_path):
    path = tmp_path / "run" / "telemetry.jsonl"
    with TelemetrySampler(path, interval_s=0.1, pids=lambda: {"t1": os.getpid(), "gone": 2**22 + 7}, nvml=False) as s:
        wait_for_lines(path, 3)
        assert summary.live_text(s.latest()).startswith("CPU ")
    rows = lines(path)
    cpu = rows[-1]
    assert cpu["source"] == "cpu" and len(cpu["devices"]) == 1
    dev = cpu["devices"][0]
    assert dev["name"] == hardware.cpu_model() and dev["power_w"] is None
    assert 0 <= dev["util_pct"] <= 100 and dev["util_pct"] == cpu["cpu_pct"]
    assert 0 < dev["mem_used_mb"] < dev["mem_total_mb"]
    assert set(cpu["processes"]) == {"t1"} and cpu["processes"]["t1"] > 10  # this process's RSS, MiB


def test_default_nvml_never_crashes_here(tmp_path):
    # pynvml is installed; without a driver it fails at init and the sampler falls back.
    path = tmp_path / "t.jsonl"
    with TelemetrySampler(path, interval_s=0.05) as s:
        wait_for_lines(path, 1)
    assert s.source in ("nvml", "cpu")


def test_first_cpu_sample_is_measured(tmp_path):
    # psutil measures CPU busy % between two readings kept per thread; a first sample of 0.0
    # while this thread burns a core would mean the sampler thread never took its first reading.
    path = tmp_path / "t.jsonl"
    with TelemetrySampler(path, interval_s=0.3, nvml=False):
        deadline = time.monotonic() + 5
        while not path.read_text() and time.monotonic() < deadline:
            pass  # busy on purpose
    assert lines(path)[0]["cpu_pct"] > 0


def test_stop_twice_and_bad_interval(tmp_path):
    s = TelemetrySampler(tmp_path / "t.jsonl", interval_s=0.05, nvml=False).start()
    s.stop()
    s.stop()
    with pytest.raises(ValueError):
        TelemetrySampler(tmp_path / "t.jsonl", interval_s=0)


# ----------------------------------------------------------------------------- hardware and price


def machine(name, total_mb, capability, count=1, cpus=8):
    hw = detect(StandInNVML(gpus=[(name, total_mb, capability)] * count), use_torch=False)
    return Hardware(hw.gpus, hw.cpu_model, cpus, hw.mem_total_mb, hw.source, hw.driver, hw.note)


def test_detect_through_nvml():
    hw = detect(StandInNVML(gpus=[("Tesla V100-SXM2-16GB", 16384, (7, 0))]), use_torch=False)
    assert hw.source == "nvml" and hw.driver == "550.54.15"
    assert hw.gpus[0].name == "Tesla V100-SXM2-16GB" and hw.gpus[0].capability == (7, 0)
    assert hw.gpus[0].mem_total_mb == 16384
    assert hw.to_dict()["gpus"][0]["capability"] == [7, 0]


def test_detect_without_nvml():
    hw = detect(StandInNVML(fail_init=True), use_torch=False)
    assert not hw.has_gpu and "Driver Not Loaded" in hw.note and hw.cpu_count >= 1


@pytest.mark.parametrize(
    "nvml_name, total, cc, machine_type, gpu",
    [
        ("Tesla V100-SXM2-16GB", 16384, (7, 0), "n1-standard-8", "nvidia-tesla-v100"),
        ("NVIDIA L4", 23034, (8, 9), "g2-standard-8", None),
        ("NVIDIA A100-SXM4-80GB", 81920, (8, 0), "a2-ultragpu-1g", None),
        ("NVIDIA A100-SXM4-40GB", 40960, (8, 0), "a2-highgpu-1g", None),
        ("NVIDIA H100 80GB HBM3", 81559, (9, 0), "a3-highgpu-1g", None),
        ("Tesla T4", 15360, (7, 5), "n1-standard-8", "nvidia-tesla-t4"),
    ],
)
def test_gpu_priced_from_catalogue(nvml_name, total, cc, machine_type, gpu):
    cat = default_catalog()
    choice = local_price(cat, None, machine(nvml_name, total, cc, cpus=8))
    expected = cat.instance(machine_type, gpu)
    assert choice.usd_per_hour == expected.usd_per_hour and isinstance(choice.usd_per_hour, Decimal)
    assert choice.source == "catalogue" and choice.instance == expected.label
    assert nvml_name in choice.reason and expected.label in choice.reason and "--price-per-hour" in choice.reason


def test_v100_on_the_study_machine_costs_about_286():
    choice = local_price(default_catalog(), None, machine("Tesla V100-SXM2-16GB", 16384, (7, 0), cpus=8))
    assert Decimal("2.86") <= choice.usd_per_hour <= Decimal("2.87")
    assert "N1" in choice.reason and "8 vCPUs match" in choice.reason


def test_unmatched_vcpus_take_the_cheapest_shape():
    cat = default_catalog()
    v100 = local_price(cat, None, machine("Tesla V100-SXM2-16GB", 16384, (7, 0), cpus=2))
    assert v100.usd_per_hour == cat.instance("n1-standard-4", "v100").usd_per_hour and "cheapest" in v100.reason
    l4 = local_price(cat, None, machine("NVIDIA L4", 23034, (8, 9), cpus=2))
    assert l4.instance == "g2-standard-4" and "accelerator-optimised" in l4.reason


def test_several_gpus():
    cat = default_catalog()
    v100s = local_price(cat, None, machine("Tesla V100-SXM2-16GB", 16384, (7, 0), count=2, cpus=8))
    assert v100s.usd_per_hour == cat.instance("n1-standard-8", "v100", 2).usd_per_hour
    l4s = local_price(cat, None, machine("NVIDIA L4", 23034, (8, 9), count=2, cpus=8))
    assert l4s.usd_per_hour == 2 * cat.instance("g2-standard-4").usd_per_hour and l4s.instance == "2x g2-standard-4"


def test_explicit_price_wins():
    choice = local_price(default_catalog(), "$1.50", machine("NVIDIA L4", 23034, (8, 9)))
    assert choice == hardware.PriceChoice(Decimal("1.50"), "--price-per-hour", "$1.5000/h given with --price-per-hour")
    with pytest.raises(ValueError):
        local_price(default_catalog(), "-1", machine("NVIDIA L4", 23034, (8, 9)))


def test_cpu_only_is_the_local_entry():
    hw = detect(StandInNVML(fail_init=True), use_torch=False)
    choice = local_price(default_catalog(), None, hw)
    assert choice.usd_per_hour == 0 and str(choice.usd_per_hour) == "0" and choice.source == "local"
    assert "no GPU detected" in choice.reason and "--price-per-hour" in choice.reason


def test_unknown_gpu_asks_for_a_price():
    with pytest.raises(HardwareError) as err:
        local_price(default_catalog(), None, machine("NVIDIA GeForce RTX 4090", 24564, (8, 9)))
    assert "NVIDIA GeForce RTX 4090" in str(err.value) and "--price-per-hour" in str(err.value)
    mixed = Hardware((hardware.GpuInfo(0, "NVIDIA L4", 23034), hardware.GpuInfo(1, "Tesla T4", 15360)))
    with pytest.raises(HardwareError, match="different GPUs"):
        local_price(default_catalog(), None, mixed)


# ----------------------------------------------------------------------------- packing

ALONE = {"trials": 1, "examples_per_s_total": 20.0, "mean_util_pct": 35.0, "peak_mem_mb": 3000.0}


def test_packing_chosen_when_figures_favour_it():
    calib = [ALONE, {"trials": 2, "examples_per_s_total": 34.0, "mean_util_pct": 70.0, "peak_mem_mb": 6100.0}]
    d = packing.choose_packing(calib, gpu_mem_mb=23034)
    assert (d.trials_per_gpu, d.gpu_fraction) == (2, 0.5)
    assert "34.0" in d.reason and "20.0" in d.reason and "+70%" in d.reason
    assert d.figures["chosen"] == 2 and d.figures["levels"][1]["speedup_vs_one"] == 1.7


def test_packing_refused_when_gain_is_small():
    calib = [ALONE, {"trials": 2, "examples_per_s_total": 21.6, "mean_util_pct": 40.0, "peak_mem_mb": 6100.0}]
    d = packing.choose_packing(calib, gpu_mem_mb=23034)
    assert (d.trials_per_gpu, d.gpu_fraction) == (1, 1.0)
    assert "did not pay" in d.reason and "+8%" in d.reason and "below +10%" in d.reason


def test_packing_refused_when_memory_is_short():
    calib = [ALONE, {"trials": 2, "examples_per_s_total": 38.0, "mean_util_pct": 70.0, "peak_mem_mb": 15000.0}]
    d = packing.choose_packing(calib, gpu_mem_mb=16384)  # limit 14746 MiB after the 10% margin
    assert d.trials_per_gpu == 1 and "exceeds" in d.reason
    assert packing.choose_packing(calib, gpu_mem_mb=23034).trials_per_gpu == 2


def test_each_step_up_must_pay():
    calib = [
        ALONE,
        {"trials": 2, "examples_per_s_total": 30.0, "mean_util_pct": 60.0, "peak_mem_mb": 6000.0},
        {"trials": 3, "examples_per_s_total": 31.0, "mean_util_pct": 75.0, "peak_mem_mb": 9000.0},
        {"trials": 4, "examples_per_s_total": 36.0, "mean_util_pct": 90.0, "peak_mem_mb": 12000.0},
    ]
    d = packing.choose_packing(calib, gpu_mem_mb=40960)
    assert d.trials_per_gpu == 4 and d.gpu_fraction == 0.25  # 4 beats 2 by 20%; 3 beat 2 by only 3%
    assert packing.choose_packing(calib, gpu_mem_mb=40960, max_trials=3).trials_per_gpu == 2
    assert packing.gpu_fraction(3) == 0.3333 and 3 * packing.gpu_fraction(3) <= 1


def test_packing_needs_the_one_trial_baseline():
    with pytest.raises(ValueError, match="one-trial"):
        packing.choose_packing([{"trials": 2, "examples_per_s_total": 5, "peak_mem_mb": 1}], 1000)
    d = packing.choose_packing([ALONE], gpu_mem_mb=23034)
    assert d.trials_per_gpu == 1 and "no packed level was measured" in d.reason


def test_packing_candidates():
    assert packing.packing_candidates(ALONE, 23034) == [2, 3, 4]
    assert packing.packing_candidates(ALONE, 16384) == [2, 3, 4]  # 4 x 3000 <= 14746
    assert packing.packing_candidates(ALONE, 8192) == [2]
    assert packing.packing_candidates({**ALONE, "mean_util_pct": 95.0}, 81920) == []  # GPU already busy


def nvml_samples(util, cpu, n=5):
    return [{"ts": f"2025-06-01T00:00:0{i}Z", "source": "nvml", "cpu_pct": cpu,
             "devices": [{"index": 0, "util_pct": util, "mem_used_mb": 1, "mem_total_mb": 2}]} for i in range(n)]


def test_input_bound_warning():
    warning = packing.input_bound_warning(nvml_samples(util=20, cpu=97))
    assert warning and "input-bound" in warning and "20%" in warning and "97%" in warning
    assert packing.input_bound_warning(nvml_samples(util=20, cpu=30)) is None  # idle, but not for want of CPU
    assert packing.input_bound_warning(nvml_samples(util=90, cpu=97)) is None
    assert packing.input_bound_warning(nvml_samples(util=20, cpu=97, n=2)) is None  # too few samples
    cpu_run = [{**s, "source": "cpu"} for s in nvml_samples(util=20, cpu=97)]
    assert packing.input_bound_warning(cpu_run) is None


# ----------------------------------------------------------------------------- precision


@pytest.mark.parametrize(
    "kind, cc, dtype, scaling, tf32",
    [
        ("cuda", (7, 0), "float16", True, False),  # V100
        ("cuda", (7, 5), "float16", True, False),  # T4
        ("cuda", (6, 0), "float16", True, False),  # P100
        ("cuda", (8, 0), "bfloat16", False, True),  # A100
        ("cuda", (8, 9), "bfloat16", False, True),  # L4
        ("cuda", (9, 0), "bfloat16", False, True),  # H100
        ("cuda", (6, 1), "float32", False, False),  # consumer Pascal: fp16 at 1/64 rate
        ("cuda", None, "float32", False, False),
        ("cpu", None, "float32", False, False),
    ],
)
def test_precision_choices(kind, cc, dtype, scaling, tf32):
    p = precision.choose_precision(kind, cc)
    assert (p.dtype_name, p.loss_scaling, p.tf32) == (dtype, scaling, tf32)
    assert p.autocast == (dtype != "float32") and p.reason
    assert p.to_dict()["dtype_name"] == dtype


def test_cpu_bf16_only_when_measured_faster():
    p = precision.choose_precision("cpu", None, bf16_faster_on_cpu=True)
    assert (p.dtype_name, p.autocast, p.loss_scaling, p.tf32) == ("bfloat16", True, False, False)


def test_precision_helpers_on_cpu():
    import torch

    before = torch.get_float32_matmul_precision()
    try:
        applied = precision.apply_precision(precision.choose_precision("cuda", (8, 0)))
        assert applied == {"float32_matmul_precision": "high"}
        assert torch.get_float32_matmul_precision() == "high"
        precision.apply_precision(precision.choose_precision("cpu"))
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision(before)
    fp32 = precision.choose_precision("cpu")
    assert not precision.grad_scaler(fp32).is_enabled()
    layer = torch.nn.Linear(8, 8)
    with precision.autocast(fp32):
        assert layer(torch.ones(2, 8)).dtype == torch.float32
    with precision.autocast(precision.choose_precision("cpu", None, bf16_faster_on_cpu=True)):
        assert layer(torch.ones(2, 8)).dtype == torch.bfloat16
    timing = precision.measure_cpu_bf16(lambda: layer(torch.ones(4, 8)).sum().backward(), repeats=2)
    assert timing["fp32_s"] > 0 and timing["bf16_s"] > 0 and isinstance(timing["bf16_faster"], bool)


# ----------------------------------------------------------------------------- summary


def sample(ts, util, used, procs=None, source="nvml"):
    return {"ts": ts, "elapsed_s": 0, "source": source, "cpu_pct": 10.0,
            "devices": [{"index": 0, "name": "NVIDIA L4", "util_pct": util, "mem_used_mb": used,
                         "mem_total_mb": 23034.0, "power_w": 60.0}],
            "processes": procs or {}}


def test_trial_usage_and_partial_lines(tmp_path):
    path = tmp_path / "telemetry.jsonl"
    rows = [
        sample("2025-06-01T00:00:00.000Z", 10, 1000),
        sample("2025-06-01T00:00:01.000Z", 80, 5000, {"a": 3000.0}),
        sample("2025-06-01T00:00:02.000Z", 60, 6000, {"a": 3500.0, "b": 2000.0}),
        sample("2025-06-01T00:00:05.000Z", 20, 2000),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"ts": "2025-06-01T00:00:0')
    samples = summary.read_samples(path)
    assert len(samples) == 4 and summary.read_samples(tmp_path / "missing.jsonl") == []
    trials = [
        {"trial_id": "a", "started": "2025-06-01T00:00:01Z", "ended": "2025-06-01T00:00:02Z"},
        {"trial_id": "b", "started": "2025-06-01T00:00:02Z", "ended": None},
        {"trial_id": "c", "started": "2025-06-01T00:01:00Z", "ended": "2025-06-01T00:02:00Z"},
    ]
    usage = summary.trial_usage(samples, trials)
    # a's window widens to [0 s, 3 s]: three samples.
    assert usage["a"].to_dict() == {"trial_id": "a", "samples": 3, "mean_util_pct": 50.0, "peak_mem_mb": 3500.0,
                                    "mem_basis": "process", "source": "nvml"}
    assert usage["b"].samples == 3 and usage["b"].peak_mem_mb == 2000.0
    assert usage["c"].samples == 0 and usage["c"].mean_util_pct is None and usage["c"].mem_basis == "none"
    device_only = summary.usage(samples[:1], "x")
    assert device_only.mem_basis == "device" and device_only.peak_mem_mb == 1000


def test_live_text():
    assert summary.live_text(None).startswith("telemetry:")
    assert summary.live_text(sample("2025-06-01T00:00:00Z", 87, 10240)) == "GPU0 NVIDIA L4 87% 10.0/22.5 GiB 60 W"


def test_cpu_run_summary_and_plot(tmp_path):
    """The CPU path end to end: sample for real, then the report's figures and plot."""
    path = tmp_path / "telemetry.jsonl"
    with TelemetrySampler(path, interval_s=0.1, pids=lambda: {"t1": os.getpid()}, nvml=False):
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # as trial.json writes it
        wait_for_lines(path, 4)
    samples = summary.read_samples(path)
    usage = summary.trial_usage(samples, [{"trial_id": "t1", "started": started, "ended": None}])["t1"]
    assert usage.samples >= 3 and usage.source == "cpu" and usage.mem_basis == "process"
    assert usage.mean_util_pct is not None and usage.peak_mem_mb > 10
    png = summary.plot_utilization(tmp_path / "utilization.png", samples, [{"started": started, "ended": None}])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary.plot_utilization(tmp_path / "none.png", []) is None


def test_cpu_precision_follows_native_bf16_and_the_override(monkeypatch):
    import torch

    from budgetft.telemetry import precision

    assert precision.cpu_has_native_bf16("processor : 0\nflags : fpu avx2 avx512_bf16 avx512f\n")
    assert not precision.cpu_has_native_bf16("flags : fpu avx2 avx512f\n")
    cpu = torch.device("cpu")
    monkeypatch.setenv(precision.PRECISION_ENV, "auto")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    chosen = precision.precision_for(cpu)
    assert chosen.dtype_name == "bfloat16" and chosen.autocast and "natively" in chosen.reason
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert precision.precision_for(cpu).dtype_name == "float32"
    monkeypatch.setenv(precision.PRECISION_ENV, "bf16")
    assert precision.precision_for(cpu).dtype_name == "bfloat16"
    monkeypatch.setenv(precision.PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match="use fp32, bf16 or auto"):
        precision.precision_for(cpu)


# --- threads on a shared machine --------------------------------------------------------------

def test_threads_leave_out_the_cores_a_neighbour_keeps_busy(monkeypatch):
    from budgetft.telemetry import cpu_share

    monkeypatch.setattr(cpu_share.os, "cpu_count", lambda: 2)
    for busy, free in ((0.0, 2), (0.3, 2), (0.6, 1), (1.0, 1), (1.4, 1), (7.0, 1)):
        monkeypatch.setattr(cpu_share, "busy_cores", lambda window_s=0.5, b=busy: b)
        assert cpu_share.free_cores(second_look_after_s=0) == free, busy


def test_a_neighbour_that_is_gone_a_moment_later_does_not_take_a_core(monkeypatch):
    """A process ending as a stage starts (a trial's worker before the held-out test) is busy for
    a moment: the core it held is looked at again, and a stage does not run on one thread for that."""
    from budgetft.telemetry import cpu_share

    monkeypatch.setattr(cpu_share.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu_share.time, "sleep", lambda s: None)
    looks = iter([1.1, 0.05])  # busy as it ends, idle a moment later
    monkeypatch.setattr(cpu_share, "busy_cores", lambda window_s=0.5: next(looks))
    assert cpu_share.free_cores() == 2
    looks = iter([1.0, 0.9])  # a neighbour that stays: still taken
    monkeypatch.setattr(cpu_share, "busy_cores", lambda window_s=0.5: next(looks))
    assert cpu_share.free_cores() == 1
    seen = []
    monkeypatch.setattr(cpu_share, "busy_cores", lambda window_s=0.5: seen.append(1) or 0.1)
    assert cpu_share.free_cores() == 2 and len(seen) == 1  # an idle machine is looked at once


def test_niced_work_takes_its_core():
    """/proc/stat's cpu line in ticks: user nice system idle iowait irq softirq steal. Only idle
    and iowait are free: a niced neighbour still slows every torch operation that meets on its core."""
    from budgetft.telemetry import cpu_share

    busy, total = cpu_share._busy_total("cpu  100 400 50 300 150 0 0 0 0 0", 100)
    assert (busy, total) == (5.5, 10.0)  # user 100 + nice 400 + system 50 busy; idle, iowait free
    assert cpu_share._busy_total("cpu garbage", 100) is None


def test_a_busy_neighbour_is_seen_and_our_own_work_is_not():
    import subprocess
    import sys
    import time

    from budgetft.telemetry import cpu_share

    if cpu_share._cpu_seconds() is None:
        pytest.skip("no /proc/stat here")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert cpu_share.busy_cores(0.5) >= 0.6
    finally:
        hog.kill()
        hog.wait()
