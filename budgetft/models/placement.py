"""Where a model's weights live and in what dtype: one decision per run, shared by every stage
that runs a model (baselines, calibration, trials, the held-out test, predict, export).

- CUDA, compute capability >= 8.0 (A100, L4, H100): weights in bf16, loaded straight onto the
  GPU (transformers' device_map), never through an fp32 copy on the host: an 8B model then needs
  16 GB of GPU memory, not 32, before its first step.
- CUDA 7.x and 6.0 (V100, T4, P100): fp16 weights (no bf16 tensor cores there).
- Other GPUs, and the CPU: fp32 weights, as before (on a CPU, bf16 autocast over fp32 weights is
  what was measured fastest and what the README's job trains with: budgetft.telemetry.precision).
- quantization "nf4": the base's linear layers in 4-bit NormalFloat with double quantization
  (QLoRA, Dettmers et al. 2023) through bitsandbytes; the rest in the compute dtype.

Trainable parameters keep fp32 master weights whatever the weight dtype (prepare_trainable): an
AdamW update of a bf16 weight rounds most small steps away (bf16 has an 8-bit mantissa), and
fp16 loss scaling refuses fp16 gradients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from budgetft.models.errors import ModelError
from budgetft.telemetry.precision import precision_for

# Imported inside functions: torch, transformers, bitsandbytes: importing this module must stay
# cheap (start-up time).

QUANTIZATIONS = ("nf4",)
BYTES_PER_ELEMENT = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu", "cuda", "cuda:1"
    weight_dtype: str  # float32 | bfloat16 | float16: what the frozen weights are stored in
    quantization: str | None = None  # None | "nf4": the base's linear layers in 4 bits

    @property
    def device_kind(self) -> str:
        return self.device.split(":")[0]

    def torch_device(self):
        import torch

        return torch.device(self.device)

    def torch_dtype(self):
        import torch

        return getattr(torch, self.weight_dtype)

    def describe(self) -> str:
        quant = f", {self.quantization} base" if self.quantization else ""
        return f"{self.device}, {self.weight_dtype} weights{quant}"

    def to_dict(self) -> dict:
        return asdict(self)

    def with_quantization(self, quantization: str | None) -> "Placement":
        """The same device with the base quantized (or not); a 4-bit base computes in bf16 (fp16
        on a GPU without bf16), so its other weights are stored in that dtype."""
        if quantization is None:
            return Placement(self.device, self.weight_dtype)
        if quantization not in QUANTIZATIONS:
            raise ModelError(f"quantization {quantization!r}; valid: {', '.join(QUANTIZATIONS)}")
        dtype = self.weight_dtype if self.weight_dtype != "float32" else "bfloat16"
        return Placement(self.device, dtype, quantization)

    def move(self, model):
        """The model on this device: a no-op for a model loaded there (every model of a run is)
        and for a quantized one (bitsandbytes' layers are placed when they load)."""
        if self.quantization is None:
            model.to(self.torch_device())
        return model

    def prepare_trainable(self, model) -> int:
        """Before the first step, once the method has chosen what trains: fp32 master weights for
        every trainable parameter stored in a 16-bit dtype (autocast still computes in bf16/fp16
        with them), and a storage of its own for every trainable tensor that is the process's held
        model's (budgetft.models.cache: the next trial gets the weights as read). Returns how many
        tensors were given new storage."""
        import torch

        from budgetft.models import cache

        changed = 0
        for param in model.parameters():
            if not param.requires_grad:
                continue
            if param.dtype in (torch.bfloat16, torch.float16):
                param.data = param.data.float()
            elif cache.shares_storage(param):
                param.data = param.data.clone()
            else:
                continue
            changed += 1
        return changed


def placement_for(device=None, quantization: str | None = None) -> Placement:
    """The placement trials use on `device` (default: the first GPU, else the CPU)."""
    import torch

    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    name = str(device) if device.type != "cuda" or device.index is not None else "cuda"
    dtype = "float32"
    if device.type == "cuda":
        precision = precision_for(device)
        dtype = precision.dtype_name if precision.autocast else "float32"
    placement = Placement(name, dtype)
    return placement.with_quantization(quantization) if quantization else placement


def quantization_config(placement: Placement):
    """transformers' BitsAndBytesConfig for a quantized placement (None otherwise); refuses, with
    the install line, where bitsandbytes is missing."""
    if placement.quantization is None:
        return None
    try:
        import bitsandbytes  # noqa: F401 - only checked: transformers imports it when loading
    except ImportError:
        raise ModelError("a 4-bit (nf4) base needs bitsandbytes: `pip install 'budgetft[gpu]'` (or pip install bitsandbytes)") from None
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if placement.weight_dtype == "bfloat16" else torch.float16
    # NF4 with double quantization: ~0.52 bytes a weight (4 bits plus an 8-bit absmax per 64
    # weights, itself scaled per 256 blocks): QLoRA's settings.
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute)
