"""MeZO, then ladder side tuning: a zeroth-order warm-up of every backbone weight (two forward
passes a step, no backward, memory close to inference), then LST (`lst`): the backbone frozen
as MeZO left it, a small side network reading every block's output trains by backpropagation
through itself alone (k = 0), or with the top k blocks (k-LST). The "MeZO + LST" recipe of the
study behind issue 15; ours, expressed as phases in the registry (budgetft.methods.phased) as
mezo_top_k is: the trial loop runs each phase with its own learning rate and schedule over its
share of the steps, on one model and one stream of batches, under one budget.

The side network does not exist during the MeZO phase (it is added when the LST phase applies,
its output projection at zero, so the switch changes nothing the model computes). In the LST
phase with k = 0 the backbone is frozen, so its block outputs are served from the per-row store
(budgetft.train.frozen_prefix) computed in that phase: never from the run's shared folder,
whose states are the base model's, not MeZO's.

Saving keeps every weight (the MeZO phase moved them all) and the side network, as a phased
method saves what any phase trained.
"""

from budgetft.methods.base import Method, Phase
from budgetft.methods.phased import apply_all


def phases(config):
    share = float(config["zo_share"])
    if not 0.0 < share < 1.0:  # also refuses NaN
        raise ValueError(f"mezo_lst: zo_share is {share}; it is the MeZO phase's share of the steps, between 0 and 1 (e.g. 0.5)")
    side = {key: config[key] for key in ("k", "reduction_factor", "ladder_dropout", "learning_rate")}
    return [
        Phase("mezo", {"learning_rate": config["zo_learning_rate"], "epsilon": config["epsilon"]}, share),
        Phase("lst", side, 1.0 - share),
    ]


METHOD = Method(
    name="mezo_lst",
    summary="two phases: MeZO over every weight, then ladder side tuning of the frozen result",
    # Each phase's settings as its own method's defaults: MeZO's rate 1e-6 and ε 1e-3 (the MeZO
    # paper's grid); LST's k 0, reduction 8, ladder dropout 0.1 and rate 1e-3 (see lst). Half the
    # steps each: a split the study does not fix. Not tuned here.
    defaults={"k": 0, "reduction_factor": 8, "ladder_dropout": 0.1, "zo_share": 0.5, "zo_learning_rate": 1e-6,
              "epsilon": 1e-3, "learning_rate": 1e-3},
    # k stays 0 (the recipe's point: no backward pass through the backbone); the rest as the two
    # methods' own spaces, at fewer points since the split doubles the grid. Not tuned here.
    default_space={"zo_share": [0.25, 0.5], "zo_learning_rate": [1e-7, 1e-6], "epsilon": 1e-3,
                   "reduction_factor": [8, 16], "ladder_dropout": [0.0, 0.1],
                   "learning_rate": {"loguniform": [3e-4, 3e-3]}},
    apply=apply_all(phases),
    uses_peft=False,
    phases=phases,
    aliases=("mezo_then_lst", "mezo_ladder"),
)
