"""Which device trials run on, in words and as a kind: the name selects stored rates and goes
into run.json; the kind ("cuda" or "cpu") selects nominal speeds and the precision."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def device_type() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name() -> str:
    """The GPU's name (as torch reports it), or the CPU's model and core count."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} x{os.cpu_count()}"


def gpu_memory_bytes(index: int = 0) -> float | None:
    """The GPU's memory as torch sees it (bytes), or None without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.get_device_properties(index).total_memory)


def reset_peak_memory(index: int = 0) -> None:
    """Start a new peak for true_peak_bytes (a no-op without a GPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(index)


def true_peak_bytes(index: int = 0) -> float | None:
    """What this process needed of the GPU at its peak since reset_peak_memory: the most the
    caching allocator held (reserved, not just allocated: its rounding and fragmentation have to
    fit too) plus what the process holds outside it (the CUDA context and libraries' handles);
    None without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.max_memory_reserved(index)) + context_bytes(index)


def context_bytes(index: int = 0) -> float:
    """GPU memory this process holds outside torch's allocator: NVML's figure for this process
    (where the driver shows it) less what the allocator holds now; else the device's used memory
    less it (exact when this process is the GPU's only user, as during calibration)."""
    import torch

    reserved = float(torch.cuda.memory_reserved(index))
    used = _nvml_process_bytes(index)
    if used is None:
        free, total = torch.cuda.mem_get_info(index)
        used = float(total - free)
    return max(0.0, used - reserved)


def _nvml_process_bytes(index: int) -> float | None:
    try:
        import pynvml as nvml

        nvml.nvmlInit()
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        mine = [p for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid == os.getpid()]
        used = getattr(mine[0], "usedGpuMemory", None) if mine else None  # None where the driver hides it
        return float(used) if used else None
    except Exception:  # noqa: BLE001 - no NVML, a MIG slice, another pid namespace: use the fallback
        return None
