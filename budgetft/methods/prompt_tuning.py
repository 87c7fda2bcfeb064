"""Prompt tuning: trainable soft-prompt vectors prepended to the input (Lester et al., 2021)."""

from budgetft.methods._peft import init_prompt_from_text, wrap
from budgetft.methods.base import Method


def apply(model, config, context):
    from peft import PromptTuningConfig, TaskType

    n = int(config["num_virtual_tokens"])
    peft_model = wrap(model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n))
    # Start from the task's own instruction text rather than noise.
    init_prompt_from_text(peft_model, context, n)
    return peft_model


METHOD = Method(
    name="prompt_tuning",
    summary="soft-prompt vectors prepended to the input, initialised from the task text",
    defaults={"num_virtual_tokens": 20, "learning_rate": 3e-2},
    default_space={
        "num_virtual_tokens": [10, 20, 50],
        "learning_rate": {"loguniform": [3e-3, 1e-1]},
    },
    apply=apply,
    aliases=("prompt", "prompttuning"),
)
