"""rsLoRA: LoRA scaled by alpha/sqrt(r) rather than alpha/r (Kalajdzievski, 2023), so the
update does not shrink as the rank grows; worth it at the larger ranks in its space."""

from budgetft.methods.lora import variant

METHOD = variant(
    "rslora",
    "LoRA with rank-stabilised scaling alpha/sqrt(r)",
    fixed={"use_rslora": True},
    # With alpha/sqrt(r), alpha=16 at r=16 scales 4x, not 1x: learning rates sit lower than LoRA's.
    space={"r": [8, 16, 32], "lora_alpha": 16, "learning_rate": {"loguniform": [1e-4, 2e-3]}},
    aliases=("rs_lora",),
)
