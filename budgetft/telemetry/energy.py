"""Energy per trial and per run, in watt-hours, from the samples in telemetry.jsonl.

Each pair of consecutive samples bounds an interval, and its energy comes from the best basis
both samples support:

- nvml      GPU runs: the board power NVML reports (W, summed over the GPUs), integrated over
            time with the trapezoidal rule, (P_a + P_b) / 2 x seconds. The GPUs only: the host's
            CPU, memory and disks are not included, and the report says so.
- rapl      CPU runs where Linux exposes RAPL counters (rapl.py): the counters' difference, so
            nothing between samples is missed.
- estimate  other CPU runs: the processor's rated power x seconds (cpu_power.py), an upper
            bound, always labelled an estimate.

An interval longer than MAX_GAP_S (the sampler stalled, or a resumed run's pause between
sessions) or whose samples cannot measure it (a GPU without power readings, NVML failing
mid-run) is not counted; its seconds are reported as unmeasured.

A trial's energy is its share of the intervals it ran in: an interval is cut at trial starts and
ends, and each piece's energy is split equally among the trials running during it (packed trials
share one GPU's power). What no trial ran in (baselines, calibration, the report) stays with the
run, whose total is every counted interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from budgetft.telemetry import rapl
from budgetft.telemetry.cpu_power import RatedPower, rated_power
from budgetft.telemetry.summary import parse_ts

# The sampler writes about one sample a second; a gap 30 times longer is not a slow sample.
MAX_GAP_S = 30.0
J_PER_WH = 3600.0
BASES = ("nvml", "rapl", "estimate")


@dataclass(frozen=True)
class Interval:
    t0: datetime
    t1: datetime
    joules: float
    basis: str  # nvml | rapl | estimate

    @property
    def seconds(self) -> float:
        return (self.t1 - self.t0).total_seconds()


@dataclass
class EnergyUse:
    total_wh: float | None  # None: nothing could be measured or estimated
    bases: tuple[str, ...]  # the bases used, best first
    measured_s: float  # seconds covered by counted intervals
    unmeasured_s: float  # seconds between samples that could not be counted
    trials_wh: dict[str, float] = field(default_factory=dict)
    rated: RatedPower | None = None  # the rating behind an estimate, when one was used

    @property
    def estimated(self) -> bool:
        return "estimate" in self.bases

    @property
    def basis(self) -> str | None:
        """'nvml', 'rapl', 'estimate', or a '+'-joined mix; None when nothing was counted."""
        return "+".join(self.bases) if self.bases else None

    @property
    def other_wh(self) -> float | None:
        """Energy in no trial's time: baselines, calibration, planning, the report."""
        if self.total_wh is None:
            return None
        return max(0.0, self.total_wh - sum(self.trials_wh.values()))

    def method(self) -> str:
        """How the figures were obtained, as a sentence for the report."""
        if not self.bases:
            return "no energy figure: the telemetry has no power readings or counters to integrate"
        parts = []
        if "nvml" in self.bases:
            parts.append("GPU board power from NVML, about one sample a second, integrated over time "
                         "(trapezoidal rule); the host's CPU and memory are not included")
        if "rapl" in self.bases:
            parts.append("CPU package energy from the kernel's RAPL counters")
        if "estimate" in self.bases and self.rated is not None:
            parts.append(f"ESTIMATED from the processor's rated power, not measured: {self.rated.per_thread_w:.2f} W x "
                         f"{self.rated.cpus} logical CPUs = {self.rated.watts:.1f} W for every sampled second "
                         f"({self.rated.basis}), an upper bound; no RAPL counters were readable here")
        text = "; ".join(parts)
        if self.unmeasured_s >= 1:
            text += f"; {self.unmeasured_s:.0f} s between samples could not be measured and are not counted"
        return text


def _gpu_watts(sample: dict) -> float | None:
    """Total board power of the sample's GPUs, or None when any GPU did not report it."""
    devices = sample.get("devices") or []
    watts = [d.get("power_w") for d in devices]
    if not watts or any(w is None for w in watts):
        return None
    return float(sum(watts))


def _interval_joules(a: dict, b: dict, seconds: float, rated: RatedPower) -> tuple[float, str] | None:
    if a.get("source") == b.get("source") == "nvml":
        pa, pb = _gpu_watts(a), _gpu_watts(b)
        if pa is None or pb is None:
            return None
        return (pa + pb) / 2 * seconds, "nvml"
    if a.get("source") == b.get("source") == "cpu":
        if a.get("rapl_uj") and b.get("rapl_uj"):
            joules = rapl.joules_between(a["rapl_uj"], b["rapl_uj"], {**(a.get("rapl_max_uj") or {}), **(b.get("rapl_max_uj") or {})})
            if joules is not None:
                return joules, "rapl"
        return rated.watts * seconds, "estimate"
    return None  # a sample of each source: NVML failed (or came back) between them


def intervals(samples: list[dict], rated: RatedPower, max_gap_s: float = MAX_GAP_S) -> tuple[list[Interval], float]:
    """The counted intervals between consecutive samples (by time) and the unmeasured seconds."""
    timed = sorted(((ts, s) for s in samples if (ts := parse_ts(s.get("ts"))) is not None), key=lambda p: p[0])
    out, unmeasured = [], 0.0
    for (ta, a), (tb, b) in zip(timed, timed[1:]):
        seconds = (tb - ta).total_seconds()
        if seconds <= 0:
            continue
        got = _interval_joules(a, b, seconds, rated) if seconds <= max_gap_s else None
        if got is None:
            unmeasured += seconds
            continue
        out.append(Interval(ta, tb, got[0], got[1]))
    return out, unmeasured


def _windows(trials: list[dict], last: datetime | None) -> dict[str, tuple[datetime, datetime]]:
    """Each trial's [started, ended]; a trial without an end (still running, or its run died)
    runs to the last sample."""
    out = {}
    for t in trials:
        start, end = parse_ts(t.get("started")), parse_ts(t.get("ended")) or last
        if start is not None and end is not None and end > start:
            out[str(t.get("trial_id", ""))] = (start, end)
    return out


def split_among_trials(counted: list[Interval], windows: dict[str, tuple[datetime, datetime]]) -> dict[str, float]:
    """Joules per trial: each interval cut at the trials' starts and ends, each piece shared
    equally by the trials running during it."""
    joules = dict.fromkeys(windows, 0.0)
    for iv in counted:
        cuts = {iv.t0, iv.t1}
        for start, end in windows.values():
            cuts.update(t for t in (start, end) if iv.t0 < t < iv.t1)
        points = sorted(cuts)
        for u, v in zip(points, points[1:]):
            middle = u + (v - u) / 2
            active = [tid for tid, (start, end) in windows.items() if start <= middle <= end]
            if active:
                share = iv.joules * (v - u).total_seconds() / iv.seconds / len(active)
                for tid in active:
                    joules[tid] += share
    return joules


def energy_use(samples: list[dict], trials: list[dict], *, cpu_model: str = "", cpus: int = 1) -> EnergyUse:
    """The run's and each trial's energy from its telemetry samples and trial records
    (dicts with trial_id, started, ended as in trial.json). `cpu_model` and `cpus` rate a CPU
    whose counters cannot be read."""
    if not cpu_model:  # the sampler records the CPU's name as its one device on CPU samples
        cpu_model = next((s["devices"][0].get("name", "") for s in samples if s.get("source") == "cpu" and s.get("devices")), "")
    rated = rated_power(cpu_model, cpus)
    counted, unmeasured = intervals(samples, rated)
    if not counted:
        return EnergyUse(None, (), 0.0, unmeasured)
    last = max(iv.t1 for iv in counted)
    per_trial = split_among_trials(counted, _windows(trials, last))
    used = tuple(b for b in BASES if any(iv.basis == b for iv in counted))
    return EnergyUse(
        total_wh=sum(iv.joules for iv in counted) / J_PER_WH,
        bases=used,
        measured_s=sum(iv.seconds for iv in counted),
        unmeasured_s=unmeasured,
        trials_wh={tid: j / J_PER_WH for tid, j in per_trial.items()},
        rated=rated if "estimate" in used else None,
    )
