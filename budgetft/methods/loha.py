"""LoHa: the weight update as the Hadamard product of two low-rank products,
(B1·A1) ⊙ (B2·A2) (FedPara, Hyeon-Woo et al., 2022; LyCORIS): rank up to r² for 2x LoRA's
parameters."""

from budgetft.methods._peft import task_type, wrap
from budgetft.methods.base import Method

# Imported inside functions: peft: importing this module must stay cheap (start-up time).


def apply(model, config, context):
    from peft import LoHaConfig

    return wrap(
        model,
        LoHaConfig(
            task_type=task_type(model),
            r=int(config["r"]),
            alpha=float(config["alpha"]),
            module_dropout=float(config["module_dropout"]),
            target_modules="all-linear",
        ),
    )


METHOD = Method(
    name="loha",
    summary="Hadamard product of two low-rank updates on every linear layer",
    defaults={"r": 8, "alpha": 8, "module_dropout": 0.0, "learning_rate": 1e-3},
    default_space={"r": [4, 8], "alpha": 8, "learning_rate": {"loguniform": [3e-4, 5e-3]}},
    apply=apply,
)
