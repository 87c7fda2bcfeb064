"""The analytic memory model (budgetft.planner.memory) checked against fake-tensor traces of one
real training step (budgetft.planner.memory_trace) on small configurations: no weights, no GPU,
a few seconds each.

The model may err high more than low: under by at most 15% (a plan that trusts it must not run
out of memory), over by at most 20% (shallow models: it keeps half a layer of backward
temporaries that a 2-layer model's trace frees sooner)."""

from __future__ import annotations

import pytest
from transformers import BertConfig, LlamaConfig

from budgetft.planner.memory import MemoryOption, model_shape, predict_peak, shape_from_config
from budgetft.planner.memory_trace import trace_step

UNDER, OVER = 0.15, 0.20

LLAMA = LlamaConfig(vocab_size=2000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                    num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=True)
BERT = BertConfig(vocab_size=1000, hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=512)

CPU = {"device": "cpu", "weight_dtype": "float32", "compute_dtype": "float32"}  # how budgetft trains on a CPU without native bf16
GPU = {"device": "cuda", "weight_dtype": "bfloat16", "compute_dtype": "bfloat16"}  # on an A100/L4/H100, traced on this CPU

CASES = [
    ("llama", "lora", CPU, False, 4, 128),
    ("llama", "full", CPU, False, 4, 128),
    ("llama", "lora", GPU, False, 4, 128),
    ("llama", "lora", GPU, True, 8, 128),
    ("llama", "full", GPU, False, 4, 64),
    ("bert", "full", CPU, False, 4, 128),
    # A GPU's SDPA kernels handle attention dropout without an L x L matrix; this CPU's do not,
    # so the encoder's GPU case is traced without dropout.
    ("bert", "lora", {**GPU, "dropout": 0.0}, False, 4, 128),
]


@pytest.mark.parametrize("model, method, where, checkpointing, batch, length", CASES)
def test_the_analytic_model_agrees_with_a_traced_step(model, method, where, checkpointing, batch, length):
    config = {"llama": LLAMA, "bert": BERT}[model]
    option = MemoryOption(method=method, micro_batch=batch, length=length, checkpointing=checkpointing, **where)
    estimate = predict_peak(shape_from_config(config, num_labels=2), option)
    tensors = estimate.total_bytes - estimate.overhead  # the trace sees tensors, not a CUDA context or a process
    traced = trace_step(config, option).peak_bytes
    assert -UNDER <= tensors / traced - 1 <= OVER, (tensors, traced, estimate.parts_mib())


def test_the_tiny_model_agrees_too(tiny_model_dir):
    option = MemoryOption(method="full", micro_batch=8, length=64, **CPU)
    estimate = predict_peak(model_shape(str(tiny_model_dir), num_labels=2), option)
    traced = trace_step(str(tiny_model_dir), option).peak_bytes
    assert -UNDER <= (estimate.total_bytes - estimate.overhead) / traced - 1 <= OVER


def test_a_trace_counts_every_weight_once_and_the_optimizer_state(tiny_model_dir):
    shape = model_shape(str(tiny_model_dir), num_labels=2)
    trace = trace_step(str(tiny_model_dir), MemoryOption(method="full", micro_batch=2, length=16, **CPU))
    # fp32 weights as read (which the process holds: the tied embedding once), the trial's copy
    # that trains, and AdamW's two moments; buffers (rotary tables) on top.
    assert 16 * shape.params <= trace.weights_bytes < 16 * shape.params + 64 * 1024
    assert trace.at in ("forward", "backward", "optimizer") and trace.operators > 100


def test_checkpointing_and_smaller_micro_batches_lower_the_traced_peak():
    def peak(**kw) -> int:
        return trace_step(LLAMA, MemoryOption(method="lora", length=128, **{"micro_batch": 8, **GPU, **kw})).peak_bytes

    whole = peak()
    assert peak(checkpointing=True) < 0.6 * whole
    assert peak(micro_batch=4) < 0.7 * whole


def test_a_4bit_base_is_not_traced():
    with pytest.raises(ValueError, match="bitsandbytes"):
        trace_step(LLAMA, MemoryOption(method="lora", micro_batch=1, length=16, quantization="nf4", **GPU))
