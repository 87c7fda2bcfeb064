"""VeRA: one pair of frozen random matrices shared by every layer, and two trained scaling
vectors per layer (Kopiczko et al., 2024): ~10x fewer parameters than LoRA at r=8.

The shared matrices come from a fixed seed (projection_prng_key) and are saved with the
adapter, so a reload reproduces them. Trained vectors need high learning rates (the paper:
1e-2 to 4e-3 for its classification heads on RoBERTa).
"""

from budgetft.methods._peft import task_type, wrap
from budgetft.methods.base import Method

# Imported inside functions: peft: importing this module must stay cheap (start-up time).


def apply(model, config, context):
    from peft import VeraConfig

    return wrap(
        model,
        VeraConfig(
            task_type=task_type(model),
            r=int(config["r"]),
            # q and v projections by default (peft's table for known architectures), as in
            # the paper; all-linear multiplies the shared matrices' size for little gain.
            vera_dropout=float(config["vera_dropout"]),
            d_initial=float(config["d_initial"]),
            projection_prng_key=0,
            save_projection=True,
        ),
    )


METHOD = Method(
    name="vera",
    summary="shared frozen random low-rank matrices, trained scaling vectors per layer",
    defaults={"r": 256, "vera_dropout": 0.0, "d_initial": 0.1, "learning_rate": 5e-3},
    default_space={
        "r": [128, 256],
        "learning_rate": {"loguniform": [1e-3, 3e-2]},
    },
    apply=apply,
)
