"""MeZO: memory-efficient zeroth-order fine-tuning of every weight (Malladi et al., 2023).

One step, with z ~ N(0, I) the size of the model:
    g = (L(θ + εz) - L(θ - εz)) / (2ε)      two forward passes, no backward pass
    θ ← θ - lr · g · z
z is never stored: it is regenerated from one random seed per step, parameter by parameter,
each time it is needed. Memory is the weights plus one parameter-sized temporary, close to
inference; there are no gradients, activations kept for backward, or optimiser states.

The paper's grids: full-parameter MeZO on OPT, lr ∈ {1e-6, 1e-7}, ε = 1e-3; on RoBERTa-large,
lr ∈ {1e-7, 1e-6, 1e-5}, ε = 1e-3. It also needs ~10-100x the steps of backpropagation
(tens of thousands in the paper), which a small budget rarely buys; it is here because it is
the only method that fits a model too large to backpropagate through.

The learning rate follows the trial's warm-up and linear decay (the paper keeps it constant);
dropout is switched off for the two passes, so they differ only by the perturbation.
"""

from budgetft.methods.base import Method

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def apply(model, config, context):
    # "Trainable" marks what MeZO perturbs and updates; no gradient is ever computed.
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def perturb(params, seed: int, scale: float) -> None:
    """θ ← θ + scale · z, with z regenerated from `seed` in the same order every time."""
    import torch

    generators: dict = {}
    for p in params:
        gen = generators.get(p.device)
        if gen is None:
            gen = generators[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        z = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
        p.add_(z, alpha=scale)


def train_step(model, params, batch_loss, lr: float, config: dict):
    """One MeZO step. batch_loss() runs the batch's forward passes and returns (mean loss,
    tokens, padding tokens); the step returns the same, the loss averaged over ±εz and the
    token counts summed over both passes."""
    import torch

    eps = float(config["epsilon"])
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # from the trial's seeded RNG
    was_training = model.training
    model.eval()
    with torch.no_grad():
        perturb(params, seed, eps)
        plus = batch_loss()
        perturb(params, seed, -2 * eps)
        minus = batch_loss()
        perturb(params, seed, eps)  # back to θ
        projected_grad = (plus[0] - minus[0]) / (2 * eps)
        perturb(params, seed, -lr * projected_grad)
    model.train(was_training)
    return (plus[0] + minus[0]) / 2, plus[1] + minus[1], plus[2] + minus[2]


METHOD = Method(
    name="mezo",
    summary="zeroth-order full fine-tuning: two forward passes per step, no backward",
    defaults={"epsilon": 1e-3, "learning_rate": 1e-6},
    default_space={"learning_rate": [1e-7, 1e-6, 1e-5], "epsilon": 1e-3},
    apply=apply,
    uses_peft=False,
    train_step=train_step,
    forward_passes=2,
    backward=False,
    aliases=("zo", "zeroth_order"),
)
