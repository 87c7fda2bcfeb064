"""DoRA: weight-decomposed LoRA (Liu et al., 2024). W = m · (W0 + BA)/||W0 + BA||: a trained
magnitude vector per output plus a LoRA update of the direction. More parameters than LoRA by
one vector per layer, and a slower step (the column norm is recomputed every forward pass)."""

from budgetft.methods.lora import variant

METHOD = variant(
    "dora",
    "LoRA on the direction plus a trained magnitude per output",
    fixed={"use_dora": True},
    space={"r": [4, 8, 16], "lora_alpha": 16, "learning_rate": {"loguniform": [2e-4, 3e-3]}},
)
