#!/usr/bin/env python3
"""Peak memory of a training step: budgetft's memory plan (budgetft.planner.memory) against a
measurement on this CPU, and against published figures for 7-8B models.

    python benchmarks/memory.py [--only smollm2-lora,minilm-full,...] [--published-only] [--trace]

Measured by an independent means: each setting runs in a fresh process, which reads its resident
memory (VmRSS) before the model exists, loads the model and applies its method as budgetft does on
this machine (budgetft.models.loading, which holds the weights as read: full fine-tuning trains a
copy; fp32 weights on a CPU; bf16 autocast where the CPU computes bf16 natively), resets the
kernel's high-water mark (/proc/self/clear_refs) and runs real budgetft steps
(budgetft.train.steps.accumulate, gradient clipping, AdamW with its state); measured = VmHWM
after the steps - VmRSS before the model. Nothing of the predictor runs in that process.

Settings: SmolLM2-135M-Instruct with LoRA and full fine-tuning, and QLoRA (its base in 4-bit NF4
through bitsandbytes' CPU backend, computing in bf16 without autocast: this CPU has no native
bf16), all-MiniLM-L6-v2 fully fine-tuned; batches of 2 and 4 rows of 64 and 128 tokens. Two steps
each, QLoRA one (~3-12 minutes a step on 2 busy cores), AdamW's moments made before the first, as
a later step has them. Target: every prediction within +-15% of its measurement.

The prediction's one fitted term, the CPU process's own memory (CPU_STEP_OVERHEAD_BYTES), is
fitted on other settings (one row of 32 tokens of SmolLM2 LoRA and MiniLM full: FIT_SETTINGS),
printed first, so the checks are not the figures it was fitted to.

Published: LLaMA-Factory's hardware table (7B, LoRA 16-bit ~16 GB, QLoRA 4-bit ~6 GB) and the
Llama-2-7B A100 figures of the sparse fine-tuning study (Ansell et al., 2024: LoRA 40 / 18 GB,
qLoRA 30 / 8 GB without / with activation checkpointing), each at the settings written beside it
below; target within +-25%, printed side by side. --trace also prints the fake-tensor trace
(budgetft.planner.memory_trace) of each CPU setting but QLoRA's (a minute or two a setting).
--keep FILE reuses measurements (a QLoRA setting takes minutes) and adds new ones.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BATCHES = (2, 4)
LENGTHS = (64, 128)
CPU_TOLERANCE = 0.15
PUBLISHED_TOLERANCE = 0.25


def cpu_settings(with_qlora: bool) -> list[dict]:
    out = []
    models = [("smollm2-lora", SMOLLM2, "lora", None), ("smollm2-full", SMOLLM2, "full", None), ("minilm-full", MINILM, "full", None)]
    if with_qlora:
        models.insert(2, ("smollm2-qlora", SMOLLM2, "lora", "nf4"))
    for name, model, method, quant in models:
        for batch in BATCHES:
            for length in LENGTHS:
                # QLoRA on bitsandbytes' CPU backend: ~3 minutes a step at 4 x 128 on 2 cores, so one
                # step (AdamW's moments made before it, as the second step of the others has them).
                steps = 1 if quant else 2
                out.append({"name": name, "model": model, "method": method, "quantization": quant, "batch": batch, "length": length,
                            "steps": steps})
    return out


# What the CPU overhead term (budgetft.planner.memory.CPU_STEP_OVERHEAD_BYTES) is fitted on: one row
# of 32 tokens, where the tensors are smallest and the process's own memory dominates, a shape no
# checked setting uses, so that the checks above are not the figures it was fitted to.
FIT_SETTINGS = [
    {"name": "fit-smollm2-lora", "model": SMOLLM2, "method": "lora", "quantization": None, "batch": 1, "length": 32, "steps": 2},
    {"name": "fit-minilm-full", "model": MINILM, "method": "full", "quantization": None, "batch": 1, "length": 32, "steps": 2},
]


# Published figures, each with the settings this comparison reads them at (where a source does not
# state a setting, the value in brackets is our reading of its defaults, said so here).
# - LLaMA-Factory README, "Hardware Requirement" (7B column): estimates for Llama-7B at its
#   defaults [cutoff_len 1024, per-device batch 1, gradient checkpointing on, loss over every token].
# - Ansell et al. 2024, "Scaling Sparse Fine-Tuning to Large Language Models", GPU memory of
#   Llama-2-7B on an A100 [bf16 base, LoRA on every linear layer, loss over every token, 1 x 2,048
#   tokens a micro-batch: the batch at which their four figures agree with one another], without and with activation checkpointing.
PUBLISHED = [
    {"source": "LLaMA-Factory table, 7B LoRA 16-bit", "gb": 16, "config": "llama-2-7b", "quantization": None, "batch": 1, "length": 1024, "checkpointing": True},
    {"source": "LLaMA-Factory table, 7B QLoRA 4-bit", "gb": 6, "config": "llama-2-7b", "quantization": "nf4", "batch": 1, "length": 1024, "checkpointing": True},
    {"source": "sparse FT study, Llama-2-7B LoRA", "gb": 40, "config": "llama-2-7b", "quantization": None, "batch": 1, "length": 2048, "checkpointing": False},
    {"source": "sparse FT study, Llama-2-7B LoRA + act. ckpt", "gb": 18, "config": "llama-2-7b", "quantization": None, "batch": 1, "length": 2048, "checkpointing": True},
    {"source": "sparse FT study, Llama-2-7B qLoRA", "gb": 30, "config": "llama-2-7b", "quantization": "nf4", "batch": 1, "length": 2048, "checkpointing": False},
    {"source": "sparse FT study, Llama-2-7B qLoRA + act. ckpt", "gb": 8, "config": "llama-2-7b", "quantization": "nf4", "batch": 1, "length": 2048, "checkpointing": True},
]

# Llama-2-7B's published configuration (meta-llama/Llama-2-7b-hf config.json), for sizing only.
LLAMA2_7B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
             "num_attention_heads": 32, "num_key_value_heads": 32, "num_hidden_layers": 32, "vocab_size": 32000,
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "hidden_act": "silu"}


# ----------------------------------------------------------------------------- measuring (child)


def _status(field: str) -> int:
    """A /proc/self/status field, bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Linux: writing 5 to clear_refs resets the process's resident high-water mark (VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def measure(setting: dict) -> dict:
    """One setting, in this (fresh) process: see the module's docstring."""
    import numpy as np
    import torch

    from budgetft import methods
    from budgetft.methods.context import ApplyContext
    from budgetft.models.loading import ResolvedModel, converted_embedded, detect_architecture, load_model
    from budgetft.models.placement import Placement, placement_for
    from budgetft.scoring.rows import virtual_token_offset
    from budgetft.telemetry.precision import grad_scaler, precision_for
    from budgetft.train import steps

    device = torch.device("cpu")
    precision = precision_for(device)
    folder = str(converted_embedded(setting["model"]))
    resolved = ResolvedModel("embedded", folder, num_labels=2)
    resolved = ResolvedModel("embedded", folder, architecture=detect_architecture(resolved), num_labels=2)
    rng = np.random.default_rng(0)
    batch, length = setting["batch"], setting["length"]
    prompts = [rng.integers(100, 1000, size=length) for _ in range(2 * batch)]
    task = type("Task", (), {})()
    task.train = type("Rows", (), {"prompts": prompts, "labels": np.array([i % 2 for i in range(2 * batch)])})()
    task.class_tokens, task.pad_id = [[200], [300]], 0
    gc.collect()
    before = _status("VmRSS")
    _reset_peak()
    placement = placement_for(device)
    if setting.get("quantization"):
        placement = Placement(device.type, "bfloat16", setting["quantization"])
    model = load_model(resolved, placement)
    method = methods.get(setting["method"])
    model = method.apply(model, method.config(), ApplyContext())
    placement.prepare_trainable(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(steps.param_groups(model, params), lr=1e-5)
    for p in params:  # AdamW's two moments, as a step after the first has them (its peak)
        optimizer.state[p].update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
    scaler = grad_scaler(precision)
    weights = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    gc.collect()
    loaded = _status("VmRSS")
    _reset_peak()  # the load's own transient (a file read, a conversion) is not the step's
    t0 = time.perf_counter()
    for step in range(int(setting.get("steps") or 2)):
        idx = np.arange(step * batch, (step + 1) * batch)
        steps.accumulate(model, task, idx, batch, virtual_token_offset(model), "classes", precision, scaler)
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM")
    return {**setting, "measured_bytes": max(peak, loaded) - before, "loaded_bytes": loaded - before, "weights_bytes": weights,
            "precision": precision.dtype_name, "autocast": precision.autocast, "seconds": round(seconds, 1)}


def child_env() -> dict:
    """A measuring child's environment: glibc's malloc serves every block of 64 KiB or more with
    its own mapping and returns it when freed (its default raises that threshold as large blocks
    are freed, then keeps freed memory in its heap), so that resident memory follows the live
    tensors, as a GPU's allocated memory does."""
    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072", "PYTHONPATH": str(ROOT)}


# ----------------------------------------------------------------------------- predicting (parent)


def predicted(setting: dict) -> tuple[float, object]:
    from budgetft.models.loading import EMBEDDED_MODELS, converted_embedded
    from budgetft.planner.memory import MemoryOption, model_shape, predict_peak

    name = setting["model"]
    folder = converted_embedded(name) if name in EMBEDDED_MODELS else name
    shape = model_shape(str(folder), num_labels=2)
    option = MemoryOption(method=setting["method"], micro_batch=setting["batch"], length=setting["length"], device="cpu",
                          weight_dtype="bfloat16" if setting.get("quantization") else "float32",
                          # A 4-bit base computes in bf16 (its other weights are bf16): its activations are bf16 too.
                          compute_dtype=setting.get("compute_dtype") or ("bfloat16" if setting.get("quantization") else _cpu_compute()),
                          quantization=setting.get("quantization"), autocast=False if setting.get("quantization") else None,
                          checkpointing=bool(setting.get("checkpointing")))
    estimate = predict_peak(shape, option)
    return estimate.total_bytes, estimate


def _cpu_compute() -> str:
    import torch

    from budgetft.telemetry.precision import precision_for

    return precision_for(torch.device("cpu")).dtype_name


def published_rows() -> list[dict]:
    from budgetft.planner.memory import MemoryOption, predict_peak, shape_from_config_dict

    shape = shape_from_config_dict(LLAMA2_7B)
    rows = []
    for p in PUBLISHED:
        option = MemoryOption(method="lora", micro_batch=p["batch"], length=p["length"], device="cuda", weight_dtype="bfloat16",
                              compute_dtype="bfloat16", quantization=p["quantization"], checkpointing=p["checkpointing"],
                              full_logits=True, lora_r=16)
        estimate = predict_peak(shape, option)
        gb = estimate.total_bytes / 1e9
        rows.append({**p, "predicted_gb": round(gb, 1), "error": round(gb / p["gb"] - 1, 3), "parts": estimate.parts_gb()})
    return rows


def measured(setting: dict, kept: dict, keep: str | None) -> dict | None:
    """The setting's measurement: from `kept` (a --keep file), else measured in a fresh process
    (and added to the file). None, said why, when the child failed."""
    key = f"{setting['name']}-{setting['batch']}x{setting['length']}"
    if key not in kept:
        done = subprocess.run([sys.executable, __file__, "--measure", json.dumps(setting)], capture_output=True, text=True, timeout=1800,
                              env=child_env())
        if done.returncode != 0:
            print(f"  {setting['name']:<16} {setting['batch']:>5} {setting['length']:>6}  failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            return None
        kept[key] = json.loads(done.stdout.strip().splitlines()[-1])
        if keep:
            Path(keep).write_text(json.dumps(kept, indent=1))
    return kept[key]


def traced_bytes(setting: dict) -> float:
    """The fake-tensor trace's peak of one step (budgetft.planner.memory_trace), bytes."""
    from budgetft.models.loading import converted_embedded
    from budgetft.planner.memory import MemoryOption
    from budgetft.planner.memory_trace import trace_step

    option = MemoryOption(method=setting["method"], micro_batch=setting["batch"], length=setting["length"], device="cpu",
                          weight_dtype="float32", compute_dtype=_cpu_compute())
    return trace_step(str(converted_embedded(setting["model"])), option, num_labels=2).peak_bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated setting names (fit, smollm2-lora, smollm2-full, smollm2-qlora, minilm-full)")
    parser.add_argument("--published-only", action="store_true", help="only the comparison with published 7-8B figures (no measuring)")
    parser.add_argument("--trace", action="store_true", help="also trace each CPU setting on fake tensors (slow)")
    parser.add_argument("--keep", help="a JSON file of measurements: settings found there are not measured again; new ones are added")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a child: one setting as JSON
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return 0
    failures = 0
    print("published figures (7-8B), predicted by budgetft's memory plan:")
    print(f"  {'source':<46} {'settings':<34} {'published':>9} {'predicted':>9} {'error':>7}")
    for row in published_rows():
        settings = f"{'nf4' if row['quantization'] else 'bf16'}, {row['batch']}x{row['length']}, ckpt {'on' if row['checkpointing'] else 'off'}"
        ok = abs(row["error"]) <= PUBLISHED_TOLERANCE
        failures += not ok
        print(f"  {row['source']:<46} {settings:<34} {row['gb']:>7} GB {row['predicted_gb']:>6} GB {100 * row['error']:>+6.1f}%{'' if ok else '  OUT'}")
        print(f"      parts: {row['parts']}")
    if args.published_only:
        return 1 if failures else 0
    try:
        import bitsandbytes  # noqa: F401 - optional: its CPU backend runs QLoRA here, slowly
        with_qlora = True
    except ImportError:
        with_qlora = False
    wanted = {s for s in args.only.split(",") if s}
    settings = [s for s in cpu_settings(with_qlora) if not wanted or s["name"] in wanted]
    kept = json.loads(Path(args.keep).read_text()) if args.keep and Path(args.keep).is_file() else {}
    from budgetft.planner.memory import CPU_STEP_OVERHEAD_BYTES

    print(f"\nthe CPU overhead term, fitted on settings no check below uses (one row of 32 tokens): measured - the tensors predicted")
    residuals = []
    for s in [s for s in FIT_SETTINGS if not wanted or "fit" in wanted]:
        m = measured(s, kept, args.keep)
        if m is None:
            failures += 1
            continue
        _, estimate = predicted(s)
        tensors = estimate.total_bytes - estimate.overhead
        residuals.append(m["measured_bytes"] - tensors)
        print(f"  {s['name']:<18} {s['batch']}x{s['length']:<4} measured {m['measured_bytes'] / 2**20:,.0f} MiB, tensors "
              f"{tensors / 2**20:,.0f} MiB: overhead {residuals[-1] / 2**20:,.0f} MiB", flush=True)
    if residuals:
        print(f"  fitted: {sum(residuals) / len(residuals) / 2**20:,.0f} MiB (their mean); "
              f"budgetft.planner.memory.CPU_STEP_OVERHEAD_BYTES = {CPU_STEP_OVERHEAD_BYTES / 2**20:,.0f} MiB")
    print(f"\nthis CPU ({os.cpu_count()} cores), measured as VmHWM above VmRSS before the model, in a fresh process each:")
    print(f"  {'setting':<16} {'batch':>5} {'length':>6} {'measured':>10} {'predicted':>10} {'error':>7}" + ("   traced" if args.trace else ""))
    for s in settings:
        m = measured(s, kept, args.keep)
        if m is None:
            failures += 1
            continue
        total, estimate = predicted(s)
        error = total / m["measured_bytes"] - 1
        ok = abs(error) <= CPU_TOLERANCE
        failures += not ok
        traced = ""
        if args.trace:
            traced = f"  {traced_bytes(s) / 2**20:>6,.0f} MiB" if not s.get("quantization") else "  (not traced: 4-bit)"
        print(f"  {s['name']:<16} {s['batch']:>5} {s['length']:>6} {m['measured_bytes'] / 2**20:>7,.0f} MiB {total / 2**20:>7,.0f} MiB "
              f"{100 * error:>+6.1f}%{'' if ok else '  OUT'}{traced}   ({m['precision']}{' autocast' if m['autocast'] else ''}, "
              f"{m.get('steps', 2)} step(s) in {m['seconds']} s; parts MiB: {estimate.parts_mib()})", flush=True)
    print(f"\n{failures} setting(s) outside their tolerance" if failures else "\nevery prediction within its tolerance")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
