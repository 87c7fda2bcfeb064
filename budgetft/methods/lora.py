"""LoRA: low-rank updates W + (alpha/r)·B·A on every linear layer (Hu et al., 2021).

The same module builds the variants, each registered as its own method (rslora, dora, pissa,
olora) so a job can compare them by name; `lora` itself accepts the switches too.
"""

from budgetft.methods._peft import task_type, wrap
from budgetft.methods.base import Method

# Imported inside functions: peft, torch: importing this module must stay cheap (start-up time).

# init: peft's init_lora_weights. "default": A Kaiming-uniform, B zero, so the model is
# unchanged at step 0. "pissa": A, B from the top-r singular vectors of W, and W keeps the
# residual (Meng et al., 2024); full SVD, deterministic, so re-applying it when loading a saved
# adapter rebuilds the same residual. "olora": A, B from a QR decomposition of W (Büyükakyüz, 2024).
INITS = {"default": True, "pissa": "pissa", "olora": "olora"}
# targets: which linear layers get adapters. "all-linear": every linear layer but the output head
# (on small models this beats q/v only for the same parameter count: QLoRA, Dettmers et al.,
# 2023). "attention": the attention projections only (q, k, v, o), the original paper's choice.
TARGETS = ("all-linear", "attention")


def attention_linears(model) -> list[str]:
    """Names of the linear layers inside attention blocks (q/k/v/o in Llama, query/key/value and
    the output dense layer in BERT), found by where they sit, not by a per-model name table."""
    import torch

    names = []
    for name, module in model.named_modules():
        parts = name.lower().split(".")
        if isinstance(module, torch.nn.Linear) and any("attn" in p or "attention" in p for p in parts[:-1]):
            names.append(name)
    return names


def apply(model, config, context):
    from peft import LoraConfig

    init = str(config.get("init", "default"))
    if init not in INITS:
        raise ValueError(f"lora init {init!r}; valid: {', '.join(INITS)}")
    targets = str(config.get("targets", "all-linear"))
    if targets not in TARGETS:
        raise ValueError(f"lora targets {targets!r}; valid: {', '.join(TARGETS)}")
    if next(model.parameters()).device.type == "meta":
        init = "default"  # parameter counting: SVD/QR need real weights; the shapes are the same
    return wrap(
        model,
        LoraConfig(
            task_type=task_type(model),
            r=int(config["r"]),
            lora_alpha=float(config["lora_alpha"]),
            lora_dropout=float(config["lora_dropout"]),
            target_modules="all-linear" if targets == "all-linear" else attention_linears(model),
            # rsLoRA scales by alpha/sqrt(r) instead of alpha/r, so larger ranks keep learning
            # (Kalajdzievski, 2023).
            use_rslora=bool(config.get("use_rslora", False)),
            # DoRA splits W into magnitude and direction and adapts the direction with LoRA
            # (Liu et al., 2024); ~1.5-2x LoRA's time per step on CPU.
            use_dora=bool(config.get("use_dora", False)),
            init_lora_weights=INITS[init],
        ),
        adapter=getattr(context, "adapter", None),  # a phase's own adapter (PET: one per prompt pattern)
    )


def variant(name: str, summary: str, fixed: dict, space: dict, defaults: dict | None = None, **extra) -> Method:
    """A LoRA variant: LoRA's parameters with some switches fixed."""
    base_defaults = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "learning_rate": 1e-3, "use_rslora": False, "use_dora": False, "init": "default", "targets": "all-linear"}
    merged = {**base_defaults, **fixed, **(defaults or {})}
    return Method(name=name, summary=summary, defaults=merged, default_space=space, apply=apply, **extra)


METHOD = variant(
    "lora",
    "low-rank adapters on every linear layer",
    fixed={},
    space={
        "r": [4, 8, 16],
        "lora_alpha": 16,
        "learning_rate": {"loguniform": [2e-4, 3e-3]},
    },
)
