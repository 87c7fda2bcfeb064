"""Prefix tuning: trainable key/value prefixes at every attention layer (Li & Liang, 2021)."""

from budgetft.methods._peft import task_type, wrap
from budgetft.methods.base import Method


def apply(model, config, context):
    from peft import PrefixTuningConfig

    return wrap(
        model,
        PrefixTuningConfig(
            task_type=task_type(model),
            num_virtual_tokens=int(config["num_virtual_tokens"]),
        ),
    )


METHOD = Method(
    name="prefix_tuning",
    summary="trainable key/value prefixes in every attention layer",
    defaults={"num_virtual_tokens": 20, "learning_rate": 1e-2},
    default_space={
        "num_virtual_tokens": [10, 20, 30],
        "learning_rate": {"loguniform": [1e-3, 3e-2]},
    },
    apply=apply,
    aliases=("prefix",),
)
