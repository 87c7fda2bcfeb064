"""Energy per trial and per run (telemetry/energy.py), its inputs (NVML power samples, RAPL
counters, the CPU's rated power) and CO2 (telemetry/carbon.py), checked against hand arithmetic.

tests/telemetry/fixtures/nvml_power_trace.jsonl is an NVML power trace in the sampler's format: one L4
sampled at t = 0, 1, 2, 3, 4.1, 5, 6, 7, 8 s after 10:00:00, then (after a 52 s pause, as a
resumed run leaves) at 60 and 61 s, with board power

    t (s)   0     1     2     3     4.1   5     6     7     8     60    61
    W       16.4  16.6  58.3  71.9  72.0  70.7  69.8  25.2  16.5  16.3  16.3

Trapezoidal energy of each interval, (P_a + P_b) / 2 x seconds, in joules:
    [0,1] 16.5   [1,2] 37.45   [2,3] 65.1   [3,4.1] 71.95 x 1.1 = 79.145   [4.1,5] 71.35 x 0.9 = 64.215
    [5,6] 70.25  [6,7] 47.5    [7,8] 20.85  [8,60] a 52 s gap: not counted  [60,61] 16.3
    total 417.31 J = 0.115919... Wh over 9 measured seconds, 52 unmeasured.
Trial A ran 10:00:02-10:00:06, trial B (packed with it) 10:00:04.5-10:00:07:
    A alone [2,4.5]: 65.1 + 79.145 + 71.35 x 0.4 = 172.785 J; shared [4.5,6]: 71.35 x 0.5 + 70.25 = 105.925 J, half each
    A = 172.785 + 52.9625 = 225.7475 J = 0.0627076 Wh;  B = 52.9625 + [6,7] 47.5 = 100.4625 J = 0.0279063 Wh.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from budgetft.telemetry import carbon, rapl
from budgetft.telemetry.cpu_power import rated_power
from budgetft.telemetry.energy import J_PER_WH, energy_use
from budgetft.telemetry.sampler import TelemetrySampler
from budgetft.telemetry.summary import read_samples

FIXTURES = Path(__file__).parent / "fixtures"
TRACE = FIXTURES / "nvml_power_trace.jsonl"
A = {"trial_id": "lora-000", "started": "2026-11-30T10:00:02Z", "ended": "2026-11-30T10:00:06Z"}
B = {"trial_id": "bitfit-001", "started": "2026-11-30T10:00:04.500Z", "ended": "2026-11-30T10:00:07Z"}


def test_recorded_nvml_trace_integrates_to_the_hand_computed_watt_hours():
    use = energy_use(read_samples(TRACE), [A, B])
    assert use.basis == "nvml" and not use.estimated
    assert use.total_wh == pytest.approx(417.31 / 3600, rel=1e-9)
    assert use.total_wh == pytest.approx(0.11591944, abs=1e-8)
    assert (use.measured_s, use.unmeasured_s) == pytest.approx((9.0, 52.0))
    assert use.trials_wh["lora-000"] == pytest.approx(225.7475 / 3600, rel=1e-9)
    assert use.trials_wh["bitfit-001"] == pytest.approx(100.4625 / 3600, rel=1e-9)
    # What no trial ran in stays with the run: 417.31 - 326.21 J.
    assert use.other_wh == pytest.approx(91.1 / 3600, rel=1e-9)
    assert "GPU board power from NVML" in use.method() and "52 s between samples could not be measured" in use.method()


def test_one_trial_alone_gets_its_whole_window():
    use = energy_use(read_samples(TRACE), [A])
    assert use.trials_wh["lora-000"] == pytest.approx((65.1 + 79.145 + 64.215 + 70.25) / 3600, rel=1e-9)


def test_several_gpus_add_up_and_a_gpu_without_power_is_not_guessed():
    def sample(second, *watts):
        return {"ts": f"2026-11-30T10:00:{second:02d}Z", "source": "nvml",
                "devices": [{"index": i, "power_w": w} for i, w in enumerate(watts)]}

    two = energy_use([sample(0, 100.0, 50.0), sample(2, 100.0, 50.0)], [])
    assert two.total_wh * J_PER_WH == pytest.approx(300.0)  # 150 W for 2 s
    vgpu = energy_use([sample(0, None), sample(1, None)], [])
    assert vgpu.total_wh is None and vgpu.basis is None and "no energy figure" in vgpu.method()
    # NVML failing mid-run: the interval between an NVML sample and a CPU one is not counted.
    mixed = energy_use([sample(0, 60.0), {"ts": "2026-11-30T10:00:01Z", "source": "cpu", "devices": [{"name": "x"}]}], [])
    assert mixed.total_wh is None and mixed.unmeasured_s == 1.0


# ----------------------------------------------------------------------------- CPU: RAPL, estimate


def _powercap(root: Path, zones: dict[str, tuple[str, int, int]], unreadable: tuple[str, ...] = ()) -> Path:
    """A stand-in /sys/class/powercap: zone dir -> (name, energy_uj, max_energy_range_uj)."""
    for zone, (name, energy, max_uj) in zones.items():
        d = root / zone
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        if zone in unreadable:
            (d / "energy_uj").chmod(0)
    return root


def test_rapl_zones_are_the_readable_packages(tmp_path):
    root = _powercap(tmp_path, {
        "intel-rapl:0": ("package-0", 5_000_000, 262_143_328_850),
        "intel-rapl:0:0": ("core", 4_000_000, 262_143_328_850),  # part of package 0: not counted twice
        "intel-rapl:1": ("package-1", 7_000_000, 262_143_328_850),
        "intel-rapl:2": ("psys", 1, 100),  # not a package
    })
    assert [z.name for z in rapl.zones(root)] == ["package-0", "package-1"]
    assert rapl.read(rapl.zones(root)) == {"package-0": 5_000_000, "package-1": 7_000_000}
    assert rapl.zones(tmp_path / "absent") == []


def test_rapl_counter_differences_and_wraparound():
    assert rapl.joules_between({"package-0": 1_000_000}, {"package-0": 3_500_000}, {"package-0": 10**9}) == 2.5
    # The counter wrapped at 10_000_000 uJ: (10_000_000 - 9_000_000) + 500_000 = 1.5 J.
    assert rapl.joules_between({"package-0": 9_000_000}, {"package-0": 500_000}, {"package-0": 10_000_000}) == 1.5
    assert rapl.joules_between({"package-0": 9}, {"package-0": 5}, {}) is None  # wrapped, range unknown
    assert rapl.joules_between({"package-0": 1}, {"package-1": 2}, {}) is None


def test_sampler_records_rapl_counters_and_energy_uses_them(tmp_path):
    root = _powercap(tmp_path / "powercap", {"intel-rapl:0": ("package-0", 1_000_000, 10_000_000)})
    path = tmp_path / "telemetry.jsonl"
    s = TelemetrySampler(path, interval_s=60, nvml=False, powercap=root).start()
    try:
        first = s.sample_once()
        (root / "intel-rapl:0" / "energy_uj").write_text("4000000\n")  # 3 J later
        second = s.sample_once()
    finally:
        s.stop()
    assert first["rapl_uj"] == {"package-0": 1_000_000} and second["rapl_max_uj"] == {"package-0": 10_000_000}
    # Timestamps one second apart, so the interval is kept whatever the machine's speed.
    first["ts"], second["ts"] = "2026-11-30T10:00:00Z", "2026-11-30T10:00:01Z"
    use = energy_use([first, second], [])
    assert use.basis == "rapl" and not use.estimated and use.total_wh * J_PER_WH == pytest.approx(3.0)


def test_without_rapl_a_cpu_run_is_estimated_from_rated_power_and_says_so():
    samples = [{"ts": f"2026-11-30T10:00:{s:02d}Z", "source": "cpu", "devices": [{"name": "AMD EPYC 7763 64-Core Processor"}]}
               for s in (0, 4, 10)]
    use = energy_use(samples, [{"trial_id": "t", "started": "2026-11-30T10:00:04Z", "ended": "2026-11-30T10:00:10Z"}], cpus=2)
    # EPYC 7763: 280 W over 128 threads = 2.1875 W a thread; 2 threads for 10 s = 43.75 J.
    assert use.basis == "estimate" and use.estimated
    assert use.total_wh * J_PER_WH == pytest.approx(43.75)
    assert use.trials_wh["t"] * J_PER_WH == pytest.approx(26.25)
    assert "ESTIMATED" in use.method() and "EPYC 7763 rated 280 W / 128 threads" in use.method()
    unknown = rated_power("AMD EPYC", 2)
    assert unknown.per_thread_w == 4.0 and "not in budgetft's table" in unknown.basis
    assert rated_power("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", 4).watts == pytest.approx(4 * 270 / 80)


def test_real_sampler_on_this_machine_gives_an_energy_figure(tmp_path):
    path = tmp_path / "telemetry.jsonl"
    s = TelemetrySampler(path, interval_s=60).start()
    try:
        s.sample_once()
        s.sample_once()
    finally:
        s.stop()
    samples = read_samples(path)
    samples[0]["ts"], samples[1]["ts"] = "2026-11-30T10:00:00Z", "2026-11-30T10:00:02Z"
    use = energy_use(samples, [], cpus=2)
    assert use.total_wh is not None and use.total_wh > 0
    assert use.basis in ("rapl", "estimate", "nvml")


# ----------------------------------------------------------------------------- CO2


def test_grid_intensity_and_co2():
    eu = carbon.grid_intensity("europe-west4")
    assert (eu.gco2e_per_kwh, eu.basis, eu.is_world_average) == (194.35, "europe-west4", False)
    assert carbon.co2e_grams(1000.0, eu) == pytest.approx(194.35)  # 1 kWh
    unknown = carbon.grid_intensity(None)
    assert unknown.region == "unknown" and unknown.is_world_average and unknown.gco2e_per_kwh == 436
    assert "unknown" in unknown.source and "world" in unknown.source
    assert carbon.grid_intensity("mars-1").is_world_average
    assert carbon.co2e_grams(None, eu) is None
    assert carbon.check_region(" US-Central1 ") == "us-central1" and carbon.check_region("unknown") == "unknown"
    with pytest.raises(ValueError, match="europe-west4"):
        carbon.check_region("world")  # the fallback row is not a region


def test_report_energy_section_from_a_recorded_gpu_run(tmp_path):
    from budgetft.report.energy import energy_summary, markdown_lines, run_region

    run = tmp_path / "run"
    (run / "trials" / "lora-000").mkdir(parents=True)
    (run / "trials" / "bitfit-001").mkdir(parents=True)
    shutil.copy(TRACE, run / "telemetry.jsonl")
    (run / "trials" / "lora-000" / "trial.json").write_text(json.dumps(A))
    (run / "trials" / "bitfit-001" / "trial.json").write_text(json.dumps(B))
    (run / "run.json").write_text(json.dumps({"run_id": "r", "hardware": {"cpus": 8}}))
    (run / "cloud").mkdir()
    (run / "cloud" / "launch-1.json").write_text(json.dumps({"region": "us-east1"}))
    (run / "cloud" / "launch-2.json").write_text(json.dumps({"region": "europe-west4"}))  # the run's last VM
    energy = energy_summary(run)
    assert energy["region"] == "europe-west4" and energy["region_source"] == "cloud launch record"
    assert energy["total_wh"] == pytest.approx(0.1159, abs=1e-4) and energy["basis"] == "nvml"
    assert energy["co2e_g"] == pytest.approx(417.31 / 3600 * 194.35 / 1000, abs=1e-4)
    assert energy["trials"]["lora-000"]["wh"] == pytest.approx(0.0627, abs=1e-4)
    text = "\n".join(markdown_lines(energy))
    assert "0.116 Wh measured" in text and "194.35 g CO2e/kWh" in text and "europe-west4" in text
    # A local run's --region (run.json) wins; without either the region is unknown.
    assert run_region(run, {"region": "us-west1"}) == ("us-west1", "--region")
    shutil.rmtree(run / "cloud")
    assert run_region(run, {}) == ("unknown", "not recorded")


def test_nvml_energy_counter_is_recorded_where_supported(tmp_path):
    from tests.telemetry.test_telemetry import StandInNVML

    class WithCounter(StandInNVML):
        def nvmlDeviceGetTotalEnergyConsumption(self, h):
            return 123_456_789  # mJ since the driver loaded (Volta and later)

    def one(nvml):
        s = TelemetrySampler(tmp_path / f"{type(nvml).__name__}.jsonl", interval_s=60, nvml=nvml).start()
        try:
            return s.sample_once()["devices"][0]
        finally:
            s.stop()

    assert one(WithCounter())["energy_mj"] == 123_456_789
    assert "energy_mj" not in one(StandInNVML())  # older GPUs: no key, not a failure
