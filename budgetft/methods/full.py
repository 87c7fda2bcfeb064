"""Full fine-tuning: every weight is trainable. The reference point the PEFT methods must beat
on cost; on CPU about twice the time per step of LoRA for the embedded model.

train_embeddings: false keeps the token-embedding matrix as pretrained. Where the vocabulary is
large against the model (all-MiniLM-L6-v2: 11.7M of its 22.7M weights are the 30,522-token
table) AdamW's update of that table is a tenth of a step on a CPU, for rows that a batch of a
few hundred tokens barely touches. A model whose output layer shares the table (most decoders,
SmolLM2 among them) keeps that layer frozen too."""

from budgetft.methods.base import Method


def apply(model, config, context):
    for param in model.parameters():
        param.requires_grad_(True)
    if not config.get("train_embeddings", True):
        model.get_input_embeddings().weight.requires_grad_(False)
    return model


METHOD = Method(
    name="full",
    summary="every weight trainable (train_embeddings: false keeps the token embeddings as pretrained)",
    defaults={"learning_rate": 2e-5, "train_embeddings": True},
    default_space={"learning_rate": {"loguniform": [5e-6, 1e-4]}},
    apply=apply,
    uses_peft=False,
    aliases=("full_finetune", "full_ft"),
)
