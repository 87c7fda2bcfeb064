"""mezo_lst (budgetft.methods.mezo_lst): MeZO over every backbone weight, then ladder side tuning
of the result, as two phases of one trial. The switch comes after zo_share of the steps; MeZO
moves the backbone with no side network present; LST then trains the side network and leaves
the backbone as MeZO left it; a bad share is refused before step 1; the registry matrix runs it."""

import math

import pytest
import torch

from budgetft import methods
from budgetft.methods import DECODER, ENCODER
from budgetft.methods.lst import SIDE
from budgetft.train.persist import TENSORS, load_trained, save_trained
from budgetft.scoring.rows import evaluate
from budgetft.train.trial import TrialSettings, run_trial
from tests.methods import test_methods as matrix
from tests.methods.test_methods import _load, decoder_task, encoder_dir, encoder_task  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_thread")

BOTTOM, TOP = "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"


def _settings(task, steps, **overrides):
    method = methods.get("mezo_lst")
    # MeZO at 1e-3, far above a real model's 1e-6, so that a few steps visibly move the weights.
    config = method.config({"reduction_factor": 4, "zo_learning_rate": 1e-3, "learning_rate": 1e-2, **overrides})
    settings = TrialSettings.from_job(task, "mezo_lst", config, steps=steps)
    settings.eval_steps, settings.class_bias = [steps], "none"
    return settings


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("share, steps, switch", [(0.3, 10, 3), (0.5, 8, 4)])
def test_the_switch_comes_after_zo_share_of_the_steps(decoder_task, share, steps, switch):
    logs, applied = [], []
    settings = _settings(decoder_task, steps, zo_share=share)
    result, _ = run_trial(decoder_task, settings, model=_load(decoder_task, DECODER), on_step=logs.append,
                          on_model=lambda model: applied.append((len(logs), hasattr(model, SIDE))))
    assert applied == [(0, False), (switch, True)]  # MeZO from step 1, LST (with its side network) after `switch`
    # Each phase's own rate and schedule: MeZO's 1e-3 until the switch, LST's 1e-2 after it.
    lrs = [log.lr for log in logs]
    assert max(lrs[:switch]) <= 1e-3 + 1e-12 and lrs[switch] > 1e-3
    assert result.steps == steps and result.final["step"] == steps


def test_mezo_moves_the_backbone_then_lst_trains_only_the_side_network(decoder_task):
    base = _load(decoder_task, DECODER)
    before = _snapshot(base)
    at_apply = []

    def on_model(model):
        side = getattr(model, SIDE, None)
        trained_side = side is not None and any(p.requires_grad for p in side.parameters())
        at_apply.append((_snapshot(model), side is not None, trained_side))

    result, model = run_trial(decoder_task, _settings(decoder_task, 10, zo_share=0.3), model=base, on_model=on_model)
    (start, side_then, _), (switch, side_now, side_trains) = at_apply
    # The MeZO phase: no side network; every backbone weight moved, at the bottom and the top.
    assert not side_then and side_now and side_trains
    assert all(torch.equal(start[n], before[n]) for n in before)
    assert not torch.equal(switch[BOTTOM], before[BOTTOM]) and not torch.equal(switch[TOP], before[TOP])
    # The LST phase: the backbone exactly as MeZO left it; the side network trained.
    after = _snapshot(model)
    backbone = [n for n in after if not n.startswith(f"{SIDE}.")]
    assert backbone and all(torch.equal(after[n], switch[n]) for n in backbone)
    assert not torch.equal(after[f"{SIDE}.up.weight"], switch[f"{SIDE}.up.weight"])
    assert not switch[f"{SIDE}.up.weight"].any()  # the side network started at zero
    assert result.trainable_params == result.total_params  # every weight some phase trained


def test_the_lst_phase_serves_its_frozen_backbone_from_its_own_states(decoder_task, tmp_path):
    """The backbone is frozen for the LST phase, so its block outputs are stored per row, in memory
    only: the run's shared folder holds the base model's states, not MeZO's."""
    settings = _settings(decoder_task, 16, zo_share=0.25)
    settings.frozen_states = str(tmp_path)
    result, _ = run_trial(decoder_task, settings, model=_load(decoder_task, DECODER))
    assert result.frozen_prefix["ladder_blocks"] == 2 and result.frozen_prefix["rows_reused"] > 0
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("share", [0.0, 1.0, 1.5, -0.2, math.nan])
def test_a_bad_zo_share_is_refused_before_step_1(decoder_task, share):
    steps = []
    with pytest.raises(ValueError, match="mezo_lst: zo_share is"):
        run_trial(decoder_task, _settings(decoder_task, 4, zo_share=share), model=_load(decoder_task, DECODER), on_step=steps.append)
    assert steps == []


def test_a_bad_k_is_refused_before_step_1(decoder_task):
    """k = 2 on a 2-block model is refused by the LST phase, before MeZO's share is paid for."""
    steps = []
    with pytest.raises(ValueError, match="lst: k=2"):
        run_trial(decoder_task, _settings(decoder_task, 4, k=2), model=_load(decoder_task, DECODER), on_step=steps.append)
    assert steps == []


def test_saving_keeps_the_backbone_mezo_moved_and_the_side_network(decoder_task, tmp_path):
    from safetensors.torch import load_file

    settings = _settings(decoder_task, 6)
    _, model = run_trial(decoder_task, settings, model=_load(decoder_task, DECODER))
    save_trained(model, "mezo_lst", settings.config, tmp_path)
    saved = load_file(str(tmp_path / TENSORS))
    assert {BOTTOM, TOP, f"{SIDE}.up.weight"} <= set(saved)
    loaded = load_trained(_load(decoder_task, DECODER), "mezo_lst", settings.config, tmp_path)
    torch.testing.assert_close(loaded.get_parameter(BOTTOM), model.get_parameter(BOTTOM), rtol=0, atol=0)
    assert evaluate(loaded, decoder_task)["eval_loss"] == pytest.approx(evaluate(model, decoder_task)["eval_loss"], rel=1e-6)


def test_weights_saved_in_the_mezo_phase_load_back(decoder_task, tmp_path):
    """A trial's best evaluation (or ASHA's stop) may come before the LST phase applies: those
    weights have no side network, and loading rebuilds only the phase they were saved at."""
    settings = _settings(decoder_task, 8)
    settings.eval_steps = [2, 8]
    scores = {}

    def on_eval(step, metrics):
        if step == 2:
            save_trained(state["model"], "mezo_lst", settings.config, tmp_path)
            scores["saved"] = metrics["eval_loss"]

    state = {}
    run_trial(decoder_task, settings, model=_load(decoder_task, DECODER), on_eval=on_eval,
              on_model=lambda model: state.update(model=model))
    loaded = load_trained(_load(decoder_task, DECODER), "mezo_lst", settings.config, tmp_path)
    assert not hasattr(loaded, SIDE)
    assert evaluate(loaded, decoder_task)["eval_loss"] == pytest.approx(scores["saved"], rel=1e-6)


def test_the_registry_lists_and_counts_it():
    method = methods.get("mezo_lst")
    assert methods.get("mezo-then-lst") is method and method.phases is not None
    assert [p.method for p in method.phases(method.config())] == ["mezo", "lst"]
    assert "mezo_lst" in matrix.NEW_METHODS and set(method.architectures) == {DECODER, ENCODER}


@pytest.mark.parametrize("architecture", [DECODER, ENCODER])
def test_the_registry_matrix_runs_it(architecture, decoder_task, encoder_task, tmp_path):
    """Apply, train (the loss on fixed rows falls), save, load onto a fresh base, the same scores:
    test_methods' matrix test, for this method on both architectures."""
    matrix.test_method_trains_saves_loads(architecture, "mezo_lst", decoder_task, encoder_task, tmp_path)
