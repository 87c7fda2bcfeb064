"""LoRA: low-rank updates W + (alpha/r)·B·A on every linear layer (Hu et al., 2021)."""

from budgetft.methods._peft import wrap
from budgetft.methods.base import Method


def apply(model, config, context):
    from peft import LoraConfig, TaskType

    return wrap(
        model,
        LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=int(config["r"]),
            lora_alpha=float(config["lora_alpha"]),
            lora_dropout=float(config["lora_dropout"]),
            # Every linear layer but the output head: on small models this beats q/v only
            # for the same parameter count (QLoRA, Dettmers et al., 2023).
            target_modules="all-linear",
        ),
    )


METHOD = Method(
    name="lora",
    summary="low-rank adapters on every linear layer",
    defaults={"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "learning_rate": 1e-3},
    default_space={
        "r": [4, 8, 16],
        "lora_alpha": 16,
        "learning_rate": {"loguniform": [2e-4, 3e-3]},
    },
    apply=apply,
)
