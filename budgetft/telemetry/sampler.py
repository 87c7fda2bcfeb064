"""A background sampler of GPU (NVML) or CPU (psutil) usage, one JSON line per sample.

Each line of telemetry.jsonl:

    {"ts": "2025-06-01T12:00:00.123Z",   # UTC, when the sample was taken
     "elapsed_s": 12.0,                   # seconds since the sampler started (monotonic clock)
     "source": "nvml" | "cpu",
     "cpu_pct": 37.5,                     # whole-machine CPU busy %, in both sources
     "devices": [{"index": 0, "name": "NVIDIA L4", "util_pct": 87.0,
                  "mem_used_mb": 10240.0, "mem_total_mb": 23034.0, "power_w": 61.2}],
     "processes": {"<trial_id>": 5120.0}, # per trial process: GPU memory (nvml) or RSS (cpu), MiB
     "rapl_uj": {"package-0": 123456789}, # only where RAPL counters can be read: each CPU package's
     "rapl_max_uj": {"package-0": 262143328850}}  # energy counter (uJ) and where it wraps to 0

A device's "energy_mj" (NVML's energy counter since the driver loaded, mJ; Volta and later) is
present only where NVML supports it. Energy per trial is integrated from these in energy.py.

For "cpu" there is one device: the CPU (name = its model, util_pct = cpu_pct, memory = the
machine's RAM in use, i.e. total - available; power_w = null). A value NVML does not support on
a GPU (power on some vGPUs, utilization under MIG) is null. A trial whose process NVML does not
list (not started on the GPU yet, or a container that hides host PIDs) is left out.

A missing or broken NVML never crashes a run: failing at start, the sampler samples the CPU;
failing mid-run, it writes one line with "error" saying why and samples the CPU from then on.
Any other failure inside the thread is swallowed after one log message: telemetry is for
watching a run, never a reason to lose one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable

import psutil

from budgetft.clock import utc_now
from budgetft.extras import hint_for
from budgetft.telemetry import rapl
from budgetft.telemetry.hardware import MIB, as_text, cpu_model

# Imported inside functions: pynvml: the [gpu] extra, installed only where needed.

log = logging.getLogger(__name__)


def utc_stamp() -> str:
    return utc_now("milliseconds")


class _Processes:
    """psutil.Process objects kept between samples, so each trial's pid is opened once."""

    def __init__(self):
        self._procs: dict[int, object] = {}

    def rss_mb(self, pid: int) -> float | None:
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            return proc.memory_info().rss / MIB
        except (psutil.Error, OSError):
            self._procs.pop(pid, None)
            return None


class TelemetrySampler:
    """Samples every `interval_s` seconds on a daemon thread and appends to `path`.

    `pids()` returns {trial_id: pid} of the trial processes running now (asked every sample).
    `nvml`: None imports pynvml; a module object stands in for it (tests); False samples the CPU.
    Use as a context manager, or start()/stop(); latest() is the newest sample for a live display.
    """

    def __init__(
        self,
        path: Path | str,
        interval_s: float = 1.0,
        pids: Callable[[], dict[str, int]] | None = None,
        nvml=None,
        powercap: Path | str | None = None,
    ):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.path = Path(path)
        self.interval_s = float(interval_s)
        self._pids = pids
        self._nvml_arg = nvml
        self._powercap = powercap  # None: /sys/class/powercap (tests pass a stand-in folder)
        self._rapl: list = []  # RAPL package zones this process can read (telemetry/rapl.py)
        self._nvml = None  # the module in use while NVML works
        self._handles: list = []
        self.source: str | None = None  # "nvml" | "cpu" once started
        self.note = ""  # why NVML is not used, when it is not
        self.samples_written = 0
        self._latest: dict | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fh = None
        self._t0 = 0.0
        self._procs = _Processes()
        self._cpu_name = ""
        self._failed = False

    # -- lifecycle

    def start(self) -> TelemetrySampler:
        if self._thread is not None:
            return self
        self._cpu_name = cpu_model()
        self._open_nvml()
        self._open_rapl()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered append: a resumed run adds to the same file; readers see whole lines.
        self._fh = open(self.path, "a", encoding="utf-8", buffering=1)
        self._t0 = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="budgetft-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling, write nothing more, release NVML. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))
            self._thread = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._close_nvml()

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def latest(self) -> dict | None:
        with self._lock:
            return None if self._latest is None else json.loads(json.dumps(self._latest))

    # -- NVML

    def _open_nvml(self) -> None:
        if self._nvml_arg is False:
            self.source, self.note = "cpu", "NVML not requested"
            return
        try:
            nvml = self._nvml_arg
            if nvml is None:
                import pynvml as nvml
            nvml.nvmlInit()
            try:
                handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            except Exception:
                _shutdown(nvml)
                raise
            if not handles:
                _shutdown(nvml)
                self.source, self.note = "cpu", "NVML found no GPU"
                return
            self._nvml, self._handles, self.source = nvml, handles, "nvml"
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.source, self.note = "cpu", f"NVML unavailable ({type(exc).__name__}: {exc}{hint_for(exc)})"
            log.info("telemetry: %s; sampling the CPU", self.note)

    def _open_rapl(self) -> None:
        try:
            self._rapl = rapl.zones(self._powercap if self._powercap is not None else rapl.POWERCAP)
        except Exception:  # never a reason to lose a run
            self._rapl = []

    def _close_nvml(self) -> None:
        if self._nvml is not None:
            _shutdown(self._nvml)
            self._nvml, self._handles = None, []

    # -- sampling

    def _loop(self) -> None:
        # CPU busy % is measured between two readings, and psutil keeps the previous reading per
        # thread: take it here, in the sampling thread, and the first sample one interval later.
        psutil.cpu_percent(interval=None)
        next_at = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.sample_once()
            except Exception:  # e.g. the disk filled up: lose samples, never the run
                if not self._failed:
                    log.exception("telemetry sample failed (further failures are not logged)")
                self._failed = True
            # Fixed cadence: the next tick, not `interval_s` after a slow sample; no burst to catch up.
            next_at = max(next_at + self.interval_s, time.monotonic())

    def sample_once(self) -> dict:
        """Take one sample now, write it (when started) and make it latest()."""
        cpu_pct = psutil.cpu_percent(interval=None)
        trials = self._trial_pids()
        sample: dict = {"ts": utc_stamp(), "elapsed_s": round(time.monotonic() - self._t0, 3)}
        if self._nvml is not None:
            try:
                devices, processes = self._nvml_sample(trials)
                sample.update(source="nvml", cpu_pct=cpu_pct, devices=devices, processes=processes)
            except Exception as exc:
                # NVML broke mid-run (driver reset, GPU fell off the bus): say so once, go on with the CPU.
                self.note = f"NVML failed mid-run ({type(exc).__name__}: {exc})"
                log.warning("telemetry: %s; sampling the CPU from now on", self.note)
                self._close_nvml()
                self.source = "cpu"
                sample["error"] = self.note
        if "source" not in sample:
            sample.update(source="cpu", cpu_pct=cpu_pct, **self._cpu_sample(cpu_pct, trials))
        if self._rapl:
            sample["rapl_uj"] = rapl.read(self._rapl)
            sample["rapl_max_uj"] = {z.name: z.max_uj for z in self._rapl}
        with self._lock:
            self._latest = sample
        if self._fh is not None:
            self._fh.write(json.dumps(sample) + "\n")
            self.samples_written += 1
        return sample

    def _trial_pids(self) -> dict[str, int]:
        if self._pids is None:
            return {}
        try:
            return {str(k): int(v) for k, v in (self._pids() or {}).items() if v}
        except Exception:
            log.debug("telemetry: the trial-pid callback failed", exc_info=True)
            return {}

    def _nvml_sample(self, trials: dict[str, int]) -> tuple[list[dict], dict[str, float]]:
        nvml = self._nvml
        devices = []
        used_by_pid: dict[int, float] = {}
        for i, h in enumerate(self._handles):
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            # % of the last sample period (1/6 s to 1 s, by GPU) in which a kernel was running.
            util = _optional(lambda: float(nvml.nvmlDeviceGetUtilizationRates(h).gpu))
            power = _optional(lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0)  # milliwatts -> W
            energy = _optional(lambda: int(nvml.nvmlDeviceGetTotalEnergyConsumption(h)))  # mJ since driver load
            device = {
                "index": i,
                "name": as_text(nvml.nvmlDeviceGetName(h)),
                "util_pct": util,
                "mem_used_mb": round(mem.used / MIB, 1),
                "mem_total_mb": round(mem.total / MIB, 1),
                "power_w": None if power is None else round(power, 1),
            }
            if energy is not None:
                device["energy_mj"] = energy
            devices.append(device)
            if trials:
                for p in _optional(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(h)) or []:
                    used = getattr(p, "usedGpuMemory", None)  # bytes; None where the driver hides it
                    if used is not None:
                        used_by_pid[p.pid] = used_by_pid.get(p.pid, 0.0) + used / MIB
        processes = {tid: round(used_by_pid[pid], 1) for tid, pid in trials.items() if pid in used_by_pid}
        return devices, processes

    def _cpu_sample(self, cpu_pct: float, trials: dict[str, int]) -> dict:
        vm = psutil.virtual_memory()
        device = {
            "index": 0,
            "name": self._cpu_name or cpu_model(),
            "util_pct": cpu_pct,
            "mem_used_mb": round((vm.total - vm.available) / MIB, 1),
            "mem_total_mb": round(vm.total / MIB, 1),
            "power_w": None,
        }
        processes = {}
        for tid, pid in trials.items():
            rss = self._procs.rss_mb(pid)
            if rss is not None:
                processes[tid] = round(rss, 1)
        return {"devices": [device], "processes": processes}


def _optional(read: Callable):
    """A reading some GPUs do not support (NVMLError_NotSupported): None instead of a failure."""
    try:
        return read()
    except Exception:
        return None


def _shutdown(nvml) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass
