"""AdaLoRA: LoRA in SVD form, P·diag(E)·Q, whose rank budget is moved during training to the
layers where it matters, by pruning the least important singular values (Zhang et al., 2023).

peft needs the trial's length to schedule the budget, which `apply` does not know: the
schedule is set from the trial's step count on the first `after_step` call. Phases, as
fractions of the trial: warm-up without pruning (tinit, 10%), pruning from init_r towards
target_r, then fixed ranks (tfinal, 20%).

Our loss is computed outside the model (label words only), so peft's orthogonality
regulariser on P and Q, which it adds to the model's own loss, is not applied.
"""

from budgetft.methods._peft import task_type, wrap
from budgetft.methods.base import Method

# Imported inside functions: peft: importing this module must stay cheap (start-up time).

TINIT_SHARE, TFINAL_SHARE = 0.10, 0.20


def apply(model, config, context):
    from peft import AdaLoraConfig

    peft_model = wrap(
        model,
        AdaLoraConfig(
            task_type=task_type(model),
            init_r=int(config["init_r"]),
            target_r=int(config["target_r"]),
            lora_alpha=float(config["lora_alpha"]),
            lora_dropout=float(config["lora_dropout"]),
            target_modules="all-linear",
            total_step=1000,  # placeholder, replaced by the trial's steps in after_step
            orth_reg_weight=0.0,
        ),
    )
    # The current rank is a constant peft keeps as a frozen Parameter; moving the adapter to
    # the meta device (parameter counting) makes it trainable again, so pin it.
    for name, param in peft_model.named_parameters():
        if ".ranknum." in name:
            param.requires_grad_(False)
    return peft_model


def after_step(model, step: int, total_steps: int) -> None:
    """Re-allocate ranks; called after every optimiser step, while the gradients exist."""
    tuner = model.base_model
    config = tuner.peft_config[tuner.trainable_adapter_name]
    if config.total_step != total_steps:
        config.total_step = total_steps
        config.tinit = int(TINIT_SHARE * total_steps)
        config.tfinal = int(TFINAL_SHARE * total_steps)
        tuner.rankallocator.set_total_step(total_steps)
    tuner.update_and_allocate(step)


METHOD = Method(
    name="adalora",
    summary="SVD-form LoRA whose rank budget moves to the layers that need it",
    defaults={"init_r": 12, "target_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "learning_rate": 1e-3},
    default_space={
        "init_r": [8, 12],
        "target_r": [4, 8],
        "lora_alpha": 16,
        "learning_rate": {"loguniform": [3e-4, 3e-3]},
    },
    apply=apply,
    after_step=after_step,
    aliases=("ada_lora",),
)
