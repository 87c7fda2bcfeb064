"""Helpers shared by the methods that wrap Hugging Face peft."""

from __future__ import annotations

from typing import Any

from budgetft.models.architecture import ENCODER, architecture_of

# Imported inside functions: peft, torch: importing this module must stay cheap (start-up time).


def task_type(model: Any) -> Any:
    """peft's task type for this model: SEQ_CLS for an encoder with a classification head (peft
    then also trains the freshly initialised head), CAUSAL_LM for a decoder."""
    from peft import TaskType

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
