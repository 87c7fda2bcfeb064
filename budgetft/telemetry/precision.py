"""Training precision per device: the fastest arithmetic that still trains correctly.

- CUDA compute capability >= 8.0 (A100, L4, H100): bf16 autocast. bf16 has fp32's exponent
  range, so gradients do not underflow and no loss scaling is needed; the fp32 parts (optimizer,
  anything autocast keeps in fp32) use TF32 tensor-core matmuls (10-bit mantissa, ~8x fp32 rate).
- 7.x (V100 7.0, T4 7.5) and 6.0 (P100): no bf16 tensor cores (torch may report bf16 as
  "supported" there, but it is emulated and slow), so fp16 autocast with dynamic loss scaling:
  fp16's smallest normal number is 6e-5, and small gradients would flush to zero unscaled.
- Other GPUs (6.1 and older consumer cards have fp16 at 1/64 rate) and unknown capability: fp32.
- CPU: fp32, unless bf16 autocast was measured faster on this CPU (AMX / AVX512-BF16 parts);
  elsewhere CPU bf16 is emulated and slower.

The master weights stay fp32 everywhere: autocast lowers only the compute of eligible ops.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from statistics import median
from typing import Callable

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

# bf16 on CPU must beat fp32 by this much to be used: timing a few steps is noisy.
CPU_BF16_MIN_GAIN = 0.10


@dataclass(frozen=True)
class Precision:
    dtype_name: str  # autocast compute dtype: bfloat16 | float16 | float32
    autocast: bool
    loss_scaling: bool  # fp16 only: torch.amp.GradScaler
    tf32: bool  # TF32 for fp32 matmuls (CUDA, capability >= 8.0)
    reason: str
    device_kind: str = "cpu"  # cuda | cpu

    def to_dict(self) -> dict:
        """For the trial's metrics."""
        return asdict(self)


def pick_device():
    """The device a trial runs on: the first GPU, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# BUDGETFT_PRECISION=fp32 | bf16 | auto (default) overrides the choice on a CPU (benchmarks
# compare both; the test suite pins fp32 so tiny models give exact numbers).
PRECISION_ENV = "BUDGETFT_PRECISION"
# CPU instruction sets with native bf16 arithmetic, as /proc/cpuinfo names them. On 2 AMD EPYC
# cores with avx512_bf16, bf16 autocast made a SmolLM2-135M LoRA step 2.05x faster (6.81 -> 3.32 s,
# batch 8, the same five batches) and scoring 1.53x faster (4.89 -> 7.50 rows/s); without such
# instructions torch emulates bf16 and it is slower than fp32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (Linux: its /proc/cpuinfo flags)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return any(flag in line.split() for flag in NATIVE_BF16_FLAGS)
    return False


def precision_for(device) -> Precision:
    """bf16 autocast on Ampere and later, fp16 with loss scaling on V100/T4; on a CPU bf16 autocast
    where it computes bf16 natively, else fp32 (BUDGETFT_PRECISION overrides the CPU's choice)."""
    import torch

    if device.type == "cuda":
        return choose_precision("cuda", torch.cuda.get_device_capability(device))
    wanted = os.environ.get(PRECISION_ENV, "auto").strip().lower()
    if wanted not in ("auto", "fp32", "bf16"):
        raise ValueError(f"{PRECISION_ENV}={wanted!r}: use fp32, bf16 or auto")
    if wanted == "auto":
        native = cpu_has_native_bf16()
        return choose_precision(device.type, None, bf16_faster_on_cpu=native, reason="this CPU computes bf16 natively" if native else "")
    return choose_precision(device.type, None, bf16_faster_on_cpu=wanted == "bf16", reason=f"{PRECISION_ENV}={wanted}")


def choose_precision(
    device_kind: str,
    capability: tuple[int, int] | None = None,
    bf16_faster_on_cpu: bool = False,
    reason: str = "",
) -> Precision:
    kind = "cuda" if device_kind in ("cuda", "gpu") else device_kind
    if kind == "cuda":
        if capability is None:
            return Precision("float32", False, False, False, "GPU compute capability unknown: fp32 to be safe", kind)
        major, minor = int(capability[0]), int(capability[1])
        cc = f"{major}.{minor}"
        if major >= 8:
            return Precision(
                "bfloat16", True, False, True,
                f"compute capability {cc} has bf16 tensor cores: bf16 autocast (fp32's exponent range, no loss "
                "scaling) and TF32 for the remaining fp32 matmuls",
                kind,
            )
        if major == 7 or (major, minor) == (6, 0):
            return Precision(
                "float16", True, True, False,
                f"compute capability {cc} has fp16 but no bf16 tensor cores: fp16 autocast with dynamic loss "
                "scaling, so small gradients do not underflow",
                kind,
            )
        slow = f"compute capability {cc} has slow fp16 and no bf16: fp32"
        return Precision("float32", False, False, False, slow, kind)
    if kind == "cpu" and bf16_faster_on_cpu:
        return Precision("bfloat16", True, False, False, f"CPU: bf16 autocast ({reason or 'measured faster than fp32'})", kind)
    if kind == "cpu":
        return Precision("float32", False, False, False, f"CPU: fp32 ({reason or 'bf16 is not native here'})", kind)
    return Precision("float32", False, False, False, f"{device_kind}: fp32", kind)


def apply_precision(p: Precision) -> dict:
    """Process-wide matmul settings for `p`; returns what was set, for the trial's metrics.
    'high' lets fp32 matmuls use TF32 on CUDA; 'highest' keeps them exact fp32."""
    import torch

    setting = "high" if p.tf32 else "highest"
    torch.set_float32_matmul_precision(setting)
    return {"float32_matmul_precision": setting}


def autocast(p: Precision):
    """The context to run forward passes (and the loss) in; a no-op for fp32."""
    if not p.autocast:
        return nullcontext()
    import torch

    return torch.autocast(device_type=p.device_kind, dtype=getattr(torch, p.dtype_name))


def grad_scaler(p: Precision):
    """A GradScaler that scales only for fp16 and passes through otherwise, so the loop is always
    scaler.scale(loss).backward(); scaler.unscale_(opt); clip; scaler.step(opt); scaler.update()."""
    import torch

    return torch.amp.GradScaler(p.device_kind if p.device_kind in ("cuda", "cpu") else "cpu", enabled=p.loss_scaling)


def measure_cpu_bf16(step: Callable[[], object], repeats: int = 3, min_gain: float = CPU_BF16_MIN_GAIN) -> dict:
    """Time `step` (e.g. one forward+backward on a micro-batch) in fp32 and under CPU bf16
    autocast; bf16 counts as faster only when its median beats fp32's by `min_gain`.
    One untimed warm-up call each (allocations, oneDNN kernel selection)."""
    import torch

    def timed(ctx_factory) -> float:
        with ctx_factory():
            step()
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            with ctx_factory():
                step()
            times.append(time.perf_counter() - t0)
        return median(times)

    fp32 = timed(nullcontext)
    bf16 = timed(lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16))
    faster = bf16 > 0 and fp32 >= bf16 * (1 + min_gain)
    return {"fp32_s": fp32, "bf16_s": bf16, "bf16_speedup": fp32 / bf16 if bf16 > 0 else None, "bf16_faster": faster}
