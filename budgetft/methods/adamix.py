"""AdaMix, a mixture of adaptation modules (Wang et al., EMNLP 2022, "AdaMix: Mixture-of-Adaptations
for Parameter-efficient Model Tuning"). Ours; the placement and hook are _bottleneck.py's.

Each adapted sublayer holds M bottleneck adapters ("experts"): M down-projections and M
up-projections. The output is h + up(GELU(down(h))), where
- in training (model.train()), every forward pass draws one down-projection and one
  up-projection uniformly and independently (the paper's stochastic routing, no router to
  learn), from torch's global RNG, so the trial's seed decides the routes;
- in evaluation (model.eval()), down and up are the averages of the M experts' weights and
  biases (the paper's "adaptation merging"): deterministic, and costing one adapter.

Placement: after every block's feed-forward output projection, before the residual addition
(as `pfeiffer`), which is where the authors' code puts its mixture (microsoft/AdaMix,
modeling_bert.py, BertOutput: after `dense`, before dropout and LayerNorm).

Initialisation: one down-projection drawn (normal, std 0.02, as _bottleneck.py) and copied to
all M experts, as the authors' code deep-copies one expert M times: averaging weights works for
modules that start from one point (the model-soup argument). Up-projections start at zero, so
the model equals the base at step 0.

Each expert is its own nn.Linear, so an expert not drawn in a step gets no gradient and AdamW
(zero_grad(set_to_none=True)) leaves it, its moments and its weight decay alone.

Left out: the paper's consistency regularisation (a KL term between two stochastic passes,
doubling the forward cost of a step; the trial loop scores one pass) and its option to share
the up-projection among experts (the released scripts' `--sharing_up 1`): here the up- and
down-projections are both routed, as the paper describes the method.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

from budgetft.methods._bottleneck import insert_adapters
from budgetft.methods.base import Method

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def _mixture_class():
    import torch
    import torch.nn.functional as F

    class MixtureOfBottlenecks(torch.nn.Module):
        """M bottleneck adapters in one slot: h + up_u(GELU(down_d(h)))."""

        def __init__(self, dim: int, size: int, experts: int, like: torch.Tensor):
            super().__init__()
            kw = {"dtype": like.dtype, "device": like.device}
            first = torch.nn.Linear(dim, size, **kw)
            torch.nn.init.normal_(first.weight, std=0.02)  # BERT-style init scale, as _bottleneck.py
            torch.nn.init.zeros_(first.bias)
            self.down = torch.nn.ModuleList([first] + [copy.deepcopy(first) for _ in range(experts - 1)])
            self.up = torch.nn.ModuleList([_zero_linear(size, dim, kw) for _ in range(experts)])
            self.act = torch.nn.GELU()

        @property
        def experts(self) -> int:
            return len(self.down)

        def route(self) -> tuple[int, int]:
            """(down, up) expert indices for one training pass: uniform, independent, one draw
            of two integers from torch's global (CPU) generator, down first."""
            down, up = torch.randint(self.experts, (2,)).tolist()
            return down, up

        def merged(self) -> tuple[Any, Any, Any, Any]:
            """The experts' averaged (down weight, down bias, up weight, up bias)."""
            def mean(layers, attr):
                return torch.stack([getattr(m, attr) for m in layers]).mean(0)

            return mean(self.down, "weight"), mean(self.down, "bias"), mean(self.up, "weight"), mean(self.up, "bias")

        def forward(self, h):
            if self.training:
                d, u = self.route()
                down, up = self.down[d], self.up[u]
                wd, bd, wu, bu = down.weight, down.bias, up.weight, up.bias
            else:
                wd, bd, wu, bu = self.merged()
            return h + F.linear(self.act(F.linear(h, wd, bd)), wu, bu)

    return MixtureOfBottlenecks


def _zero_linear(size: int, dim: int, kw: dict):
    import torch

    layer = torch.nn.Linear(size, dim, **kw)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    return layer


def experts_of(config: dict) -> int:
    """num_experts as a whole number >= 1, or a ValueError saying what to give."""
    value = config["num_experts"]
    try:
        experts = int(value)
        whole = float(value) == experts
    except (TypeError, ValueError):
        whole = False
    if not whole or experts < 1:
        raise ValueError(f"adamix: num_experts is {value!r}; give a whole number of adapters per sublayer, 1 or more (the paper uses 4)")
    return experts


def apply(model, config, context):
    experts = experts_of(config)  # checked before the model is touched
    mixture = _mixture_class()
    build = partial(_build, mixture, experts)
    return insert_adapters(model, int(config["reduction_factor"]), after_attention=False, build=build)


def _build(mixture, experts, dim, size, like):
    return mixture(dim, size, experts, like)


METHOD = Method(
    name="adamix",
    summary="mixture of bottleneck adapters after the feed-forward sublayer: random routing in training, averaged at inference",
    # num_experts 4: the paper's default (and the authors' scripts, --num_experts 4).
    # reduction 32: an 18-unit bottleneck on SmolLM2's 576-wide blocks, closest in the space to
    # the paper's 16 units (--adapter_size 16 on BERT-base and RoBERTa-large); with 4 experts,
    # 4x a 32-reduction Pfeiffer adapter's parameters in training, one adapter at inference.
    # learning rate 1e-3: Pfeiffer's here, for the same adapter shape and a few hundred steps;
    # the authors' 3e-4 (RoBERTa-large, batch 64, 20 epochs) is at the space's low end, and
    # each expert is trained on only ~1/4 of the steps.
    defaults={"num_experts": 4, "reduction_factor": 32, "learning_rate": 1e-3},
    default_space={"reduction_factor": [16, 32, 64], "learning_rate": {"loguniform": [3e-4, 3e-3]}},
    apply=apply,
    uses_peft=False,
    aliases=("mixture_of_adapters", "adamix_adapter"),
)
