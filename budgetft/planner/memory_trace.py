"""One training step traced on fake tensors: the other way to know a step's peak memory, from a
model's configuration alone (no weights, no device), which the analytic model
(budgetft.planner.memory) is checked against (tests/planner/test_memory_trace.py,
benchmarks/memory.py --trace).

The step is budgetft's own, run under PyTorch's FakeTensorMode (tensors with shapes, dtypes and
devices but no data: every kernel is replaced by its shape rule): the model built from its
configuration in the option's weight dtype, the method applied by its registry entry (peft's
LoRA, full fine-tuning, ...), fp32 master weights for what trains, activation checkpointing where
the option asks, the verbalizer's loss on the label word (budgetft.scoring) under the option's
autocast, the backward pass, gradient clipping and AdamW with its moments from the step before.

A dispatch mode below the fake mode sees every tensor an operator returns and counts its storage
once (views share it) until the storage is freed: live bytes after every operator, and their
maximum, which is the peak an allocator without slack would reach. What it cannot see: a CUDA
context, the caching allocator's rounding and a CPU process's own memory (the analytic model's
overhead term, fitted and checked by measurement), and a 4-bit base (bitsandbytes' kernels have no
fake-tensor implementation: NF4 is checked against measurements and published figures instead).
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from budgetft import methods
from budgetft.methods.context import ApplyContext
from budgetft.models.architecture import ENCODER, architecture_from_config
from budgetft.models.checkpointing import checkpoint_activations
from budgetft.models.dropout import set_dropout
from budgetft.planner.memory import MemoryOption, config_of
from budgetft.scoring.rows import scoring_of, virtual_token_offset
from budgetft.telemetry.precision import Precision, autocast

# Imported inside functions: torch, transformers: importing this module must stay cheap (start-up
# time).

# The label words of the traced step (any two token ids the vocabulary has).
_CLASS_TOKENS = [[5], [7]]


@dataclass
class Trace:
    """What one traced step held: its peak of live tensor bytes and where it fell."""

    peak_bytes: int
    at: str  # the phase of the peak: forward | backward | optimizer
    weights_bytes: int  # live once the model was built and its method applied
    by_phase: dict = field(default_factory=dict)  # phase -> its own peak of live bytes
    operators: int = 0  # operators traced


def live_bytes_mode():
    """A fresh TorchDispatchMode that counts every storage an operator returns, once, until it is
    freed (a class made here: torch is imported lazily)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    from torch.utils.weak import WeakIdKeyDictionary

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = WeakIdKeyDictionary()
            self.now = self.peak = 0
            self.phase, self.at, self.by_phase, self.operators = "build", "build", {}, 0

        def _free(self, n: int) -> None:
            self.now -= n

        def track(self, t) -> None:
            """Count t's storage until it is freed (once, however many tensors view it)."""
            storage = t.untyped_storage()
            if storage in self.seen:
                return
            n = storage.nbytes()
            self.seen[storage] = n
            # A storage's Python object lives as long as the storage (PyObject preservation): its
            # finalizer runs when the memory would be given back.
            weakref.finalize(storage, self._free, n)
            self.now += n
            self.by_phase[self.phase] = max(self.by_phase.get(self.phase, 0), self.now)
            if self.now > self.peak:
                self.peak, self.at = self.now, self.phase

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.operators += 1
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.track(t)
            return out

    return LiveBytes()


def trace_step(source: Any, option: MemoryOption, *, num_labels: int | None = 2, architecture: str = "auto",
               revision: str | None = None, method_config: dict | None = None) -> Trace:
    """The traced peak of one training step of `option` (its method, micro-batch, length, weight
    and compute dtypes, checkpointing, dropout) on the model whose configuration `source` is: a
    transformers config, a model directory, or a hub id whose configuration budgetft ships."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    if option.quantization:
        raise ValueError(f"a {option.quantization} base is not traced: bitsandbytes' 4-bit kernels have no fake-tensor implementation")
    config = source if hasattr(source, "model_type") else config_of(str(source), revision)
    arch = architecture_from_config(config, architecture)
    method = methods.get(option.method)
    overrides = dict(method_config or {})
    if "r" in method.params and option.method in ("lora", "qlora"):
        overrides.setdefault("r", option.lora_r)
    point = method.config(overrides)
    # The device's autocast, traced on the CPU: a GPU option's bf16/fp16 casts are the same tensors.
    compute = option.compute_dtype
    precision = Precision(compute, compute != "float32", False, False, "traced", "cpu")
    rng = np.random.default_rng(0)
    vocab = int(getattr(getattr(config, "text_config", None) or config, "vocab_size", 0) or 1000)
    # Rows of the option's length and one token shorter, as a length-grouped batch has them: the
    # shorter ones padded, so that attention takes the padding mask path trials take.
    prompts = [rng.integers(10, max(11, vocab - 1), size=option.length - (i % 2)) for i in range(option.micro_batch)]
    labels = [i % 2 for i in range(option.micro_batch)]

    # Built and given its method on the meta device (peft moves modules with .to, which fake
    # parameters refuse), then every tensor made fake on the CPU, where the step runs.
    with torch.device("meta"):
        model = _build(config, arch, getattr(torch, option.weight_dtype), num_labels)
        if option.dropout is not None:
            set_dropout(model, option.dropout)
        base = {id(p) for p in model.parameters()}  # the weights as read, which the process holds
        model = method.apply(model, point, ApplyContext())
    if option.checkpointing:
        checkpoint_activations(model)
    model.train()
    live = live_bytes_mode()
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake, live:
        made = _make_fake(model, fake, live)
        trained_base = {id(made[i]) for i in base if i in made}
        held = []
        # As budgetft.models.placement.prepare_trainable does: fp32 masters for what trains in 16
        # bits, and a storage of its own for a weight of the base that trains, whose copy as read
        # the process keeps for its next trial (budgetft.models.cache).
        for p in model.parameters():
            if not p.requires_grad:
                continue
            if id(p) in trained_base:
                held.append(p.data)
            if p.dtype in (torch.bfloat16, torch.float16):
                p.data = p.data.float()
            elif id(p) in trained_base:
                p.data = p.data.clone()
        params = [p for p in model.parameters() if p.requires_grad]
        foreach = option.device != "cpu"  # multi-tensor AdamW and clipping, as torch picks them on a GPU
        optimizer = torch.optim.AdamW(params, lr=1e-4, foreach=foreach)
        for p in params:  # the moments of the step before: the step's peak has them
            optimizer.state[p].update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        weights = live.now
        scoring = scoring_of(model)
        live.phase = "forward"
        with autocast(precision), _answer_positions(len({len(p) for p in prompts})):
            total, _ = scoring.class_cross_entropy(model, prompts, labels, _CLASS_TOKENS, 0, virtual_token_offset(model))
        live.phase = "backward"
        (total / len(labels)).backward()
        del total
        live.phase = "optimizer"
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=foreach)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return Trace(int(live.peak), live.at, int(weights), dict(live.by_phase), live.operators)


@contextmanager
def _answer_positions(count: int):
    """The verbalizer keeps logits only at the rows' answer positions, found with torch.unique,
    whose length depends on values, which fake tensors do not hold; the trace knows it: `count`
    rows' lengths, each one position."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor

    real = torch.unique

    def unique(t, *args, **kwargs):
        return t[:count] if isinstance(t, FakeTensor) else real(t, *args, **kwargs)

    torch.unique = unique
    try:
        yield
    finally:
        torch.unique = real


def _make_fake(model, fake, live) -> dict[int, Any]:
    """Every parameter and buffer of a meta-device model replaced by a fake CPU tensor of its
    shape and dtype (tied ones stay one tensor), each counted as live; returns the id of each
    meta tensor -> what replaced it."""
    import torch

    device = torch.device("cpu")
    made: dict[int, Any] = {}
    for module in model.modules():
        for table, as_param in ((module._parameters, True), (module._buffers, False)):
            for name, t in list(table.items()):
                if t is None or t.device.type != "meta":
                    continue
                if id(t) not in made:
                    data = fake.fake_tensor_converter.from_meta_and_device(fake, t.detach(), device)
                    made[id(t)] = torch.nn.Parameter(data, requires_grad=t.requires_grad) if as_param else data
                    live.track(made[id(t)])
                table[name] = made[id(t)]
    return made


def _build(config: Any, arch: str, dtype: Any, num_labels: int | None):
    """The model a trial would load, with fake weights in `dtype` (an encoder with its head)."""
    import copy

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if arch == ENCODER:
        config = copy.deepcopy(config)
        if num_labels:
            config.num_labels = num_labels
        model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.config.use_cache = False
    return model
