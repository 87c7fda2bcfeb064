"""(IA)3: learned rescaling of keys, values and feed-forward activations (Liu et al., 2022)."""

from budgetft.methods._peft import task_type, wrap
from budgetft.methods.base import Method

# Imported inside functions: peft: importing this module must stay cheap (start-up time).


def apply(model, config, context):
    from peft import IA3Config

    # peft knows the key/value/feed-forward module names for common architectures.
    return wrap(model, IA3Config(task_type=task_type(model)))


METHOD = Method(
    name="ia3",
    summary="learned scaling vectors on keys, values and feed-forward activations",
    defaults={"learning_rate": 3e-3},
    default_space={"learning_rate": {"loguniform": [1e-3, 3e-2]}},
    apply=apply,
    aliases=("ia^3", "(ia)3"),
)
