"""Last-k-layers fine-tuning: train the top k transformer blocks (and the final norm, and an
encoder's classification head), freeze the rest. The classic cheap baseline (Howard & Ruder,
2018; Lee et al., 2019 "What would Elsa do?"): no backward pass below the lowest trained block,
so a step costs well under full fine-tuning's."""

from budgetft.methods.arch import final_norm, freeze_all, make_head_trainable, transformer_blocks
from budgetft.methods.base import Method


def apply(model, config, context):
    k = int(config["k"])
    blocks = transformer_blocks(model)
    if not 1 <= k <= len(blocks):
        raise ValueError(f"last_k: k={k}, but the model has {len(blocks)} blocks; choose 1..{len(blocks)}")
    freeze_all(model)
    trained = list(blocks[len(blocks) - k :])
    norm = final_norm(model)
    if norm is not None:
        trained.append(norm)
    for module in trained:
        for param in module.parameters():
            param.requires_grad_(True)
    make_head_trainable(model)
    return model


METHOD = Method(
    name="last_k",
    summary="the top k transformer blocks (and final norm) trainable",
    defaults={"k": 2, "learning_rate": 1e-4},
    # 1-4 of SmolLM2's 30 blocks: 3-13% of the model. Learning rates between full
    # fine-tuning's and LoRA's.
    default_space={"k": [1, 2, 4], "learning_rate": {"loguniform": [3e-5, 1e-3]}},
    apply=apply,
    uses_peft=False,
    aliases=("last_k_layers", "top_k", "lastk"),
)
