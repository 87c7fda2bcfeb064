"""iPET, iterative PET (Schick & Schütze, EACL 2021, same paper as PET: budgetft.methods.pet): PET's
ensemble of one adapter per prompt pattern, trained in generations. After each generation, its
ensemble labels rows of the job's unlabelled split (data.unlabelled_split; never the evaluation
split: budgetft.data.unlabelled), and the next generation's adapters, fresh from the base model,
train on the labelled rows plus those (budgetft.scoring.pseudo_labels); the set grows by the
factor `growth` (the paper's d = 5) each generation: generation g trains on growth^g times the
labelled rows. The last generation's ensemble is the classifier: every evaluation scores the
latest generation's members trained so far, the held-out test its last generation's.

A job without unlabelled rows is refused up front (rather than falling back to training rows
stripped of their labels, which the trial could read the labels of), naming the fix.

Differences from the paper: each member's pseudo-labelled rows come from the whole previous
ensemble (the paper: a random quarter of the other patterns' models, a different set for each
member), chosen most confident first in the labelled rows' class proportions (the paper samples
in proportion to confidence), with soft labels not used; generations are a setting (the paper
adds generations until each model has seen 1,000 rows); no final distillation, as for PET. Every
phase, of every generation, gets an equal share of the trial's steps, and labelling costs one
forward pass per pattern for twice the rows kept (budgetft.scoring.pseudo_labels.OVERSAMPLE; at
most half the split is kept). The labelling is paid for as the trial goes, in chunks of an
evaluation's size, each asked for as an evaluation is (a refusal stops the trial), and the planner
prices it, and each later member's class-bias fit, into the trial (budgetft.planner.inputs.
phases_seconds).
"""

from dataclasses import replace

from budgetft.methods import pet

METHOD = replace(
    pet.METHOD,
    name="ipet",
    summary="PET in generations: each generation's pattern ensemble labels unlabelled rows for the next to train on",
    # generations 2: one round of labelling, the least that is iPET (the paper runs until each
    # model has seen 1,000 rows: 3 generations from 10 labelled rows). growth 5: the paper's d.
    # The rest as pet's.
    defaults={**pet.METHOD.defaults, "generations": 2, "growth": 5},
    default_space={**pet.METHOD.default_space, "generations": 2, "growth": 5},
    notes="iPET's patterns are cloze questions answered by label words, which an encoder's classification head does not read",
    aliases=("iterative_pet",),
)
