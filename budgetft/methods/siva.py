"""SiVA, singular-value adaptation: each target weight is split by its SVD into the top-r part
U_r diag(s_r) V_r^T and a residual W - U_r diag(s_r) V_r^T that stays frozen in the weight
itself; U_r and V_r train, s_r stays fixed. At step 0 the layer computes exactly what it did.

How it differs from `pissa` (peft's PiSSA, the closest relative): PiSSA trains the factors
A = U_r sqrt(s_r) and B = sqrt(s_r) V_r^T, so a gradient step on a factor is scaled by the
singular values it carries; SiVA keeps the singular values out of what trains: U_r and V_r start
orthonormal and every direction starts at the same scale, the update to W being
U diag(s_r) V^T - U_r diag(s_r) V_r^T. `targets: kv` adapts only attention's key and value
projections (the study's k/v-only variant: fewer parameters, cheaper steps).

Ours (no library ships it). Initialisation costs one SVD per target weight (~2 s for the 135M
model on 2 CPU cores, as PiSSA). The SVD is exact and deterministic, so loading saved U and V
onto a fresh base rebuilds the same residual.
"""

from __future__ import annotations

from typing import Any

from budgetft.methods.arch import freeze_all, make_head_trainable, transformer_blocks
from budgetft.methods.base import Method

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

# Attention's key and value projections in the architectures we know (Llama/Mistral/Qwen,
# OPT/BART: k_proj/v_proj; BERT/MiniLM/RoBERTa: key/value).
KEY_VALUE = ("k_proj", "v_proj", "key", "value")


def _siva_class():
    import torch

    class SiVA(torch.nn.Module):
        """The trained top-r part of one linear layer's weight."""

        def __init__(self, u, s, v):
            super().__init__()
            self.u = torch.nn.Parameter(u)  # (out, r), orthonormal columns at step 0
            self.v = torch.nn.Parameter(v)  # (r, in), orthonormal rows at step 0
            self.register_buffer("s", s, persistent=False)  # (r,), fixed: rebuilt from the base on load

        def forward(self, x):
            return ((x @ self.v.to(x.dtype).t()) * self.s.to(x.dtype)) @ self.u.to(x.dtype).t()

    return SiVA


def _add_top_part(module, inputs, output):
    return output + module.siva(inputs[0])


def targets_of(block: Any, which: str) -> list[tuple[str, Any]]:
    """(name, nn.Linear) in `block` that SiVA adapts: every linear layer, or key/value only."""
    import torch

    found = [(n, m) for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)]
    if which == "kv":
        found = [(n, m) for n, m in found if n.rsplit(".", 1)[-1] in KEY_VALUE]
    return found


def apply(model, config, context):
    import torch

    r, which = int(config["r"]), str(config["targets"])
    if which not in ("all", "kv"):
        raise ValueError(f"siva: targets is {which!r}; choose 'all' (every linear layer) or 'kv' (attention's key and value)")
    SiVA = _siva_class()
    freeze_all(model)
    adapted = 0
    for block in transformer_blocks(model):
        for _, linear in targets_of(block, which):
            if hasattr(linear, "siva"):
                raise ValueError("this model already has SiVA layers")
            weight = linear.weight.data
            rank = min(r, *weight.shape)
            if weight.is_meta:  # counting parameters on a model without weights: shapes only
                u, s, vh = (torch.empty(shape, device="meta") for shape in ((weight.shape[0], rank), (rank,), (rank, weight.shape[1])))
            else:
                u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
                u, s, vh = u[:, :rank].contiguous(), s[:rank].contiguous(), vh[:rank].contiguous()
                weight.sub_(((u * s) @ vh).to(weight.dtype))  # the residual: frozen, in the layer's own weight
            linear.siva = SiVA(u.to(weight.dtype), s.to(weight.dtype), vh.to(weight.dtype))
            linear.register_forward_hook(_add_top_part)
            adapted += 1
    if not adapted:
        raise ValueError(f"siva: found no {'key/value projections' if which == 'kv' else 'linear layers'} in the model's blocks "
                         "(a model with fused attention projections, e.g. GPT-2's c_attn, is not supported); use lora")
    make_head_trainable(model)
    return model


METHOD = Method(
    name="siva",
    summary="singular-value adaptation: train the top-r singular vectors of each weight, singular values fixed",
    # r 8 as LoRA's and PiSSA's defaults here; the learning rate as PiSSA's (both start on the
    # principal directions, so steps move the model more than LoRA's zero start). Not tuned on
    # BoolQ: the real-budget table in docs/methods.md says what it buys.
    defaults={"r": 8, "targets": "all", "learning_rate": 2e-4},
    default_space={"r": [4, 8, 16], "targets": ["all", "kv"], "learning_rate": {"loguniform": [3e-5, 1e-3]}},
    apply=apply,
    uses_peft=False,
    aliases=("singular_value_adaptation",),
)
