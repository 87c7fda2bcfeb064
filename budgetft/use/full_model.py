"""A trained model as a plain transformers model: what `budgetft export` writes for budgetft's
own methods (which peft cannot load) and for a peft adapter merged into its base.

The weights go into a fresh model built from the (adjusted) config, with strict key checks, and
the two models are compared on one input, so an export that transformers would load differently
from what budgetft scored is refused instead of written.

BitFit on a model without biases (Llama, SmolLM2) adds zero-initialised biases to its linear
layers; transformers has switches for those on many architectures (Llama's attention_bias and
mlp_bias), which are turned on here. Biases a switch adds that BitFit did not train are zero,
which leaves the model's function unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

from budgetft.methods.counting import build_meta_model
from budgetft.use import UseError

# Imported inside functions: torch, transformers: importing this module must stay cheap (start-up
# time).

# Config switches that give an architecture's linear layers biases (Llama, Mistral-like:
# attention_bias and mlp_bias; others name theirs differently).
BIAS_SWITCHES = ("attention_bias", "mlp_bias", "use_bias", "bias", "add_bias_linear", "enable_bias")
# Largest difference of the logits (nats) the self-check accepts between budgetft's model and
# the rebuilt one: both are float32 on the same input, so only summation order differs.
SAME_LOGITS = 1e-4


def plain_model(model: Any, architecture: str, class_names: list[str], drop: tuple[str, ...] = ()) -> Any:
    """A fresh transformers model holding `model`'s weights (less the parameters named in
    `drop`, e.g. the class bias, which is scoring data, not a weight)."""
    import torch

    state = {k: v for k, v in model.state_dict().items() if k not in drop}
    config = copy.deepcopy(model.config)
    if architecture == "encoder":
        # The head's outputs, named as the job's classes (pipelines show these names).
        config.id2label = dict(enumerate(class_names))
        config.label2id = {name: i for i, name in enumerate(class_names)}
    else:
        config.use_cache = True  # budgetft turns the cache off for training; generation wants it
    expected = _keys(config, architecture)
    extra = set(state) - expected
    if extra:
        switched = [s for s in BIAS_SWITCHES if getattr(config, s, None) is False]
        for switch in switched:
            setattr(config, switch, True)
        expected = _keys(config, architecture)
        extra = set(state) - expected
        if extra:
            example = sorted(extra)[0]
            raise UseError(
                f"the trained model has {len(extra)} tensors (e.g. {example}) that {type(model).__name__} has no place for"
                + (f", even with {', '.join(switched)} on" if switched else "")
                + "; plain transformers cannot load it: score with `budgetft predict`, or export another trial with --trial"
            )
    fresh = _build(config, architecture)
    missing = [k for k in expected - set(state) if not k.endswith(".bias")]
    if missing:
        raise UseError(f"the trained model lacks {len(missing)} weights {type(fresh).__name__} needs (e.g. {sorted(missing)[0]}); "
                       "this export cannot be written: score with `budgetft predict`")
    with torch.no_grad():
        for name, tensor in fresh.state_dict().items():
            if name not in state:
                tensor.zero_()  # a bias the config switched on and the method never trained
    result = fresh.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise UseError(f"rebuilding the model left {len(result.unexpected_keys)} weights unplaced (e.g. {result.unexpected_keys[0]})")
    fresh.eval()
    _same_function(model, fresh)
    return fresh


def _keys(config: Any, architecture: str) -> set[str]:
    return set(build_meta_model(config, architecture).state_dict())


def _build(config: Any, architecture: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if architecture == "encoder" else AutoModelForCausalLM
    return auto.from_config(config, dtype=torch.float32)


def _same_function(trained: Any, fresh: Any) -> None:
    """Both models' logits on one short input agree to SAME_LOGITS."""
    import torch

    vocab = int(fresh.config.vocab_size)
    ids = torch.arange(1, min(vocab, 9)).unsqueeze(0)
    trained.eval()
    with torch.no_grad():
        a = trained(input_ids=ids).logits.float()
        b = fresh(input_ids=ids).logits.float()
    gap = float((a - b).abs().max())
    if a.shape != b.shape or gap > SAME_LOGITS:
        raise UseError(f"the rebuilt model's logits differ from the trained one's by {gap:.2g} (over {SAME_LOGITS:g}); "
                       "the export was not written: score with `budgetft predict`")
