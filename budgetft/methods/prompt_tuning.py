"""Prompt tuning: trainable soft-prompt vectors prepended to the input (Lester et al., 2021).

Initialisation matters more than anything else for this method on a short budget (Lester et
al., section 3.2: class-label and vocabulary initialisation beat random by a wide margin on
small models). `init`:
  task   - embeddings of the task's instruction text (the job's prompt.init_text, default the
           template's fixed words), repeated to fill the prompt
  labels - embeddings of the label words (" yes", " no"), repeated
  vocab  - randomly drawn rows of the vocabulary
  random - peft's default: normal(0, 1) vectors, far off the embedding scale
"""

from budgetft.methods._peft import init_prompt_from_text, task_type, wrap
from budgetft.methods.base import Method

# Imported inside functions: peft: importing this module must stay cheap (start-up time).

INITS = ("task", "labels", "vocab", "random")


def apply(model, config, context):
    from peft import PromptTuningConfig

    n = int(config["num_virtual_tokens"])
    init = str(config.get("init", "task"))
    if init not in INITS:
        raise ValueError(f"prompt_tuning init {init!r}; valid: {', '.join(INITS)}")
    peft_model = wrap(model, PromptTuningConfig(task_type=task_type(model), num_virtual_tokens=n))
    if init == "task":
        init_prompt_from_text(peft_model, context, n)
    elif init == "labels":
        init_prompt_from_text(peft_model, context, n, text=" ".join(w.strip() for w in context.label_words))
    elif init == "vocab":
        init_prompt_from_text(peft_model, context, n, text="")
    return peft_model


METHOD = Method(
    name="prompt_tuning",
    summary="soft-prompt vectors prepended to the input, initialised from the task text",
    defaults={"num_virtual_tokens": 20, "init": "task", "learning_rate": 3e-2},
    default_space={
        "num_virtual_tokens": [10, 20, 50],
        "learning_rate": {"loguniform": [3e-3, 1e-1]},
    },
    apply=apply,
    aliases=("prompt", "prompttuning"),
)
