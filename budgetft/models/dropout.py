"""Setting a model's own dropout: every probability its config declares and its modules read.

A job may train without the dropout a model was pretrained with (TrainSpec.dropout). On a CPU
dropout is not free: drawing a mask per activation cost all-MiniLM-L6-v2 ~12% of its training
step (batch 8, bf16, 2 cores: 0.50 against 0.44 s), and attention dropout also keeps PyTorch's
fused attention kernel from running. Its regularisation matters little in the one pass over the
data that a small budget buys (benchmarks/README.md, "Dropout").
"""

from __future__ import annotations

from typing import Any

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def set_dropout(model: Any, p: float) -> int:
    """Set every dropout probability of `model` to `p`: its dropout modules' (BERT, OPT), its
    attention layers' float attributes (Llama's `attention_dropout`), and its config's (so that
    what reads the config, e.g. budgetft.train.frozen_prefix, sees the same). Call it on the
    base model before a method adds modules of its own (LoRA's dropout is the method's setting,
    not the model's). Returns how many module settings changed."""
    import torch

    changed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            if module.p != p:
                module.p, changed = p, changed + 1
            continue
        for name, value in list(vars(module).items()):
            if _is_probability(name, value) and value != p:
                setattr(module, name, p)
                changed += 1
    config = getattr(model, "config", None)
    if config is not None:
        for name, value in list(vars(config).items()):
            if _is_probability(name, value):
                setattr(config, name, p)
    return changed


def _is_probability(name: str, value: Any) -> bool:
    return ("dropout" in name or "pdrop" in name) and isinstance(value, float) and not isinstance(value, bool)
