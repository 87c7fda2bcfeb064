"""OLoRA: LoRA initialised from an orthonormal QR basis of each weight (Büyükakyüz, 2024),
which the paper reports converges faster than LoRA; the base keeps the residual."""

from budgetft.methods.lora import variant

METHOD = variant(
    "olora",
    "LoRA initialised from a QR decomposition of each weight",
    fixed={"init": "olora"},
    space={"r": [4, 8, 16], "lora_alpha": 16, "learning_rate": {"loguniform": [1e-4, 2e-3]}},
    defaults={"learning_rate": 5e-4},
)
