"""PET, pattern-exploiting training (Schick & Schütze, EACL 2021, "Exploiting Cloze Questions for
Few-Shot Text Classification and Natural Language Inference"): the task is asked as a cloze
question in several wordings (patterns), the same label words answer each (the verbalizer), one
model is fine-tuned per pattern, and the ensemble of the patterns' models labels a row.

Here a pattern is the job's prompt.template or one of its prompt.patterns, a model is a LoRA
adapter on the one base model (peft, one named adapter per pattern), and a trial trains them in
turn, each over an equal share of the trial's steps and budget on its own pattern's encoding of
the training rows: a phased method (budgetft.methods.phased) whose phases each train an adapter
of their own. The ensemble (budgetft.scoring.ensemble) scores a row by the mean over patterns of
each class's label-word log-probability (plus the class bias each pattern's adapter was fitted
and trained with: budgetft.scoring.class_bias), every evaluation of the trial and the held-out
test alike. Uniform weights: the paper's other choice, weighting each pattern by its model's
accuracy on the training rows before training, is not implemented.

Not the paper's: the models are LoRA adapters rather than fully fine-tuned ones (one base model
in memory for all patterns), and the paper's last step, distilling the ensemble into a single
classifier on unlabelled rows, is left out: the ensemble itself is the classifier, so scoring a
row costs one forward pass per pattern.

Decoders only: a pattern is a cloze question answered by the label words, which an encoder's
classification head never reads.
"""

from budgetft.methods.base import DECODER, Method, Phase
from budgetft.methods.phased import apply_all

# What each pattern's adapter is: LoRA with these of the method's settings (budgetft.methods.lora).
MEMBER_SETTINGS = ("r", "lora_alpha", "lora_dropout", "learning_rate")


def adapter_name(pattern: int, generation: int = 0) -> str:
    return f"pattern{pattern}" if generation == 0 else f"gen{generation}_pattern{pattern}"


def phases(config):
    """One phase per pattern and generation, each its own LoRA adapter over an equal share of the
    steps. Generation g > 0 (iPET: budgetft.methods.ipet; PET has one generation) trains on the
    labelled rows plus growth^g - 1 times as many rows the previous generation's ensemble labelled."""
    name = "ipet" if "generations" in config else "pet"  # only iPET's configuration has generations
    n, generations = int(config["patterns"]), int(config.get("generations", 1))
    growth = float(config.get("growth", 1))
    if n < 2:
        raise ValueError(f"{name}: patterns is {n}; PET ensembles two or more prompt patterns (the template and prompt.patterns), e.g. 3")
    if generations < 1 or (generations > 1 and not growth > 1):
        raise ValueError(f"{name}: generations {generations}, growth {growth}; give one generation or more, and a growth above 1 (iPET's d, e.g. 5)")
    member = {key: config[key] for key in MEMBER_SETTINGS}
    return [
        Phase("lora", dict(member), 1.0, pattern=k, adapter=adapter_name(k, g), generation=g, pseudo_labels=growth**g - 1)
        for g in range(generations) for k in range(n)
    ]


METHOD = Method(
    name="pet",
    summary="one LoRA adapter per prompt pattern, each on its own wording of the rows; scored by the patterns' ensemble",
    # patterns 3: the template and the two prompt.patterns of the embedded BoolQ job (the paper
    # uses every pattern it wrote for a task: 2 to 6). Each adapter as lora's defaults (r 8, alpha
    # 16, dropout 0.05, rate 1e-3; the paper fine-tunes whole models at 1e-5). Not tuned here.
    defaults={"patterns": 3, "r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "learning_rate": 1e-3},
    # Each adapter trains on 1/patterns of the steps: lora's space at smaller ranks.
    default_space={"r": [4, 8], "lora_alpha": 16, "learning_rate": {"loguniform": [3e-4, 3e-3]}},
    apply=apply_all(phases),
    # Several adapters and their ensemble: saved as our tensors (every adapter's), not as one
    # peft adapter directory (budgetft.train.persist).
    uses_peft=False,
    phases=phases,
    architectures=(DECODER,),
    notes="PET's patterns are cloze questions answered by label words, which an encoder's classification head does not read",
    aliases=("pattern_exploiting_training",),
)
