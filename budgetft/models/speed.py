"""How big a model is and how fast a machine trains it, before anything is measured.

One model of parameter count and training speed, shared by calibration's fallback (a plan made
with nothing measured on this machine) and the cloud's instance choice:
- parameters: from the safetensors headers of a local copy (exact, no weights read), else from
  its configuration, else from its name (SmolLM2-135M, opt-1.3b), else an assumed size;
- work: ~6 FLOPs per parameter per training token (forward 2, backward 4: PEFT skips the frozen
  weights' gradients but still back-propagates through them, so 6 stays, conservatively) and 2
  per evaluation token;
- speed: a nominal sustained FLOP/s per device kind (below). A calibration replaces all of it.
"""

from __future__ import annotations

import json
import re
import struct
from functools import lru_cache
from pathlib import Path

from budgetft.hub import hub_reachable
from budgetft.models.architecture import ENCODER, architecture_from_config
from budgetft.models.configs import shipped_config
from budgetft.telemetry.precision import precision_for

# Imported inside functions: torch, transformers: importing this module must stay cheap (start-up
# time).

FLOPS_PER_PARAM_TOKEN_TRAIN = 6
FLOPS_PER_PARAM_TOKEN_EVAL = 2
# Sustained training FLOP/s when nothing was measured. CPU: on 2 EPYC cores a SmolLM2-135M LoRA
# step ran at ~155 GFLOP/s in fp32 and ~317 GFLOP/s under bf16 autocast (6 FLOPs per parameter
# per token, 1,300 tokens a step); we assume ~75% of that, per core pair, so plans err long.
# GPU: a conservative 2e13 (a V100 at ~16% of its 125 TFLOP/s fp16 peak; the cloud's table
# scales other GPUs from it).
NOMINAL_FLOPS = {"cpu": 1.2e11, "cpu-bf16": 2.4e11, "cuda": 2.0e13}


def nominal_flops(device_type: str) -> float:
    """The nominal speed of this machine's device kind, at the precision trials would use."""
    if device_type == "cpu":
        import torch

        if precision_for(torch.device("cpu")).dtype_name == "bfloat16":
            return NOMINAL_FLOPS["cpu-bf16"]
    return NOMINAL_FLOPS.get(device_type, NOMINAL_FLOPS["cpu"])
ASSUMED_PARAMS = 125e6  # when neither the files, the config nor the name says


def safetensors_parameters(folder: Path) -> int | None:
    """Exact parameter count from the headers of a directory's safetensors files."""
    files = sorted(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []
    if not files:
        return None
    total = 0
    for path in files:
        with path.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))  # header length, little-endian u64
            header = json.loads(fh.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                n = 1
                for dim in entry["shape"]:
                    n *= dim
                total += n
    return total


def name_parameters(model_name: str) -> float | None:
    """Parameters from a model name like SmolLM2-135M or opt-1.3b, if it says."""
    found = re.findall(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*([mb])(?![a-z])", model_name.lower())
    if not found:
        return None
    number, unit = found[-1]
    return float(number) * (1e6 if unit == "m" else 1e9)


def parameter_count(location: str, revision: str | None = None) -> tuple[float, str]:
    """(parameters, how they were found) for a model directory or hub id."""
    exact = safetensors_parameters(Path(location).expanduser())
    if exact:
        return float(exact), "counted from its safetensors headers"

    try:
        shipped = shipped_config(location)  # a configuration shipped for sizing (no hub needed)
        if not (shipped or Path(location).expanduser().is_dir() or hub_reachable()):
            raise OSError("no local copy and no hub")
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(shipped or location), revision=None if shipped else revision)
        return float(config_parameters(config)), "counted from its configuration (a weight-free model)"
    except Exception:  # noqa: BLE001 - offline hub id, unknown config: fall back to the name
        pass
    by_name = name_parameters(location)
    if by_name:
        return by_name, "read from its name"
    return ASSUMED_PARAMS, f"assumed ({ASSUMED_PARAMS / 1e6:.0f}M: its size is not known here)"


@lru_cache(maxsize=16)
def _counted(config_json: str) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    data = json.loads(config_json)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    auto = AutoModelForSequenceClassification if architecture_from_config(config) == ENCODER else AutoModelForCausalLM
    with torch.device("meta"):  # shapes only: no weight is allocated (a second or two for 8B)
        model = auto.from_config(config)
    # A tied weight (an input embedding that is also the output head) is one tensor, counted once.
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def config_parameters(config) -> int:
    """Every weight of the model a configuration describes, exactly (tied ones once), counted
    on a weight-free copy built on the meta device: Llama-3.1-8B's 8,030M, where 12·L·d² + V·d
    says 6,968M (it leaves out grouped-query attention, the gated MLP's third matrix and the
    untied output head)."""
    return _counted(config.to_json_string(use_diff=False))


def train_seconds_per_step(n_params: float, tokens_per_step: float, device_type: str = "cpu", flops: float | None = None) -> float:
    """Nominal wall seconds of one optimiser step over `tokens_per_step` tokens."""
    return FLOPS_PER_PARAM_TOKEN_TRAIN * n_params * tokens_per_step / (flops or nominal_flops(device_type))


def eval_rows_per_second(n_params: float, tokens_per_row: float, device_type: str = "cpu", flops: float | None = None) -> float:
    """Nominal rows scored per second (one forward pass of `tokens_per_row` tokens each)."""
    return (flops or nominal_flops(device_type)) / (FLOPS_PER_PARAM_TOKEN_EVAL * n_params * tokens_per_row)
