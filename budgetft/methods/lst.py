"""Ladder side tuning (LST, Sung et al., 2022) and k-LST: a small side network reads the frozen
backbone's hidden states through "ladder" connections and corrects its final hidden state; only
the side network trains (and, for k-LST, the top k backbone blocks too). With k = 0 no gradient
flows into the backbone: no backward pass through it, and its activations are not kept for one.

The side network, ours: width d/r (reduction_factor r, 8 by default), one feed-forward block per
backbone block: x_i = s_{i-1} + m_i * down_i(h_i), s_i = x_i + FFN_i(LN_i(x_i)), s_0 = 0, where h_i
is the backbone's output of block i and m_i the ladder connection's dropout mask (each connection kept
with probability 1 - ladder_dropout during training, scaled by 1 / (1 - p); all kept in
evaluation). The side blocks have no attention of their own: the ladders carry the backbone's
token mixing. The backbone's last hidden state becomes h_L + up(s_L), with `up` starting at zero,
so at step 0 the model computes exactly what the backbone did. The final norm and the head (an
encoder's classification head, trained by every method) read it as before.

Ours (no library ships it). Connection dropout as in the study behind issue 15 (RoBERTa-large +
9-LST + dropout: 94.84% on SST-2 against 93.12% for plain LST).

The frozen blocks' outputs depend only on a row's tokens: with the trial's reuse_frozen_layers
they are computed once per row and served on later visits (budgetft.train.frozen_prefix,
LadderStates), every block's for LST, the blocks below the top k for k-LST.
"""

from __future__ import annotations

from budgetft.methods.arch import freeze_all, make_head_trainable, transformer_blocks
from budgetft.methods.base import Method

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

SIDE = "lst_side"  # the side network's attribute on the model (and its parameters' name prefix)


def _side_class():
    import torch

    class SideNetwork(torch.nn.Module):
        def __init__(self, width: int, blocks: int, reduction: int, dropout: float, like):
            super().__init__()
            kw = {"dtype": like.dtype, "device": like.device}
            side = max(1, width // reduction)
            self.dropout = float(dropout)
            self.down = torch.nn.ModuleList(torch.nn.Linear(width, side, **kw) for _ in range(blocks))
            self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(side, **kw) for _ in range(blocks))
            self.ffn = torch.nn.ModuleList(
                torch.nn.Sequential(torch.nn.Linear(side, 2 * side, **kw), torch.nn.GELU(), torch.nn.Linear(2 * side, side, **kw))
                for _ in range(blocks)
            )
            self.up = torch.nn.Linear(side, width, **kw)
            torch.nn.init.zeros_(self.up.weight)  # step 0: the backbone unchanged
            torch.nn.init.zeros_(self.up.bias)

        def masks(self, n: int, device) -> list[float]:
            """Each ladder connection's multiplier for one forward pass: 0 (dropped) or
            1 / (1 - p) in training; 1 in evaluation."""
            import torch

            if not self.training or self.dropout <= 0:
                return [1.0] * n
            keep = torch.rand(n) >= self.dropout
            return [float(k) / (1.0 - self.dropout) for k in keep.tolist()]

        def forward(self, states: list, masks: list[float]):
            s = 0.0
            for i, h in enumerate(states):
                x = s + self.down[i](h) * masks[i]  # the ladder from block i
                s = x + self.ffn[i](self.norms[i](x))
            return self.up(s)

    return SideNetwork


def apply(model, config, context):
    k, reduction, dropout = int(config["k"]), int(config["reduction_factor"]), float(config["ladder_dropout"])
    blocks = transformer_blocks(model)
    if not 0 <= k < len(blocks):
        raise ValueError(f"lst: k={k}, but the model has {len(blocks)} blocks; choose 0 (LST) to {len(blocks) - 1} (k-LST)")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"lst: ladder_dropout is {dropout}; it is a probability below 1 (e.g. 0.1)")
    if hasattr(model, SIDE):
        raise ValueError("this model already has an LST side network")
    freeze_all(model)
    for block in list(blocks)[len(blocks) - k :]:
        for param in block.parameters():
            param.requires_grad_(True)
    width = int(model.config.hidden_size)
    like = next(model.parameters())
    side = _side_class()(width, len(blocks), reduction, dropout, like)
    setattr(model, SIDE, side)  # registered as a child: saved with the trainable tensors
    states: list = []

    def keep(block, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        states.append(hidden)
        if block is not blocks[len(blocks) - 1]:
            return None
        taken = list(states)
        states.clear()
        if len(taken) != len(blocks):  # a partial pass (e.g. stopped early): leave it alone
            return None
        corrected = hidden + side(taken, side.masks(len(taken), hidden.device)).to(hidden.dtype)
        return (corrected, *output[1:]) if isinstance(output, tuple) else corrected

    def start(module, args, kwargs):
        states.clear()

    for block in blocks:
        block.register_forward_hook(keep)
    model.register_forward_pre_hook(start, with_kwargs=True)
    make_head_trainable(model)
    return model


METHOD = Method(
    name="lst",
    summary="ladder side tuning: a small side network reads every block's output; k-LST also trains the top k blocks",
    # Reduction 8 as the LST paper's side networks (1/8 of the backbone's width); ladder dropout
    # 0.1, the study's best LST variant used connection dropout; k 0 (plain LST: no backward pass
    # through the backbone). Learning rate as the adapters' (a new, zero-started module).
    defaults={"k": 0, "reduction_factor": 8, "ladder_dropout": 0.1, "learning_rate": 1e-3},
    default_space={"k": [0, 2], "reduction_factor": [8, 16], "ladder_dropout": [0.0, 0.1],
                   "learning_rate": {"loguniform": [3e-4, 3e-3]}},
    apply=apply,
    uses_peft=False,
    aliases=("ladder_side_tuning", "k_lst", "klst"),
)
