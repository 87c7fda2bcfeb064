"""LST's frozen backbone computed once per row (budgetft.train.frozen_prefix.LadderStates): an
LST trial trains and scores the same with and without its stored block outputs; a row's second
visit runs no backbone block; trials share the outputs through a folder; a backbone that drops
out is not served; past the memory bound rows are computed again, with the same results."""

import pytest
import torch

from budgetft import methods
from budgetft.methods import DECODER, ENCODER
from budgetft.train import frozen_prefix, row_states
from budgetft.methods.context import context_for
from budgetft.scoring.rows import evaluate, scoring_of
from budgetft.train.trial import TrialSettings, run_trial
from tests.methods.test_methods import _load, decoder_task, encoder_dir, encoder_task  # noqa: F401 - fixtures
from tests.train.test_frozen_prefix import drop_out_in_the_bottom_block

pytestmark = pytest.mark.usefixtures("one_thread")

# 96 training rows at batch size 8: an epoch is 12 steps, so 16 steps revisit rows; the second
# evaluation revisits the first's 16 rows.
STEPS, EVALS = 16, [8, 16]


def _lst(task, architecture, k=0):
    model = _load(task, architecture)
    method = methods.get("lst")
    torch.manual_seed(0)
    return method.apply(model, method.config({"k": k, "reduction_factor": 4}), context_for(task.job, task.tokenizer))


def _scores(model, task, n=12):
    model.eval()
    with torch.no_grad():
        return scoring_of(model).class_scores(model, task.eval.prompts[:n], task.class_tokens, task.pad_id)


def _trial(task, architecture, reuse=True, folder=None, k=0):
    method = methods.get("lst")
    # Ladder dropout on: the masks drawn in training must be the same draws with the store.
    config = method.config({"k": k, "reduction_factor": 4, "ladder_dropout": 0.1, "learning_rate": 1e-2})
    settings = TrialSettings.from_job(task, "lst", config, steps=STEPS)
    settings.eval_steps = EVALS
    settings.reuse_frozen_layers = reuse
    settings.frozen_states = None if folder is None else str(folder)
    return run_trial(task, settings, model=_load(task, architecture))


def _same_training(stored, plain):
    assert [s for s, _ in stored.losses] == [s for s, _ in plain.losses]
    assert [v for _, v in stored.losses] == pytest.approx([v for _, v in plain.losses], rel=1e-5, abs=1e-6)
    for a, b in zip(stored.evals, plain.evals, strict=True):
        assert a["accuracy"] == b["accuracy"]
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("architecture", [DECODER, ENCODER])
def test_an_lst_trial_trains_and_scores_the_same_with_stored_block_outputs(architecture, decoder_task, encoder_task):
    task = decoder_task if architecture == DECODER else encoder_task
    plain, _ = _trial(task, architecture, reuse=False)
    stored, model = _trial(task, architecture)
    assert plain.frozen_prefix is None
    info = stored.frozen_prefix
    assert info["ladder_blocks"] == 2 and info["first_trained_block"] == 2  # k = 0: every block served
    # Each row computed once (96 training rows, 16 evaluation rows), then reused: by the second
    # epoch, the second evaluation (and, for a decoder, after fitting the class bias).
    assert info["rows_computed"] <= 96 + 16 and info["rows_reused"] >= STEPS * 8 + len(EVALS) * 16 - (96 + 16)
    _same_training(stored, plain)
    # Handed back whole: every block runs again and scores as in the trial.
    assert evaluate(model, task)["eval_loss"] == pytest.approx(stored.final["eval_loss"], rel=1e-5, abs=1e-6)
    assert all("forward" not in block.__dict__ for block in frozen_prefix.transformer_blocks(model))


def test_a_rows_second_visit_runs_no_backbone_block(decoder_task):
    model = _lst(decoder_task, DECODER)
    torch.nn.init.normal_(model.lst_side.up.weight, std=0.5)  # the side network's correction shows
    whole = _scores(model, decoder_task)
    store = frozen_prefix.attach(model, "tiny")
    assert isinstance(store, frozen_prefix.LadderStates) and store.j == 2
    ran = {0: [], 1: []}
    for i, block in enumerate(model.model.layers):
        block.mlp.register_forward_hook(lambda *a, i=i: ran[i].append(1))
    first = _scores(model, decoder_task)  # computes and stores the rows' block outputs
    assert ran == {0: [1], 1: [1]} and store.computed == 12 and store.served == 0
    second = _scores(model, decoder_task)  # served: no block runs
    assert ran == {0: [1], 1: [1]} and store.computed == 12 and store.served == 12
    torch.testing.assert_close(first, whole)
    torch.testing.assert_close(second, whole)
    store.detach()
    torch.testing.assert_close(_scores(model, decoder_task), whole)
    assert ran == {0: [1, 1], 1: [1, 1]}


def test_k_lst_serves_the_blocks_below_the_top_k(decoder_task):
    """k = 1 on two blocks: the bottom block's output is stored, the top block runs on it."""
    model = _lst(decoder_task, DECODER, k=1)
    torch.nn.init.normal_(model.lst_side.up.weight, std=0.5)
    whole = _scores(model, decoder_task)
    store = frozen_prefix.attach(model, "tiny")
    assert store.j == 1
    ran = {0: [], 1: []}
    for i, block in enumerate(model.model.layers):
        block.mlp.register_forward_hook(lambda *a, i=i: ran[i].append(1))
    _scores(model, decoder_task)
    torch.testing.assert_close(_scores(model, decoder_task), whole)
    assert ran == {0: [1], 1: [1, 1]}  # the bottom block once (to store), the top block for each scoring


def test_a_k_lst_trial_trains_the_same_with_stored_block_outputs(decoder_task):
    plain, _ = _trial(decoder_task, DECODER, reuse=False, k=1)
    stored, _ = _trial(decoder_task, DECODER, k=1)
    assert stored.frozen_prefix["ladder_blocks"] == 1 and stored.frozen_prefix["rows_reused"] > 0
    _same_training(stored, plain)


def test_lst_trials_share_block_outputs_through_a_folder(decoder_task, tmp_path):
    first, _ = _trial(decoder_task, DECODER, folder=tmp_path)
    (tag,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert len(list(tag.glob("*.pt"))) == first.frozen_prefix["rows_computed"]
    assert not list(tag.glob(".*.tmp"))  # written whole, then renamed
    second, _ = _trial(decoder_task, DECODER, folder=tmp_path)
    assert second.frozen_prefix["rows_computed"] == 0  # the same seed: the same rows, all stored
    _same_training(second, first)


def test_a_backbone_that_drops_out_is_not_served(encoder_task, decoder_task):
    """BERT's and MiniLM's blocks drop out 10% in training: outputs stored without it would
    change what the side network learns from."""
    model = _lst(encoder_task, ENCODER)
    assert frozen_prefix.ladder_blocks(model) == 2  # the tiny BERT has no dropout
    drop_out_in_the_bottom_block(model)
    assert frozen_prefix.ladder_blocks(model) is None and frozen_prefix.attach(model, "tiny") is None
    model = _lst(decoder_task, DECODER)
    model.config.attention_dropout = 0.1  # read by the Llama attention in every block
    assert frozen_prefix.attach(model, "tiny") is None


def test_something_trainable_in_the_backbone_declines_the_store(decoder_task):
    model = _lst(decoder_task, DECODER)
    model.get_input_embeddings().weight.requires_grad_(True)  # below every block
    assert frozen_prefix.attach(model, "tiny") is None


def test_rows_past_the_memory_bound_are_computed_again_with_the_same_results(decoder_task, monkeypatch):
    model = _lst(decoder_task, DECODER)
    torch.nn.init.normal_(model.lst_side.up.weight, std=0.5)
    whole = _scores(model, decoder_task)
    probe = frozen_prefix.attach(model, "tiny")
    _scores(model, decoder_task)
    row_bytes = probe.memory_bytes / 12  # the 12 rows' outputs, all kept under the default bound
    probe.detach()
    monkeypatch.setattr(row_states, "MEMORY_BYTES", int(4 * row_bytes))  # room for about 4 rows
    store = frozen_prefix.attach(model, "tiny")
    first = _scores(model, decoder_task)
    kept = len(store.memory)
    assert 0 < kept < 12 and store.memory_bytes <= row_states.MEMORY_BYTES
    second = _scores(model, decoder_task)
    assert store.served == kept and store.computed == 12 + (12 - kept)  # the rest computed on each visit
    assert len(store.memory) == kept and store.memory_bytes <= row_states.MEMORY_BYTES
    torch.testing.assert_close(first, whole)
    torch.testing.assert_close(second, whole)


def test_an_lst_trial_past_the_memory_bound_trains_the_same(decoder_task, monkeypatch):
    plain, _ = _trial(decoder_task, DECODER, reuse=False)
    monkeypatch.setattr(row_states, "MEMORY_BYTES", 64 * 1024)  # a few dozen of the tiny model's rows
    bounded, _ = _trial(decoder_task, DECODER)
    info = bounded.frozen_prefix
    assert info["rows_reused"] > 0 and info["rows_computed"] > 96 + 16  # some rows computed on every visit
    _same_training(bounded, plain)


def test_detach_leaves_the_lst_model_as_the_method_made_it(decoder_task):
    model = _lst(decoder_task, DECODER)
    keys = list(model.state_dict())
    hooks = (len(model._forward_pre_hooks), [len(b._forward_hooks) for b in model.model.layers])
    store = frozen_prefix.attach(model, "tiny")
    _scores(model, decoder_task)
    store.detach()
    assert list(model.state_dict()) == keys
    assert all("forward" not in block.__dict__ for block in model.model.layers)
    assert (len(model._forward_pre_hooks), [len(b._forward_hooks) for b in model.model.layers]) == hooks
    assert frozen_prefix.summary(model) is None
