"""PiSSA: LoRA initialised from the top-r singular vectors of each weight, the base keeping the
residual (Meng et al., 2024). Training starts on the principal directions, so it converges in
fewer steps than LoRA's zero start: useful when a budget buys only a few hundred steps.

Initialisation costs one full SVD per linear layer (~2 s for the 135M model on 2 CPU cores).
"""

from budgetft.methods.lora import variant

METHOD = variant(
    "pissa",
    "LoRA initialised from the principal singular vectors (base keeps the residual)",
    fixed={"init": "pissa", "lora_dropout": 0.0},  # PiSSA's paper trains without dropout
    # The adapter starts with the largest singular values, so steps move the model more than
    # LoRA's: learning rates an order of magnitude lower (the paper uses 2e-5 on 7B models).
    space={"r": [4, 8, 16], "lora_alpha": {"choice": [4, 8, 16]}, "learning_rate": {"loguniform": [3e-5, 1e-3]}},
    defaults={"lora_alpha": 8, "learning_rate": 2e-4},
)
