"""Prefix tuning: trainable key/value prefixes at every attention layer (Li & Liang, 2021).

Decoders only. peft feeds the prefixes to the model as a key/value cache (`past_key_values`);
transformers 5 encoders (BERT, MiniLM, RoBERTa) no longer take one, so peft refuses with "Model
does not support past key values" at the first step. The registry refuses it up front instead;
p_tuning and prompt_tuning (soft prompts on the input) run on encoders.
"""

from budgetft.methods._peft import task_type, wrap
from budgetft.methods.base import DECODER, Method

# Imported inside functions: peft: importing this module must stay cheap (start-up time).


def apply(model, config, context):
    from peft import PrefixTuningConfig

    return wrap(
        model,
        PrefixTuningConfig(
            task_type=task_type(model),
            num_virtual_tokens=int(config["num_virtual_tokens"]),
        ),
    )


METHOD = Method(
    name="prefix_tuning",
    summary="trainable key/value prefixes in every attention layer",
    defaults={"num_virtual_tokens": 20, "learning_rate": 1e-2},
    default_space={
        "num_virtual_tokens": [10, 20, 30],
        "learning_rate": {"loguniform": [1e-3, 3e-2]},
    },
    apply=apply,
    aliases=("prefix",),
    architectures=(DECODER,),
    notes="transformers 5 encoders take no key/value cache, which is how peft feeds the prefixes",
)
