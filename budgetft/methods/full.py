"""Full fine-tuning: every weight is trainable. The reference point the PEFT methods must beat
on cost; on CPU about twice the time per step of LoRA for the embedded model."""

from budgetft.methods.base import Method


def apply(model, config, context):
    for param in model.parameters():
        param.requires_grad_(True)
    return model


METHOD = Method(
    name="full",
    summary="every weight trainable",
    defaults={"learning_rate": 2e-5},
    default_space={"learning_rate": {"loguniform": [5e-6, 1e-4]}},
    apply=apply,
    uses_peft=False,
    aliases=("full_finetune", "full_ft"),
)
