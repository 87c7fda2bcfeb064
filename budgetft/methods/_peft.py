"""Helpers shared by the methods that wrap Hugging Face peft."""

from __future__ import annotations

from typing import Any


def task_type(model: Any) -> Any:
    """peft's task type for this model: SEQ_CLS for an encoder with a classification head (peft
    then also trains the freshly initialised head), CAUSAL_LM for a decoder."""
    from peft import TaskType

    from budgetft.models.architecture import ENCODER, architecture_of

    return TaskType.SEQ_CLS if architecture_of(model) == ENCODER else TaskType.CAUSAL_LM


def wrap(model: Any, peft_config: Any, adapter: str | None = None) -> Any:
    """The model with a peft adapter. adapter: its name (ApplyContext.adapter); a model that has
    peft adapters already gets this one beside them, made the active one."""
    from peft import PeftModel, get_peft_model

    if adapter is None:
        return get_peft_model(model, peft_config)
    if isinstance(model, PeftModel):
        model.add_adapter(adapter, peft_config)
        model.set_adapter(adapter)
        return model
    return get_peft_model(model, peft_config, adapter_name=adapter)


def init_prompt_from_text(peft_model: Any, context: Any, num_virtual_tokens: int, text: str | None = None) -> None:
    """Initialise soft-prompt embeddings from real token embeddings of the task text.

    peft's own text initialisation reloads the tokenizer by hub name, which fails offline for
    the embedded model; the embeddings are what matter, so we copy them directly. Random
    normal(0, 1) vectors are far off the scale of a small model's embeddings (std ~0.05), which
    is why text or vocabulary initialisation trains much faster.

    text: what to start from (default: the context's instruction text); "" samples vocabulary.
    """
    import torch

    embeddings = peft_model.get_input_embeddings().weight
    ids: list[int] = []
    text = context.init_text if text is None else text
    if context.tokenizer is not None and text:
        ids = context.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = [i for i in ids if 0 <= i < embeddings.shape[0]]
    if not ids:  # no text: sample real vocabulary rows, seeded by the global torch RNG
        ids = torch.randint(0, embeddings.shape[0], (num_virtual_tokens,)).tolist()
    ids = (ids * (num_virtual_tokens // len(ids) + 1))[:num_virtual_tokens]
    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    with torch.no_grad():
        encoder.embedding.weight.copy_(embeddings[torch.tensor(ids)].detach().clone())


def virtual_token_offset(model: Any) -> int:
    """How many soft-prompt positions peft prepends to the logits (0 for prefix tuning, whose
    virtual tokens live in the key/value cache, and for every non-prompt method)."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not getattr(config, "is_prompt_learning", False):
        return 0
    if str(config.peft_type).endswith("PREFIX_TUNING"):
        return 0
    return int(config.num_virtual_tokens)
