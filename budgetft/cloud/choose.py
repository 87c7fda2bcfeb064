"""Which catalogue instance buys the most training for this job and budget.

Training bought = examples/s on the instance x the seconds the budget leaves for the run (after
the VM's fixed overheads, which is why a fast but expensive GPU can lose on a small budget).

Examples/s on a GPU = examples/s on a V100 x that GPU's relative training throughput (the table
below). The V100 figure is calibrated when a run directory's calibration.json measured this job
on a catalogue GPU (converted back through the same table), else estimated from the model size.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from budgetft.cloud.estimate import overhead_seconds
from budgetft.models.speed import parameter_count, train_seconds_per_step
from budgetft.money.catalog import DEFAULT_REGION, Catalog, Instance
from budgetft.money.gpu_names import GPU_LABELS, gpu_for_nvml_name, resolve_gpu
from budgetft.money.errors import CatalogError, UnknownName

# Training throughput relative to a V100 16GB, for mixed-precision fine-tuning of small and mid
# transformers (0.1-1B parameters). Our own rounding of public figures: Lambda Labs' PyTorch
# training benchmarks (V100 = 1, A100 ~2.2, H100 ~3.5-4) and NVIDIA's data sheets for the rest
# (fp16 tensor throughput and memory bandwidth: T4 is power-capped at 70 W and has 320 GB/s;
# P100 has no tensor cores; L4 has ~1/3 of a V100's bandwidth but newer tensor cores). Small
# models are bandwidth- and launch-bound, so the big GPUs' lead is discounted. Estimates:
# a run's own calibration replaces them.
RELATIVE_THROUGHPUT = {
    "nvidia-tesla-t4": 0.40,
    "nvidia-tesla-p100": 0.55,
    "nvidia-tesla-v100": 1.00,
    "nvidia-l4": 0.90,
    "nvidia-tesla-a100": 2.20,
    "nvidia-a100-80gb": 2.40,
    "nvidia-h100-80gb": 3.50,
    # H200: the H100's chip with 4.8 TB/s of HBM3e against 3.35 TB/s, which small, bandwidth-bound
    # models feel; B200: ~2.3x the H100's dense bf16 (2.25 vs 0.99 PFLOP/s) and 8 TB/s, discounted
    # as above (NVIDIA's H200 and B200 data sheets). Both come as 8-GPU machines only.
    "nvidia-h200-141gb": 4.00,
    "nvidia-b200": 5.50,
}

# A V100's training speed when nothing was measured is budgetft.models.speed's nominal GPU
# figure, the same one calibration's fallback uses.

# The host needs a core for the driver, Ray, one trial worker per GPU and tokenizing; the
# reference study used 8 vCPUs (n1-standard-8). --machine overrides this.
MIN_VCPUS = 8


class ChoiceError(ValueError):
    """No catalogue instance fits the request; the message says which options exist."""


# How fast an option trains against a plain 16-bit step of the same batch, by how the memory plan
# fits it: activation checkpointing recomputes the forward pass (~4/3 of the compute: 0.75x);
# a 4-bit base dequantizes every weight on every pass (QLoRA trains ~0.6x as fast as 16-bit LoRA:
# Google's Vertex AI LoRA/QLoRA recommendations, "LoRA is about 66% faster").
CHECKPOINTING_SPEED = 0.75
NF4_SPEED = 0.60


@dataclass(frozen=True)
class Candidate:
    instance: Instance
    examples_per_s: float
    examples_per_usd: float
    examples_for_budget: float  # examples the budget buys after the VM's overheads
    how: str = ""  # how the job's options fit its GPU (the memory plan), in words


@dataclass(frozen=True)
class Choice:
    best: Candidate
    basis: str  # "calibrated on <device>" | "estimated from <n> parameters"
    ranked: tuple[Candidate, ...]
    picked_by_user: bool

    @property
    def instance(self) -> Instance:
        return self.best.instance

    def reason(self) -> str:
        b = self.best
        rel = RELATIVE_THROUGHPUT.get(b.instance.gpu or "", 0)
        head = (
            f"{b.instance.label} ({b.instance.provisioning}, {b.instance.region}) at ${b.instance.usd_per_hour:.4f}/h: "
            f"~{b.examples_per_s:.0f} examples/s ({self.basis}; {rel:g}x V100), "
            f"~{b.examples_per_usd:,.0f} examples per dollar" + (f"; fits as {b.how}" if b.how else "")
        )
        if self.picked_by_user:
            many = len(self.ranked) > 1
            return head + (f"; the most training for this budget of the {len(self.ranked)} instances matching --gpu/--machine" if many else "")
        others = [c for c in self.ranked if c is not b][:2]
        if not others:
            return f"{head}; the only instance that fits"
        alt = "; ".join(f"{c.instance.label} ~{c.examples_for_budget:,.0f}" for c in others)
        return f"{head}: the most training for this budget (~{b.examples_for_budget:,.0f} examples; next: {alt})"


def model_params(model_name: str) -> tuple[float, str]:
    """(parameters, how they were found): budgetft.models.speed's one model of size."""
    return parameter_count(model_name)


def estimated_v100_rate(model_name: str, tokens_per_example: int) -> tuple[float, str]:
    params, how = model_params(model_name)
    seconds = train_seconds_per_step(params, tokens_per_example, "cuda")  # one example's tokens
    return 1.0 / seconds, f"estimated from {params / 1e6:,.0f}M parameters ({how})"


def calibrated_v100_rate(calibration_json: Path) -> tuple[float, str] | None:
    """Examples/s on a V100 implied by a run's measured rates, if it ran on a catalogue GPU."""
    try:
        data = json.loads(Path(calibration_json).read_text())
        device = str(data.get("device", ""))
        gpu = gpu_for_nvml_name(device)
        rates = [float(m["examples_per_s"]) for m in data.get("methods", {}).values() if m.get("examples_per_s")]
    except (OSError, ValueError, KeyError, TypeError, UnknownName):
        return None
    if not rates or gpu not in RELATIVE_THROUGHPUT:
        return None
    mean = sum(rates) / len(rates)
    return mean / RELATIVE_THROUGHPUT[gpu], f"calibrated on {device}"


def gpu_memory_gb(gpu: str) -> int:
    match = re.search(r"(\d+)GB", GPU_LABELS.get(gpu, ""))
    return int(match.group(1)) if match else 0


def choose(
    catalog: Catalog,
    *,
    model_name: str,
    tokens_per_example: int,
    full_finetune: bool,
    budget: Decimal,
    gpu: str | None = None,
    machine: str | None = None,
    region: str | None = None,
    spot: bool = False,
    disk_gb: int = 50,
    calibration: Path | None = None,
    memory: list | None = None,
) -> Choice:
    """The instance that buys the most training for the budget. With `memory` (the job's memory
    plan: budgetft.planner.memory_plan.job_memory, one entry per option), only GPUs that one of
    its options fits are considered, and each is valued at the speed of its best-fitting option
    (checkpointing and a 4-bit base slow a step); a job that no GPU here fits is refused with the
    smallest GPU that would hold it."""
    region = region or DEFAULT_REGION
    found = calibrated_v100_rate(calibration) if calibration else None
    v100_rate, basis = found or estimated_v100_rate(model_name, tokens_per_example)
    params, _ = model_params(model_name)
    # GPU memory the job needs: fp32 weights + activations for PEFT; weights, grads and two Adam
    # moments (16 bytes/param) for full fine-tuning; plus 2 GB of CUDA context and workspace.
    need_gb = params * (16 if full_finetune else 4) / 1e9 * 1.5 + 2
    try:
        wanted = [resolve_gpu(gpu)] if gpu else None
        instances = catalog.instances(regions=[region], spot=spot, gpus=wanted, disk_gb=disk_gb)
    except UnknownName as exc:
        raise ChoiceError(str(exc)) from None
    if machine:
        if machine not in catalog.names("machine"):
            raise ChoiceError(str(UnknownName("machine type", machine, catalog.names("machine"))))
        instances = [i for i in instances if i.machine == machine]
    else:
        instances = [i for i in instances if (_vcpus(catalog, i) or 0) >= MIN_VCPUS]
    instances = [i for i in instances if i.gpu in RELATIVE_THROUGHPUT]
    if memory:
        return _choose_by_memory(instances, memory, v100_rate, basis, budget, bool(gpu or machine), what=" + ".join(x for x in (machine, gpu) if x) or "a GPU instance",
                                 region=region, catalog=catalog, spot=spot, machine=machine)
    fitting = [i for i in instances if gpu_memory_gb(i.gpu or "") >= need_gb]
    if not fitting:
        what = " + ".join(x for x in (machine, gpu) if x) or "a GPU instance"
        if instances:
            raise ChoiceError(f"{what} in {region}: no GPU there has the ~{need_gb:.0f} GB this model needs; pick a larger --gpu")
        raise ChoiceError(_nothing_matches(catalog, what, region, spot, machine))
    overhead = overhead_seconds()
    ranked = []
    for inst in fitting:
        eps = v100_rate * RELATIVE_THROUGHPUT[inst.gpu or ""] * inst.gpu_count
        hourly = float(inst.usd_per_hour)
        run_s = max(0.0, float(budget) * 3600 / hourly - overhead)
        ranked.append(Candidate(inst, eps, eps * 3600 / hourly, eps * run_s))
    # Most training for the budget; ties (or budgets too small for any run) by examples per dollar.
    ranked.sort(key=lambda c: (c.examples_for_budget, c.examples_per_usd), reverse=True)
    return Choice(ranked[0], basis, tuple(ranked), picked_by_user=bool(gpu or machine))


def fit_speed(fit) -> float:
    """An option's speed on a GPU, against a plain 16-bit step, by how it fits there."""
    speed = CHECKPOINTING_SPEED if fit.checkpointing else 1.0
    return speed * (NF4_SPEED if fit.quantization else 1.0)


def _choose_by_memory(instances, memory: list, v100_rate: float, basis: str, budget: Decimal, picked: bool, *, what: str, region: str,
                      catalog: Catalog, spot: bool, machine: str | None) -> Choice:
    overhead = overhead_seconds()
    ranked = []
    for inst in instances:
        fits = [(o, o.fits.get(inst.gpu)) for o in memory]
        fits = [(o, f) for o, f in fits if f is not None and f.fits]
        if not fits:
            continue
        option, fit = max(fits, key=lambda pair: fit_speed(pair[1]))
        eps = v100_rate * RELATIVE_THROUGHPUT[inst.gpu or ""] * inst.gpu_count * fit_speed(fit)
        hourly = float(inst.usd_per_hour)
        run_s = max(0.0, float(budget) * 3600 / hourly - overhead)
        ranked.append(Candidate(inst, eps, eps * 3600 / hourly, eps * run_s, f"{option.key}: {fit.words()}"))
    if not ranked:
        if not instances:
            raise ChoiceError(_nothing_matches(catalog, what, region, spot, machine))
        leanest = min(memory, key=lambda o: min(f.peak_bytes for f in o.fits.values()))
        peak = min(f.peak_bytes for f in leanest.fits.values())
        offered = sorted({i.gpu for i in instances if i.gpu})
        smallest = leanest.smallest_gpu
        hint = (f"the smallest GPU that would hold it is {GPU_LABELS.get(smallest, smallest)} (--gpu {smallest})" if smallest
                else "no catalogue GPU holds it: use a smaller model, a shorter prompt.max_length or a smaller train.batch_size")
        raise ChoiceError(f"{what} in {region}: no option of this job fits ({', '.join(GPU_LABELS.get(g, g) for g in offered)}); "
                          f"its leanest, {leanest.key}, needs {peak / 1e9:.1f} GB at micro-batch 1 with checkpointing; {hint}")
    ranked.sort(key=lambda c: (c.examples_for_budget, c.examples_per_usd), reverse=True)
    return Choice(ranked[0], basis, tuple(ranked), picked_by_user=picked)


def _vcpus(catalog: Catalog, inst: Instance) -> int | None:
    try:
        return catalog.find("machine", inst.machine, inst.region, inst.spot).vcpus
    except CatalogError:
        return None


def _nothing_matches(catalog: Catalog, what: str, region: str, spot: bool, machine: str | None) -> str:
    offered = sorted({i.label for i in catalog.instances(regions=[region], spot=spot) if i.gpu})
    hint = f"; with --machine {machine} give a --gpu that attaches to it" if machine else ""
    return f"no catalogue instance matches {what} in {region} ({'spot' if spot else 'on-demand'}); offered: {', '.join(offered)}{hint}"
