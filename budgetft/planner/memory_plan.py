"""The memory plan: for each of a job's options ((model, method) pair), how it trains within a
GPU's memory, decided before a cent is spent from the model's configuration alone
(budgetft.planner.memory).

For a GPU of M bytes an option takes the first of these that fits, in this order: the whole
batch in one pass, then the batch in halves (micro-batches; gradient accumulation keeps the
step's rows), each without activation checkpointing (train.gradient_checkpointing: auto), then
the same with checkpointing (~1/3 more compute, a fraction of the activations); for LoRA, a
4-bit NF4 base (QLoRA) when no 16-bit choice fits. An option that fits no way on a GPU is
refused there, with the smallest catalogue GPU that would hold it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

from budgetft import methods
from budgetft.models.errors import ModelError
from budgetft.models.placement import BYTES_PER_ELEMENT
from budgetft.money.gpu_names import GPU_LABELS
from budgetft.planner import memory_correction
from budgetft.planner.memory import MemoryOption, ModelShape, model_shape, predict_peak
from budgetft.planner.options import choices
from budgetft.search_space import parse_space, point

# Imported inside functions: torch, transformers (through budgetft.planner.memory's shapes).

# GPUs without bf16 tensor cores train in fp16: the same two bytes a weight.
FP16_GPUS = ("nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100")


def gpu_memory_bytes(gpu: str) -> float:
    """A catalogue GPU's memory (its label's figure, GB as NVIDIA counts them: 1e9 bytes)."""
    match = re.search(r"(\d+)GB", GPU_LABELS.get(gpu, ""))
    return float(match.group(1)) * 1e9 if match else 0.0


def catalogue_gpus() -> list[str]:
    """Every catalogue GPU with a known memory, smallest first."""
    return sorted((g for g in GPU_LABELS if gpu_memory_bytes(g)), key=gpu_memory_bytes)


@dataclass
class Fit:
    """How an option trains on one GPU (or that it does not)."""

    gpu: str
    memory_bytes: float
    fits: bool
    micro_batch: int | None = None
    checkpointing: bool | None = None
    quantization: str | None = None
    peak_bytes: float | None = None  # the chosen way's predicted peak (or the leanest way's, when nothing fits)
    parts_gb: dict = field(default_factory=dict)
    # A LoRA turned into QLoRA here: what its leanest 16-bit way needed (bytes).
    sixteen_bit_bytes: float | None = None
    # What the prediction was multiplied by: this machine's measured / predicted (1: none yet).
    scale: float = 1.0

    def layout(self, method: str) -> dict:
        """What a trial of `method` (the option's) is told to do here: its micro-batch, whether
        to checkpoint activations, and the method it runs as (qlora for a LoRA that fits only on
        a 4-bit base), with the prediction it rests on (trial specs and calibration read it)."""
        runs_as = "qlora" if self.quantization and method != "qlora" else method
        layout = {"micro_batch": self.micro_batch, "checkpointing": bool(self.checkpointing), "method": runs_as,
                  "quantization": self.quantization, "predicted_bytes": round(self.peak_bytes or 0), "memory_bytes": round(self.memory_bytes),
                  "scale": round(self.scale, 4)}
        if runs_as != method:
            layout["converted_from"] = method
            layout["sixteen_bit_bytes"] = round(self.sixteen_bit_bytes or 0)
        return layout

    def words(self) -> str:
        if not self.fits:
            return f"does not fit {GPU_LABELS.get(self.gpu, self.gpu)}: its leanest way needs {self.peak_bytes / 1e9:.1f} GB of {self.memory_bytes / 1e9:.0f}"
        how = [f"micro-batch {self.micro_batch}", "checkpointing" if self.checkpointing else "no checkpointing"]
        if self.quantization:
            how.append(f"{self.quantization} base (QLoRA)")
        words = f"{', '.join(how)}: {self.peak_bytes / 1e9:.1f} GB of {self.memory_bytes / 1e9:.0f}"
        if self.sixteen_bit_bytes:
            words += f" (turned into QLoRA: its leanest 16-bit way needs {self.sixteen_bit_bytes / 1e9:.1f} GB)"
        return words


@dataclass
class OptionMemory:
    """One option's memory plan across GPUs."""

    key: str
    model: str
    method: str
    batch: int
    length: int
    trainable: int
    params: int
    unquantized_peak_bytes: float  # the whole batch, no checkpointing, 16-bit base: what a naive run would need
    fits: dict[str, Fit]  # gpu -> how it trains there
    smallest_gpu: str | None  # the smallest catalogue GPU it fits

    def fitting(self) -> list[str]:
        return [g for g, f in self.fits.items() if f.fits]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["fits_on"] = self.fitting()
        return data


def option_memory(shape: ModelShape, key: str, model: str, method_name: str, batch: int, length: int, *,
                  micro: int | None = None, checkpointing: str = "auto", trainable: int | None = None,
                  gpus: list[str] | None = None, dropout: float | None = None) -> OptionMemory:
    """`key`'s memory plan on every GPU in `gpus` (default: the catalogue's)."""
    method = methods.get(method_name)
    gpus = gpus or catalogue_gpus()
    fits = {g: fit_on(shape, method, batch, length, gpu_memory_bytes(g), _dtype(g), micro=micro, checkpointing=checkpointing,
                      trainable=trainable, gpu=g, dropout=dropout) for g in gpus}
    base = MemoryOption(method=method.name, micro_batch=batch, length=length, quantization=method.quantization, trainable=trainable, dropout=dropout)
    naive = predict_peak(shape, base).total_bytes
    smallest = next((g for g in catalogue_gpus() if g in fits and fits[g].fits), None)
    if smallest is None:
        smallest = next((g for g in catalogue_gpus() if fit_on(shape, method, batch, length, gpu_memory_bytes(g), _dtype(g), micro=micro,
                                                              checkpointing=checkpointing, trainable=trainable, gpu=g, dropout=dropout).fits), None)
    return OptionMemory(key, model, method.name, batch, length, trainable or 0, shape.params, naive, fits, smallest)


def fit_on(shape: ModelShape, method, batch: int, length: int, memory: float, dtype: str = "bfloat16", *, micro: int | None = None,
           checkpointing: str = "auto", trainable: int | None = None, gpu: str = "", device: str = "cuda", dropout: float | None = None,
           scale: float = 1.0) -> Fit:
    """The first way that fits `memory` bytes (see the module's docstring). `scale`: what this
    machine's calibrations measured against the predictions (budgetft.planner.memory_correction)."""
    micros = [micro] if micro else _halvings(batch)
    ckpts = {"auto": [False, True], "true": [True], "false": [False]}[checkpointing]
    quants = [method.quantization]
    if method.quantization is None and method.name in ("lora", "rslora", "dora") and shape.architecture == "decoder":
        quants.append("nf4")  # LoRA's adapters over a 4-bit base: QLoRA, when nothing 16-bit fits
    leanest = None
    leanest_16 = None
    for quant in quants:
        for ckpt in ckpts:
            for m in micros:
                option = MemoryOption(method=method.name, micro_batch=m, length=length, device=device, weight_dtype=dtype, compute_dtype=dtype,
                                      quantization=quant, checkpointing=ckpt, trainable=trainable, dropout=dropout)
                estimate = predict_peak(shape, option)
                peak = estimate.total_bytes * scale
                if leanest is None or peak < leanest.peak_bytes:
                    leanest = Fit(gpu, memory, False, m, ckpt, quant, peak, estimate.parts_gb())
                if peak <= memory:
                    sixteen = leanest_16 if quant and not method.quantization else None
                    return Fit(gpu, memory, True, m, ckpt, quant, peak, estimate.parts_gb(), sixteen)
        leanest_16 = leanest.peak_bytes if leanest is not None else None
    return leanest


def _halvings(batch: int) -> list[int]:
    out, m = [], batch
    while m >= 1:
        out.append(m)
        if m == 1:
            break
        m = max(1, m // 2)
    return out


def _dtype(gpu: str) -> str:
    return "float16" if gpu in FP16_GPUS else "bfloat16"


@dataclass(frozen=True)
class OptionInputs:
    """What an option's memory depends on, from its job variant (budgetft.planner.options)."""

    key: str
    model: str
    shape: ModelShape
    method: object  # budgetft.methods.base.Method
    batch: int
    length: int  # the padded length of the longest batch: the longest prompt and its label word
    micro: int | None
    checkpointing: str  # auto | true | false
    trainable: int
    dropout: float | None


def option_inputs(job, choice, length: int | None = None) -> OptionInputs:
    variant = job.variant(choice.model)
    shape = model_shape(variant.model.name, variant.model.revision, num_labels=len(variant.prompt.labels),
                        architecture=variant.model.architecture)
    method = methods.get(choice.method)
    config = point(parse_space(variant.space_for(method.name)), method.defaults)
    t = variant.train
    return OptionInputs(choice.key, choice.model, shape, method, t.batch_size, length or variant.prompt.max_length + 1, t.micro_batch_size,
                        t.gradient_checkpointing, _trainable(shape, variant, method, config), t.dropout)


def job_memory(job, gpus: list[str] | None = None, lengths: dict[str, int] | None = None) -> list[OptionMemory]:
    """Every option of the job, planned on `gpus` (default: the catalogue's). `lengths`: model ->
    the padded length a batch reaches (default: the prompt's max_length, the longest a row is)."""
    out = []
    for c in choices(job):
        o = option_inputs(job, c, (lengths or {}).get(c.model))
        out.append(option_memory(o.shape, c.key, c.model, o.method.name, o.batch, o.length, micro=o.micro,
                                 checkpointing=o.checkpointing, trainable=o.trainable, gpus=gpus, dropout=o.dropout))
    return out


class NothingFits(ModelError):
    """No option of the job fits this machine's GPU, whatever the plan does. The message names
    the numbers and the smallest catalogue GPU that would hold the leanest option."""


def device_plan(job, options: list, memory_bytes: float, dtype: str, device_name: str) -> tuple[dict[str, Fit], dict[str, str]]:
    """How each option (budgetft.planner.options.Choice) trains on this machine's GPU of
    `memory_bytes` bytes, its predictions scaled by what calibrations measured here
    (budgetft.planner.memory_correction): ({option key: its Fit}, {option key: why it cannot
    train here, in words}). Raises NothingFits when no option can: before anything is spent."""
    fits: dict[str, Fit] = {}
    refused: dict[str, str] = {}
    for c in options:
        o = option_inputs(job, c)
        scale = memory_correction.factor(device_name, c.model, o.method.name)
        fit = fit_on(o.shape, o.method, o.batch, o.length, memory_bytes, dtype, micro=o.micro, checkpointing=o.checkpointing,
                     trainable=o.trainable, gpu=device_name, dropout=o.dropout, scale=scale)
        fit.scale = scale
        if fit.fits:
            fits[c.key] = fit
            continue
        smallest = next((g for g in catalogue_gpus() if fit_on(o.shape, o.method, o.batch, o.length, gpu_memory_bytes(g), _dtype(g), micro=o.micro,
                                                              checkpointing=o.checkpointing, trainable=o.trainable, dropout=o.dropout,
                                                              scale=scale).fits), None)
        hint = f"the smallest GPU that would hold it: {GPU_LABELS.get(smallest, smallest)}" if smallest else "no catalogue GPU would hold it"
        how = f"micro-batch {fit.micro_batch}" + (", checkpointing" if fit.checkpointing else "") + (", a 4-bit base" if fit.quantization else "")
        refused[c.key] = f"its leanest way ({how}) needs {fit.peak_bytes / 1e9:.1f} GB of this GPU's {memory_bytes / 1e9:.1f} GB; {hint}"
    if not fits:
        raise NothingFits(f"no option of job {job.name!r} fits {device_name} ({memory_bytes / 1e9:.1f} GB): "
                          + "; ".join(f"{k}: {why}" for k, why in refused.items())
                          + "; use a GPU with more memory, a shorter prompt.max_length or a smaller train.batch_size")
    return fits, refused


def _trainable(shape: ModelShape, job, method, config: dict) -> int:
    """The method's trainable weights at its default point, counted on a weight-free model."""
    from transformers import AutoConfig

    from budgetft.models.configs import shipped_config

    try:
        shipped = shipped_config(job.model.name)
        cfg = AutoConfig.from_pretrained(str(shipped or job.model.name))
        if shape.architecture == "encoder":
            cfg.num_labels = len(job.prompt.labels)
        trainable, _ = method.count_params(cfg, {k: v for k, v in config.items() if k in method.params})
        return int(trainable)
    except Exception:  # noqa: BLE001 - a method that cannot be counted weight-free: LoRA's estimate
        return int(8 * 2 * shape.lora_sites.get("all-linear", 0) * shape.layers)


def with_local_memory(option: OptionMemory, gpu_label: str, memory_bytes: float, shape: ModelShape, dtype: str) -> Fit:
    """How an option trains on this machine's GPU (its memory as torch reports it)."""
    return fit_on(shape, methods.get(option.method), option.batch, option.length, memory_bytes, dtype, trainable=option.trainable or None, gpu=gpu_label)


def bytes_per_weight(dtype: str) -> int:
    return BYTES_PER_ELEMENT[dtype]


__all__ = ["Fit", "OptionMemory", "catalogue_gpus", "fit_on", "gpu_memory_bytes", "job_memory", "option_memory", "replace"]
