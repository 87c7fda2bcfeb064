"""Pfeiffer adapters: one bottleneck after the feed-forward sublayer of every block (Pfeiffer
et al., 2021): half Houlsby's adapters, which the paper finds as accurate and faster. Ours;
see _bottleneck.py."""

from budgetft.methods._bottleneck import insert_adapters
from budgetft.methods.base import Method


def apply(model, config, context):
    return insert_adapters(model, int(config["reduction_factor"]), after_attention=False)


METHOD = Method(
    name="pfeiffer",
    summary="bottleneck adapters after the feed-forward sublayer of every block",
    defaults={"reduction_factor": 16, "learning_rate": 1e-3},
    default_space={"reduction_factor": [8, 16, 32], "learning_rate": {"loguniform": [3e-4, 3e-3]}},
    apply=apply,
    uses_peft=False,
    aliases=("pfeiffer_adapter", "adapter_pfeiffer", "bottleneck"),
)
