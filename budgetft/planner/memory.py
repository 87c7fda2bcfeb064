"""A training step's peak memory, predicted from a model's configuration alone (no weights).

An analytic model of what a step holds at its peak, checked against fake-tensor traces of the
same step (budgetft.planner.memory_trace, in the tests) and against measurements
(benchmarks/memory.py: SmolLM2-135M and all-MiniLM-L6-v2 on a CPU within 15%, published 7B
figures within 25%). Two moments compete for the peak:

- the start of the backward pass: the weights (frozen ones in their stored dtype, 4 bits a weight
  for an nf4 base, trainable ones as fp32 masters; full fine-tuning's as read too, which the
  process holds for its next trial: budgetft.models.cache), AdamW's two fp32 moments from the step before,
  autocast's 16-bit copies of fp32 weights (each linear layer keeps its cast for the backward
  pass), and every activation the backward pass will read, plus half a layer's backward temporaries;
- the optimizer step: weights, fp32 gradients, the moments and one fp32 temporary per trainable
  weight (torch's multi-tensor AdamW).

Activations per token and layer are counted tensor by tensor from what a decoder layer of the
Llama family (and GPT-2/OPT's ungated MLP) or a BERT encoder layer saves for its backward pass
in the compute dtype: the residual stream, the norms' fp32 upcasts, q/k/v (expanded for grouped
heads) and attention's output (SDPA keeps no L x L matrix, except on a CPU with attention
dropout, where PyTorch falls back to the math kernel), the MLP's 2 or 4 intermediate tensors,
and each LoRA site's dropout mask and 16-bit input. Activation checkpointing keeps each layer's
input and recomputes one layer at a time. budgetft reads logits only at the answer positions
(budgetft.scoring.verbalizer), so the output head's activations are ~0; a loss over every token
(published settings) adds L x V logits. On a GPU, a CUDA context and the caching allocator's
slack are added (CUDA_CONTEXT_BYTES, ALLOCATOR_SLACK).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from budgetft.models.architecture import ENCODER, architecture_from_config
from budgetft.models.placement import BYTES_PER_ELEMENT

# Imported inside functions: torch, transformers: importing this module must stay cheap (start-up
# time).

# A CUDA context with cuBLAS/cuDNN handles and workspaces, as torch reserves it on first use:
# ~0.4-0.6 GB on A100/H100 drivers of 2024-25 (nvidia-smi against torch.cuda.memory_reserved);
# the larger figure, so that a plan errs on the side of fitting.
CUDA_CONTEXT_BYTES = 0.6e9
# The caching allocator reserves more than it has allocated (block rounding, fragmentation):
# ~5-10% at a training step's peak; the larger figure.
ALLOCATOR_SLACK = 1.10
# 4-bit NormalFloat with double quantization: 4 bits + an 8-bit absmax per 64 weights + an fp32
# scale per 256 blocks (Dettmers et al. 2023, section 3).
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)
ADAM_BYTES = 8  # two fp32 moments per trainable weight
GRAD_BYTES = 4  # fp32 gradients of fp32 master weights
MASTER_BYTES = 4
# Torch's multi-tensor AdamW allocates one fp32 temporary per trainable weight (sqrt of the
# second moment) while it steps.
ADAM_TEMP_BYTES = 4
# Activation checkpointing keeps each layer's input; in the backward pass one layer at a time is
# recomputed and back-propagated: its saved tensors and its gradients' temporaries, ~1.5 layers'
# worth at once (fake-tensor traces: 1.3x on a CPU in fp32, 1.7x under bf16 autocast).
CHECKPOINTED_LAYERS = 1.5
# Without checkpointing the backward pass starts with every layer's activations and adds the last
# layer's gradient temporaries before it frees anything: about half a layer's worth (traces: the
# peak falls at the forward pass's end or just after).
BACKWARD_LAYERS = 0.5
# What a CPU process holds for a step beyond its tensors (oneDNN scratch, per-thread arenas,
# autograd's engine): 189 MiB on 2 cores, fitted on one row of 32 tokens of SmolLM2-135M LoRA
# (174 MiB) and all-MiniLM-L6-v2 full fine-tuning (203 MiB), where the tensors are smallest: a
# shape none of benchmarks/memory.py's checks uses, so that its checks (2 and 4 rows of 64 and 128
# tokens) are not the figures it was fitted to.
CPU_STEP_OVERHEAD_BYTES = 189 * 2**20


@dataclass(frozen=True)
class ModelShape:
    """What a model's configuration says about its size, counted on a weight-free copy."""

    name: str
    architecture: str  # decoder | encoder
    params: int  # every weight, tied ones once
    linear_params: int  # the blocks' linear layers (what a 4-bit base quantizes)
    head_params: int  # an untied output head or a classifier
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    gated_mlp: bool  # Llama's gate/up/down MLP, against GPT-2/OPT/BERT's two layers
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    lora_sites: dict = field(default_factory=dict)  # targets -> summed input width of the layers LoRA adapts, per layer
    largest_tensor: int = 0  # the largest weight's elements (the token embedding, usually)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MemoryOption:
    """One way to run a trial: what its peak memory depends on."""

    method: str
    micro_batch: int
    length: int  # tokens a row, padded
    device: str = "cuda"  # cpu | cuda
    weight_dtype: str = "bfloat16"  # the frozen weights' dtype
    compute_dtype: str = "bfloat16"  # autocast's (float32: none)
    quantization: str | None = None  # None | nf4
    checkpointing: bool = False
    trainable: int | None = None  # trainable weights (None: from the method's defaults)
    full_logits: bool = False  # a loss over every token (published settings), not budgetft's answer positions
    lora_r: int = 8
    lora_targets: str = "all-linear"
    dropout: float | None = None  # the model's dropout while training (None: its own)
    # Whether the forward pass runs under autocast (None: when the compute dtype is 16-bit). A
    # CPU without native bf16 trains a 4-bit base in bf16 without it (bitsandbytes computes in
    # its compute dtype), so LoRA's fp32 adapters keep an fp32 copy of their inputs.
    autocast: bool | None = None


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    trainable_state: float  # gradients and AdamW moments (at the peak moment)
    weight_copies: float  # autocast's 16-bit casts of fp32 weights
    activations: float
    overhead: float  # CUDA context and allocator slack (0 on a CPU)
    at: str  # "backward" | "optimizer": the moment of the peak

    @property
    def total_bytes(self) -> float:
        return self.weights + self.trainable_state + self.weight_copies + self.activations + self.overhead

    def parts_gb(self) -> dict:
        return {k: round(v / 1e9, 2) for k, v in self._parts().items()}

    def parts_mib(self) -> dict:
        return {k: round(v / 2**20) for k, v in self._parts().items()}

    def _parts(self) -> dict:
        return {"weights": self.weights, "state": self.trainable_state, "copies": self.weight_copies,
                "activations": self.activations, "overhead": self.overhead}


def shape_from_config(config, name: str = "", num_labels: int | None = None, architecture: str = "auto") -> ModelShape:
    """Count a configuration's weights on a weight-free model (the meta device: milliseconds for
    a small model, a second or two for 8B)."""
    import torch

    from budgetft.methods.counting import build_meta_model

    arch = architecture_from_config(config, architecture)
    model = build_meta_model(config, arch, num_labels=num_labels)
    linear = head = 0
    seen: set[int] = set()
    total = largest = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
            largest = max(largest, p.numel())
    heads_names = ("lm_head", "classifier", "score")
    tied = set()
    for mod_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            if any(h in mod_name.split(".")[-1] for h in heads_names) or mod_name.endswith(("lm_head", "classifier", "score")):
                if id(module.weight) not in tied:
                    head += module.weight.numel()
            else:
                linear += module.weight.numel()
    emb = model.get_input_embeddings()
    if emb is not None and getattr(model, "lm_head", None) is not None and model.lm_head.weight is emb.weight:
        head = 0  # tied: the embedding table, counted once, and never quantized
    text = getattr(config, "text_config", None) or config
    hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "d_model", 0) or getattr(text, "n_embd", 0))
    layers = int(getattr(text, "num_hidden_layers", 0) or getattr(text, "n_layer", 0))
    inter = int(getattr(text, "intermediate_size", 0) or getattr(text, "ffn_dim", 0) or getattr(text, "n_inner", 0) or 4 * hidden)
    heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "n_head", 0) or 1)
    kv = int(getattr(text, "num_key_value_heads", 0) or heads)
    gated = any("gate_proj" in n for n, _ in model.named_modules())
    sites = _lora_sites(model, layers)
    return ModelShape(
        name=name or getattr(config, "_name_or_path", "") or config.model_type, architecture=arch, params=total, linear_params=linear,
        head_params=head, hidden=hidden, layers=layers, intermediate=inter, heads=heads, kv_heads=kv,
        vocab=int(getattr(text, "vocab_size", 0)), gated_mlp=gated,
        attention_dropout=float(getattr(text, "attention_dropout", None) or getattr(text, "attention_probs_dropout_prob", None) or 0.0),
        hidden_dropout=float(getattr(text, "hidden_dropout_prob", None) or getattr(text, "dropout", None) or 0.0), lora_sites=sites,
        largest_tensor=largest,
    )


def _lora_sites(model, layers: int) -> dict:
    """Per layer, the summed input width of the linear layers LoRA adapts: every linear layer of
    the blocks ("all-linear"), or the attention projections ("attention")."""
    import torch

    every = attention = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.split(".")[-1] in ("lm_head", "classifier", "score"):
            continue
        parts = name.lower().split(".")
        if "pooler" in parts:
            continue
        every += module.in_features
        if any("attn" in p or "attention" in p for p in parts[:-1]):
            attention += module.in_features
    layers = max(1, layers)
    return {"all-linear": every / layers, "attention": attention / layers}


def shape_from_config_dict(data: dict, name: str = "", num_labels: int | None = None) -> ModelShape:
    from transformers import AutoConfig

    data = dict(data)
    model_type = data.pop("model_type")
    return shape_from_config(AutoConfig.for_model(model_type, **data), name=name, num_labels=num_labels)


def config_of(location: str, revision: str | None = None):
    """The transformers configuration of a model directory, a hub id with a configuration shipped
    for sizing (budgetft.models.configs), or a hub id the hub answers for."""
    from transformers import AutoConfig

    from budgetft.models.configs import shipped_config

    shipped = shipped_config(location)
    return AutoConfig.from_pretrained(str(shipped or location), revision=None if shipped else revision)


@lru_cache(maxsize=16)
def model_shape(location: str, revision: str | None = None, num_labels: int | None = None, architecture: str = "auto") -> ModelShape:
    """The shape of a model directory or hub id (see config_of)."""
    return shape_from_config(config_of(location, revision), name=location, num_labels=num_labels, architecture=architecture)


def trainable_params(shape: ModelShape, option: MemoryOption) -> int:
    """The option's trainable weights: given, or LoRA's from its rank and sites, or the method's
    count on a weight-free model."""
    if option.trainable is not None:
        return option.trainable
    if option.method in ("lora", "qlora"):
        # r x (in + out) per adapted layer: ~r x 2 x input width for square-ish layers (q, o, up).
        return int(option.lora_r * 2 * shape.lora_sites.get(option.lora_targets, 0) * shape.layers)
    return shape.params if option.method == "full" else int(0.01 * shape.params)


def predict_peak(shape: ModelShape, option: MemoryOption) -> MemoryEstimate:
    """The option's peak memory in bytes, by part (see the module's docstring)."""
    t = trainable_params(shape, option)
    full = option.method == "full"
    w_bytes = BYTES_PER_ELEMENT[option.weight_dtype]
    c_bytes = BYTES_PER_ELEMENT[option.compute_dtype]
    autocast = c_bytes < 4 if option.autocast is None else option.autocast
    frozen = max(0, shape.params - t) if full or t < shape.params else 0
    if option.quantization:
        other = max(0, frozen - shape.linear_params)
        weights = shape.linear_params * NF4_BYTES_PER_WEIGHT + other * 2 + t * MASTER_BYTES
    else:
        weights = frozen * w_bytes + t * MASTER_BYTES
    if full:
        # The process keeps the weights as read for its next trial (budgetft.models.cache); the
        # trial trains a copy. (Other methods that train base weights train a few percent of them.)
        weights += shape.params * w_bytes
    # Autocast casts fp32 weights to 16 bits at each linear layer and keeps the cast for the
    # backward pass: every fp32 linear weight of the forward pass (trainable masters included,
    # whose casts autocast caches). Checkpointing recomputes them one layer at a time.
    copies = 0.0
    if autocast:
        fp32_linear = shape.linear_params + shape.head_params if (w_bytes == 4 or full) and not option.quantization else 0
        copies = c_bytes * fp32_linear
        if option.checkpointing and copies:
            copies = copies / max(1, shape.layers) * 2
    tokens = option.micro_batch * option.length
    per_layer = layer_activation_bytes(shape, option)
    residual = (4 if fp32_stream(option) else c_bytes) * shape.hidden
    if option.checkpointing:
        activations = tokens * (shape.layers * residual + CHECKPOINTED_LAYERS * per_layer)
    else:
        activations = tokens * ((shape.layers + BACKWARD_LAYERS) * per_layer + residual)
    if shape.architecture != ENCODER and option.full_logits:
        activations += tokens * shape.vocab * (c_bytes + 8)  # logits, their fp32 upcast and its log-softmax
    # At the start of the backward pass the moments exist (from the step before) and few
    # gradients; at the optimizer step every gradient and AdamW's temporary do.
    backward = weights + copies + activations + t * ADAM_BYTES
    # Torch's multi-tensor AdamW (a GPU's default) holds a temporary of every trainable weight at
    # once; on a CPU it steps tensor by tensor, the largest tensor's at a time.
    temp = t * ADAM_TEMP_BYTES if option.device != "cpu" else min(t, shape.largest_tensor or t) * ADAM_TEMP_BYTES
    optimizer = weights + t * (GRAD_BYTES + ADAM_BYTES) + temp
    at, peak_state = ("backward", t * ADAM_BYTES) if backward >= optimizer else ("optimizer", t * (GRAD_BYTES + ADAM_BYTES) + temp)
    body = weights + peak_state + (copies + activations if at == "backward" else 0.0)
    overhead = CPU_STEP_OVERHEAD_BYTES if option.device == "cpu" else 0.0
    if option.device != "cpu":
        overhead = body * (ALLOCATOR_SLACK - 1) + CUDA_CONTEXT_BYTES
    return MemoryEstimate(weights, peak_state, copies if at == "backward" else 0.0, activations if at == "backward" else 0.0, overhead, at)


def layer_activation_bytes(shape: ModelShape, option: MemoryOption) -> float:
    """Bytes one layer keeps for its backward pass, per token (see the module's docstring)."""
    h, i = shape.hidden, shape.intermediate
    c = BYTES_PER_ELEMENT[option.compute_dtype]
    autocast = c < 4 if option.autocast is None else option.autocast
    r = 4 if fp32_stream(option) else c  # the residual stream's dtype
    dropout = shape.hidden_dropout if option.dropout is None else option.dropout
    attn_dropout = shape.attention_dropout if option.dropout is None else option.dropout
    # A norm upcasts a 16-bit stream to fp32 and keeps that copy, and the next linear layers keep
    # its 16-bit output; over an fp32 stream they keep its output, or autocast's 16-bit cast of it.
    norm = 4 * h + c * h if r < 4 else (c * h if autocast else 4 * h)
    if shape.architecture == ENCODER:
        attention = 4 * c * h + c * h  # q, k, v, the output, the output projection's input
        mlp = 3 * c * i  # fc1's output, GELU's output (fc2's input), GELU's input
        drops = (2 * h if dropout > 0 else 0)  # masks after attention and the MLP (1 byte each)
        layer = r * h + attention + mlp + 2 * norm + drops
    else:
        # q (rotated), k and v expanded to every head, attention's output and the output
        # projection's contiguous input; the residual after attention.
        attention = 5 * c * h
        mlp = (4 if shape.gated_mlp else 2) * c * i
        layer = r * h + norm + attention + r * h + norm + mlp
    if attn_dropout > 0 and option.device == "cpu":
        # PyTorch's CPU attention falls back to its math kernel under dropout: scores, softmax
        # and mask per head, L x L per row (fp32 softmax, 16-bit or fp32 probabilities, a mask).
        layer += shape.heads * option.length * (4 + c + 1)
    if option.method in ("lora", "qlora"):
        # Each adapted layer: LoRA's dropout mask (1 byte) and its input in the adapter's compute
        # dtype (fp32 masters under autocast: cast again to 16 bits), per input feature.
        width = shape.lora_sites.get(option.lora_targets, 0)
        layer += width * ((1 if dropout_lora() > 0 else 0) + (c if autocast else 4))
    return layer


def fp32_stream(option: MemoryOption) -> bool:
    """Whether the residual stream is fp32: over fp32 weights, which full fine-tuning's masters
    are whatever the stored dtype (the embedding's output and the norms' are fp32 then; autocast
    casts only the linear layers' inputs)."""
    return (option.weight_dtype == "float32" or option.method == "full") and not option.quantization


def dropout_lora() -> float:
    """LoRA's own dropout at its default (budgetft.methods.lora: 0.05)."""
    return 0.05


def option_dict(option: MemoryOption) -> dict:
    return json.loads(json.dumps(asdict(option)))


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


