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
