"""FISH Mask (budgetft.methods.fish_mask): the Fisher is the mean squared batch gradient, the mask
keeps exactly the top-density entries, only those move under AdamW (weight decay included), the
mask never changes, saved weights load exactly without a Fisher, and a bad density is refused
before step 1."""

import math

import pytest
import torch

from budgetft import methods
from budgetft.methods import DECODER, ENCODER, ApplyContext, fish_mask
from budgetft.methods.context import context_for
from budgetft.methods.counting import count_model
from budgetft.train.persist import load_trained, save_trained
from budgetft.train.steps import param_groups
from budgetft.train.trial import TrialSettings, run_trial
from tests.methods.test_methods import _load, decoder_task, encoder_dir, encoder_task  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_thread")

# --- a hand-made case: y = w.x + b, loss = mean over a batch's rows of (w.x + b - y)^2 ----------

W, B = [1.0, -2.0, 0.5], 0.5
BATCHES = [([[1, 0, 0], [0, 1, 1]], [0, 0]), ([[1, 1, 0], [2, 0, 1]], [1, 0])]
# By hand: residuals r = w.x + b - y; gradients mean(2 r x) for w, mean(2 r) for b.
#   batch 1: r = (1.5, -1.0): grad w = (1.5, -1.0, -1.0), grad b = 0.5
#   batch 2: r = (-1.5, 3.0): grad w = (4.5, -1.5, 3.0), grad b = 1.5
# Fisher = mean of the squares: w (11.25, 1.625, 5.0), b 1.25.
FISHER_W, FISHER_B = [11.25, 1.625, 5.0], 1.25


class Line(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(W))
        self.b = torch.nn.Parameter(torch.tensor(B))

    def forward(self, x):
        return x @ self.w + self.b


def _batch_backward():
    """ApplyContext.batch_backward over BATCHES, in turn."""
    stream = iter(BATCHES * 100)

    def backward(model):
        xs, ys = next(stream)
        loss = ((model(torch.tensor(xs, dtype=torch.float32)) - torch.tensor(ys, dtype=torch.float32)) ** 2).mean()
        loss.backward()
        return loss.item()

    return backward


def test_fisher_is_the_mean_squared_batch_gradient_by_hand():
    model = Line().train()
    fisher = fish_mask.empirical_fisher(model, [model.w, model.b], _batch_backward(), batches=2)
    torch.testing.assert_close(fisher[0], torch.tensor(FISHER_W), rtol=0, atol=1e-6)
    torch.testing.assert_close(fisher[1], torch.tensor(FISHER_B), rtol=0, atol=1e-6)
    assert model.training and model.w.grad is None  # the mode restored, no gradient left behind


def test_the_mask_keeps_exactly_the_top_density_entries():
    # Two of four entries (density 0.5): the largest Fisher values, w[0] = 11.25 and w[2] = 5.0.
    model = fish_mask.apply(Line(), {"density": 0.5, "fisher_batches": 2}, ApplyContext(batch_backward=_batch_backward()))
    masks = fish_mask.masks_of(model)
    assert masks["w"].tolist() == [True, False, True] and masks["b"].item() is False
    assert count_model(model) == (2, 4)
    # Across tensors, by size: k = round(density x entries), at least one.
    scores = [torch.tensor([[0.1, 0.5], [0.3, 0.2]]), torch.tensor([0.4, 0.05])]
    kept = fish_mask.top_entries(scores, 3)
    assert kept[0].tolist() == [[False, True], [True, False]] and kept[1].tolist() == [True, False]
    assert fish_mask.kept_entries(0.005, 40_000) == 200 and fish_mask.kept_entries(1e-9, 10) == 1 and fish_mask.kept_entries(1.0, 7) == 7


def test_adamw_with_weight_decay_moves_only_the_masked_entries():
    """The hand-made case under the trial's AdamW groups, weight decay 0.1: w[1] and b, outside the
    mask, stay bit-identical; w[0] and w[2] move."""
    model = fish_mask.apply(Line(), {"density": 0.5, "fisher_batches": 2}, ApplyContext(batch_backward=_batch_backward()))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, params), lr=0.1, weight_decay=0.1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0]
    step = _batch_backward()
    for _ in range(5):
        step(model)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert model.w[1].item() == W[1] and model.b.item() == B
    assert model.w[0].item() != W[0] and model.w[2].item() != W[2]


def _trial(task, architecture, weight_decay=0.1, steps=5):
    """A short fish_mask trial with weight decay; (result, model, masks right after applying)."""
    method = methods.get("fish_mask")
    settings = TrialSettings.from_job(task, "fish_mask", method.config({"learning_rate": 1e-2}), steps=steps)
    settings.eval_steps, settings.class_bias, settings.weight_decay = [], "none", weight_decay
    seen = {}

    def on_model(model):
        seen.update({n: m.clone() for n, m in fish_mask.masks_of(model).items()})

    result, model = run_trial(task, settings, model=_load(task, architecture), on_model=on_model)
    return result, model, seen


@pytest.mark.parametrize("architecture", [DECODER, ENCODER])
def test_a_trial_moves_only_the_masked_entries_and_the_mask_stays_fixed(architecture, decoder_task, encoder_task, tmp_path):
    task = decoder_task if architecture == DECODER else encoder_task
    base = dict(_load(task, architecture).named_parameters())
    result, model, masks = _trial(task, architecture)
    ranked = dict(fish_mask.ranked_tensors(model))
    total = sum(p.numel() for p in ranked.values())
    k = max(1, round(0.005 * total))
    assert set(masks) == set(ranked) and sum(int(m.sum()) for m in masks.values()) == k
    head = {n: p for n, p in model.named_parameters() if p.requires_grad and n not in ranked}
    assert result.trainable_params == k + sum(p.numel() for p in head.values())
    moved = 0
    for name, param in ranked.items():
        mask, before, after = masks[name].cpu(), base[name].detach(), param.detach().cpu()  # the base stays on the CPU
        assert torch.equal(after[~mask], before[~mask]), f"{name}: an entry outside the mask moved"
        moved += int((after[mask] != before[mask]).sum())
        assert torch.equal(fish_mask.masks_of(model)[name].cpu(), mask)  # fixed: the same after training
    assert moved == k  # every kept entry moved (the top Fisher entries have gradients)
    if architecture == ENCODER:  # the fresh head trains whole, with weight decay like any method's
        assert set(head) == {"classifier.weight", "classifier.bias"}
        assert all((p.detach().cpu() != base[n].detach()).all() for n, p in head.items())
    else:
        assert not head
    # Saved and loaded onto a fresh base with no data: every tensor exactly as trained.
    save_trained(model, "fish_mask", result.config, tmp_path / "saved")
    loaded = load_trained(_load(task, architecture), "fish_mask", result.config, tmp_path / "saved", context_for(task.job, task.tokenizer))
    trained = dict(model.named_parameters())
    for name, param in loaded.named_parameters():
        assert torch.equal(param.detach().cpu(), trained[name].detach().cpu()), name


def test_the_mask_is_chosen_by_the_trials_fisher(decoder_task):
    """The kept entries are the top k of the Fisher over the trial's first batches: none dropped
    scores above one kept."""
    from budgetft.telemetry.precision import pick_device, precision_for
    from budgetft.train.steps import batch_backward as trial_batches

    task = decoder_task
    method = methods.get("fish_mask")
    config = method.config({"fisher_batches": 4})
    settings = TrialSettings.from_job(task, "fish_mask", config, steps=1)
    device = pick_device()
    backward = trial_batches(task, settings, device, precision_for(device))
    model = method.apply(_load(task, DECODER), config, ApplyContext(batch_backward=backward))
    masks = fish_mask.masks_of(model)
    # The same stream again, on an untouched copy: the Fisher the mask was chosen from.
    probe = _load(task, DECODER)
    named = fish_mask.ranked_tensors(probe)
    fisher = fish_mask.empirical_fisher(probe, [p.requires_grad_(True) for _, p in named], trial_batches(task, settings, device, precision_for(device)), 4)
    kept = torch.cat([f[masks[n]] for (n, _), f in zip(named, fisher)])
    dropped = torch.cat([f[~masks[n]] for (n, _), f in zip(named, fisher)])
    assert kept.numel() == max(1, round(0.005 * sum(f.numel() for f in fisher)))
    assert kept.min() >= dropped.max() and kept.min() > 0


@pytest.mark.parametrize("density", [0, -0.1, 1.5, math.nan, "0.5", True])
def test_a_bad_density_is_refused_before_step_1(decoder_task, density):
    method = methods.get("fish_mask")
    settings = TrialSettings.from_job(decoder_task, "fish_mask", method.config({"density": density}), steps=3)
    steps = []
    with pytest.raises(ValueError, match=r"fish_mask: density is .*in \(0, 1\]"):
        run_trial(decoder_task, settings, model=_load(decoder_task, DECODER), on_step=steps.append)
    assert steps == []


def test_a_bad_batch_count_is_refused():
    with pytest.raises(ValueError, match="fisher_batches is 0"):
        fish_mask.apply(Line(), {"density": 0.5, "fisher_batches": 0}, ApplyContext())


def test_without_batches_it_counts_but_refuses_to_train(decoder_task):
    """Counting and loading have no data: density x the weights is counted, and a backward pass
    says why there is no mask to train with."""
    from transformers import AutoConfig

    model = fish_mask.apply(_load(decoder_task, DECODER), methods.get("fish_mask").config(), ApplyContext())
    trainable, total = count_model(model)
    assert trainable == round(0.005 * total) and not fish_mask.masks_of(model)
    meta = methods.get("fish_mask").count_params(AutoConfig.from_pretrained(decoder_task.model.location))
    assert meta == (trainable, total)
    ids = torch.as_tensor(decoder_task.train.prompts[0]).unsqueeze(0)
    with pytest.raises(RuntimeError, match="no Fisher mask to train with"):
        model(input_ids=ids).logits.sum().backward()
