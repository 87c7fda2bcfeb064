"""The memory plan on this machine's GPU, for calibration and for each round's trials.

Before calibration, each option gets its layout on this GPU (budgetft.planner.memory_plan:
micro-batch, activation checkpointing, and QLoRA for a LoRA that fits only on a 4-bit base),
decided from the model's configuration, its predictions scaled by what earlier calibrations on
this machine measured (budgetft.planner.memory_correction); an option that fits no way here is
dropped there, with the numbers. Calibration runs each option in its layout and measures the true
peak (reserved memory plus the CUDA context), which corrects the predictions of the plans that
follow. Each round's trials get the layout again, with the correction just measured, never
larger than the micro-batch calibration ended on (out of memory halves it there too).

On a CPU there is nothing to lay out: trials train as the job says (gradient_checkpointing: auto
is off there), and the layouts are empty.
"""

from __future__ import annotations

from typing import Callable

from budgetft.models.placement import placement_for
from budgetft.planner.memory import MemoryOption, predict_peak
from budgetft.planner.memory_correction import record
from budgetft.planner.memory_plan import device_plan, option_inputs
from budgetft.telemetry.device import device_name, device_type, gpu_memory_bytes


def layouts(job, options: list, calibration: dict | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """({option key: its layout on this GPU}, {option key: why it fits no way here}); both empty
    on a CPU. With `calibration` (this run's), no layout's micro-batch exceeds the one its option's
    calibration ended on. Raises budgetft.planner.memory_plan.NothingFits when no option fits."""
    if device_type() != "cuda":
        return {}, {}
    memory = gpu_memory_bytes() or 0.0
    fits, refused = device_plan(job, options, memory, placement_for().weight_dtype, device_name())
    out = {}
    for c in options:
        if c.key not in fits:
            continue
        layout = fits[c.key].layout(c.method)
        measured = ((calibration or {}).get("methods", {}).get(c.key) or {}).get("memory") or {}
        if measured.get("micro_batch"):
            layout["micro_batch"] = min(int(layout["micro_batch"]), int(measured["micro_batch"]))
        out[c.key] = layout
    return out, refused


def correct(job, choice, measured: dict, note: Callable[[str], None] = lambda line: None) -> float | None:
    """After an option's calibration on a GPU: its true peak against the prediction for the batch
    it met (its layout, at the longest batch's length), remembered for this machine's next plans;
    the ratio, or None when nothing was measured."""
    memory = measured.get("memory") or {}
    if not memory.get("measured_bytes") or not memory.get("longest_tokens") or device_type() != "cuda":
        return None
    o = option_inputs(job, choice, int(memory["longest_tokens"]))
    placement = placement_for()
    micro = int(memory.get("micro_batch") or o.batch)
    measured_bytes = float(memory["measured_bytes"])
    halved = [s for s in memory.get("shrunk") or [] if s.get("what") == "micro-batch"]
    if halved:  # the planned micro-batch did not fit: it needed at least all of the GPU
        micro = int(halved[0]["from"])
        measured_bytes = max(measured_bytes, float(memory.get("memory_bytes") or 0))
    option = MemoryOption(method=memory.get("method") or choice.method, micro_batch=micro,
                          length=o.length, device="cuda", weight_dtype=placement.weight_dtype, compute_dtype=placement.weight_dtype,
                          quantization=memory.get("quantization"), checkpointing=bool(memory.get("checkpointing")),
                          trainable=o.trainable, dropout=o.dropout)
    predicted = predict_peak(o.shape, option).total_bytes
    ratio = record(device_name(), choice.model, option.method, predicted, measured_bytes)
    memory["predicted_at_batch_bytes"] = round(predicted)
    memory["measured_over_predicted"] = round(ratio, 3)
    note(f"memory: {choice.key} peaked at {memory['measured_bytes'] / 1e9:.2f} GB (reserved + CUDA context) against "
         f"{predicted / 1e9:.2f} GB predicted for its batch: later plans on this machine scale predictions by {ratio:.2f}")
    return ratio


def describe(key: str, layout: dict) -> str:
    """One line for the run's output: how an option trains on this GPU."""
    how = [f"micro-batch {layout['micro_batch']}", "checkpointing" if layout.get("checkpointing") else "no checkpointing"]
    if layout.get("converted_from"):
        how.append(f"as QLoRA (a 4-bit base: 16-bit {layout['converted_from']} needs {layout['sixteen_bit_bytes'] / 1e9:.1f} GB)")
    return (f"memory: {key} on this GPU ({layout['memory_bytes'] / 1e9:.1f} GB): {', '.join(how)}; predicted peak "
            f"{layout['predicted_bytes'] / 1e9:.1f} GB" + (f" (x{layout['scale']:.2f}, as measured here before)" if layout.get("scale", 1) != 1 else ""))
