"""LoKr: the weight update as a Kronecker product C ⊗ (B·A) (Edalati et al., 2022; LyCORIS):
large effective rank from very few parameters."""

from budgetft.methods._peft import task_type, wrap
from budgetft.methods.base import Method

# Imported inside functions: peft: importing this module must stay cheap (start-up time).


def apply(model, config, context):
    from peft import LoKrConfig

    return wrap(
        model,
        LoKrConfig(
            task_type=task_type(model),
            r=int(config["r"]),
            alpha=float(config["alpha"]),
            module_dropout=float(config["module_dropout"]),
            # -1: split each dimension into its most balanced factor pair.
            decompose_factor=int(config["decompose_factor"]),
            target_modules="all-linear",
        ),
    )


METHOD = Method(
    name="lokr",
    summary="Kronecker-product updates on every linear layer",
    defaults={"r": 8, "alpha": 8, "module_dropout": 0.0, "decompose_factor": -1, "learning_rate": 1e-3},
    default_space={"r": [4, 8], "alpha": 8, "learning_rate": {"loguniform": [3e-4, 5e-3]}},
    apply=apply,
)
