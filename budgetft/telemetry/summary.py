"""What telemetry.jsonl says about a run: per-trial mean utilization and peak memory, a
one-line live view, and a utilization-over-time plot.

A trial's figures come from the samples taken between its start and end (trial.json's
`started`/`ended`, UTC ISO). Utilization is the mean over those samples and over all devices
(with several trials packed on one GPU, each sees the GPU's shared utilization). Peak memory is
the trial's own process (GPU memory under NVML, RSS on CPU) when the sampler knew its pid, else
the device's memory in use, and `mem_basis` says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean

# Imported inside functions: matplotlib: importing this module must stay cheap (start-up time).


@dataclass(frozen=True)
class TrialUsage:
    trial_id: str
    samples: int
    mean_util_pct: float | None
    peak_mem_mb: float | None
    mem_basis: str  # process | device | none
    source: str | None  # nvml | cpu

    def to_dict(self) -> dict:
        return {"trial_id": self.trial_id, "samples": self.samples, "mean_util_pct": self.mean_util_pct,
                "peak_mem_mb": self.peak_mem_mb, "mem_basis": self.mem_basis, "source": self.source}


def read_samples(path: Path | str) -> list[dict]:
    """Every whole sample in the file; a line cut short (the run is still writing, or crashed
    mid-line) is skipped. A missing file is no samples."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        if isinstance(sample, dict) and "ts" in sample:
            out.append(sample)
    return out


def parse_ts(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def samples_between(samples: list[dict], start, end=None) -> list[dict]:
    """Samples with start <= ts <= end (end None: to the last sample). Trial times are whole
    seconds, so the window is widened by 1 s each side to keep the samples at its edges."""
    t0, t1 = parse_ts(start), parse_ts(end)
    if t0 is None:
        return []
    out = []
    for s in samples:
        ts = parse_ts(s.get("ts"))
        if ts is None:
            continue
        if (ts - t0).total_seconds() >= -1 and (t1 is None or (ts - t1).total_seconds() <= 1):
            out.append(s)
    return out


def usage(samples: list[dict], trial_id: str | None = None) -> TrialUsage:
    utils = [d["util_pct"] for s in samples for d in s.get("devices", []) if d.get("util_pct") is not None]
    own = [s["processes"][trial_id] for s in samples if trial_id and trial_id in (s.get("processes") or {})]
    if own:
        peak, basis = max(own), "process"
    else:
        used = [sum(d.get("mem_used_mb") or 0 for d in s.get("devices", [])) for s in samples if s.get("devices")]
        peak, basis = (max(used), "device") if used else (None, "none")
    sources = {s.get("source") for s in samples}
    source = sources.pop() if len(sources) == 1 else ("mixed" if sources else None)
    return TrialUsage(trial_id or "", len(samples), round(mean(utils), 1) if utils else None,
                      None if peak is None else round(peak, 1), basis, source)


def trial_usage(samples: list[dict], trials: list[dict]) -> dict[str, TrialUsage]:
    """Per trial (dicts with trial_id, started, ended as in trial.json): its usage figures."""
    out = {}
    for t in trials:
        tid = str(t.get("trial_id", ""))
        out[tid] = usage(samples_between(samples, t.get("started"), t.get("ended")), tid)
    return out


def live_text(sample: dict | None) -> str:
    """One line for the live display, e.g. 'GPU0 NVIDIA L4 87% 10.0/22.5 GiB 61 W'."""
    if not sample:
        return "telemetry: waiting for the first sample"
    parts = []
    for d in sample.get("devices", []):
        label = f"GPU{d['index']}" if sample.get("source") == "nvml" else "CPU"
        util = "?" if d.get("util_pct") is None else f"{d['util_pct']:.0f}%"
        mem = f"{(d.get('mem_used_mb') or 0) / 1024:.1f}/{(d.get('mem_total_mb') or 0) / 1024:.1f} GiB"
        power = f" {d['power_w']:.0f} W" if d.get("power_w") is not None else ""
        parts.append(f"{label} {d.get('name', '')} {util} {mem}{power}")
    return "  ".join(parts) or "telemetry: no devices"


def plot_utilization(path_png: Path | str, samples: list[dict], trials: list[dict] | None = None) -> Path | None:
    """Utilization (%) and memory in use (% of total) of every device over the run's minutes,
    with each trial's span shaded. None when there is nothing to plot."""
    points = [(ts, s) for s in samples if s.get("devices") and (ts := parse_ts(s.get("ts"))) is not None]
    if not points:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # elapsed_s restarts when a resumed run starts a new sampler, so minutes come from ts.
    t0 = points[0][0]
    fig = Figure(figsize=(9.0, 4.2), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    series: dict[tuple[int, str], list[tuple[float, float | None, float | None]]] = {}
    for ts, s in points:
        minute = (ts - t0).total_seconds() / 60
        for d in s["devices"]:
            kind = "GPU" if s.get("source") == "nvml" else "CPU"
            total = d.get("mem_total_mb") or 0
            mem_pct = 100 * d["mem_used_mb"] / total if total and d.get("mem_used_mb") is not None else None
            series.setdefault((d.get("index", 0), kind), []).append((minute, d.get("util_pct"), mem_pct))
    for n, ((index, kind), pts) in enumerate(sorted(series.items())):
        c = palette[n % len(palette)]
        name = f"{kind}{index}" if kind == "GPU" else "CPU"
        util = [(m, u) for m, u, _ in pts if u is not None]
        mem = [(m, p) for m, _, p in pts if p is not None]
        if util:
            ax.plot(*zip(*util), color=c, lw=1.2, label=f"{name} utilization")
        if mem:
            memory = f"{name} memory" if kind == "GPU" else "RAM"
            ax.plot(*zip(*mem), color=c, lw=1.0, ls="--", alpha=0.7, label=f"{memory} in use")
    last = max(m for pts in series.values() for m, _, _ in pts)
    for i, t in enumerate(trials or []):  # spans clipped to the sampled minutes
        start, end = parse_ts(t.get("started")), parse_ts(t.get("ended"))
        if start is None:
            continue
        a = max(0.0, (start - t0).total_seconds() / 60)
        b = min(last, (end - t0).total_seconds() / 60) if end else last
        if b > a:
            ax.axvspan(a, b, color="#999999", alpha=0.08 if i % 2 else 0.16, lw=0)
    ax.set_xlabel("minutes since the first sample")
    ax.set_ylabel("% (utilization; memory in use of total)")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Hardware utilization over time" + (" (shaded: trials)" if trials else ""), fontsize=10)
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
