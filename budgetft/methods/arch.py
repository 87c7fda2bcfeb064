"""What a method needs to find in a model: its classification head, its stack of blocks, its
final norm (budgetft.models.architecture says which shape the model is)."""

from __future__ import annotations

from typing import Any

from budgetft.models.architecture import ENCODER, architecture_of, base_of

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

# Attribute names transformers uses for a sequence-classification head (BERT: classifier,
# Llama/OPT-for-classification: score). peft's SEQ_CLS task trains the same two.
HEAD_NAMES = ("classifier", "score")


def head_modules(model: Any) -> list[Any]:
    """The classification head's modules (empty for a causal LM, whose output head is the tied
    embedding and stays frozen under every parameter-efficient method)."""
    if architecture_of(model) != ENCODER:
        return []
    base = base_of(model)
    return [getattr(base, n) for n in HEAD_NAMES if isinstance(getattr(base, n, None), _module_type())]


def make_head_trainable(model: Any) -> None:
    """An encoder's classification head starts random: every method must train it."""
    for module in head_modules(model):
        for param in module.parameters():
            param.requires_grad_(True)


def freeze_all(model: Any) -> None:
    for param in model.parameters():
        param.requires_grad_(False)


def transformer_blocks(model: Any) -> Any:
    """The stack of transformer blocks: the longest nn.ModuleList whose entries share one type
    (model.layers in Llama, encoder.layer in BERT, decoder.layers in OPT, h in GPT-2)."""
    import torch

    best = None
    for module in base_of(model).modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            if len({type(m) for m in module}) == 1 and (best is None or len(module) > len(best)):
                best = module
    if best is None:
        raise ValueError(f"{type(base_of(model)).__name__}: found no stack of transformer blocks")
    return best


def final_norm(model: Any) -> Any | None:
    """The norm after the last block of a decoder (Llama: model.norm, OPT: final_layer_norm)."""
    base = base_of(model)
    inner = getattr(base, "model", None) or getattr(base, "transformer", None)
    for owner in (inner, getattr(inner, "decoder", None)):
        for attr in ("norm", "final_layer_norm", "ln_f"):
            module = getattr(owner, attr, None) if owner is not None else None
            if module is not None:
                return module
    return None


def _module_type():
    import torch

    return torch.nn.Module
