"""Houlsby adapters: a bottleneck after both the attention and the feed-forward sublayer of
every block (Houlsby et al., 2019). Ours; see _bottleneck.py."""

from budgetft.methods._bottleneck import insert_adapters
from budgetft.methods.base import Method


def apply(model, config, context):
    return insert_adapters(model, int(config["reduction_factor"]), after_attention=True)


METHOD = Method(
    name="houlsby",
    summary="bottleneck adapters after attention and feed-forward in every block",
    # reduction 16: a 36-unit bottleneck on SmolLM2's 576-wide blocks, ~1.9% of the model.
    defaults={"reduction_factor": 16, "learning_rate": 1e-3},
    default_space={"reduction_factor": [8, 16, 32], "learning_rate": {"loguniform": [3e-4, 3e-3]}},
    apply=apply,
    uses_peft=False,
    aliases=("houlsby_adapter", "adapter_houlsby"),
)
