"""LayerNorm tuning: train only the normalisation layers' scales (and shifts where they have
them) (Zhao et al., 2023); peft trains a copy of each norm layer. Fewer than 0.1% of a small
model's parameters."""

from budgetft.methods._peft import task_type, wrap
from budgetft.methods.base import Method

# Imported inside functions: peft: importing this module must stay cheap (start-up time).


def norm_module_names(model) -> list[str]:
    """The attribute names of the model's norm layers (Llama: input_layernorm,
    post_attention_layernorm, norm; BERT: LayerNorm), found by class name, so architectures
    peft has no table for work too."""
    names = set()
    for full_name, module in model.named_modules():
        kind = type(module).__name__
        if full_name and ("LayerNorm" in kind or "RMSNorm" in kind):
            names.add(full_name.rsplit(".", 1)[-1])
    return sorted(names)


def apply(model, config, context):
    from peft import LNTuningConfig

    return wrap(model, LNTuningConfig(task_type=task_type(model), target_modules=norm_module_names(model)))


METHOD = Method(
    name="ln_tuning",
    summary="normalisation layers only",
    defaults={"learning_rate": 3e-3},
    default_space={"learning_rate": {"loguniform": [1e-3, 3e-2]}},
    apply=apply,
    aliases=("layernorm", "layernorm_tuning", "lntuning"),
)
