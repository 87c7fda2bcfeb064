"""Which of the two shapes budgetft trains a model is: found by looking, not by name tables.

- decoder: a causal LM (Llama, SmolLM2, OPT, GPT-2, ...), scored by its label words'
  log-probabilities (budgetft.scoring.verbalizer);
- encoder: a bidirectional encoder with a sequence-classification head (BERT, MiniLM, RoBERTa,
  ...), scored by the head's logits (budgetft.scoring.head).

From a configuration (before any weights are read) or from a loaded model (possibly wrapped by
peft).
"""

from __future__ import annotations

from typing import Any

from budgetft.models.errors import ModelError

# Imported inside functions: transformers: importing this module must stay cheap (start-up time).

DECODER, ENCODER = "decoder", "encoder"
ARCHITECTURES = (DECODER, ENCODER)

# Architecture names that end like these are causal LMs (LlamaForCausalLM, GPT2LMHeadModel).
_DECODER_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def base_of(model: Any) -> Any:
    """The transformers model under a peft wrapper (or the model itself)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def architecture_of(model: Any) -> str:
    return ENCODER if type(base_of(model)).__name__.endswith("ForSequenceClassification") else DECODER


def architecture_from_config(config, wanted: str = "auto") -> str:
    """A config that names a causal-LM class is a decoder; one whose type transformers can give
    a sequence-classification head (BERT, MiniLM, RoBERTa, ...) is an encoder."""
    if wanted != "auto":
        return wanted
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    names = list(getattr(config, "architectures", None) or [])
    if any(n.endswith(_DECODER_SUFFIXES) for n in names):
        return DECODER
    if config.model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES and (names or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return ENCODER
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return DECODER
    raise ModelError(
        f"model type {config.model_type!r} is neither a causal LM nor a model transformers can give a "
        "classification head; use a decoder-only LM or an encoder such as BERT, or set model.architecture"
    )
