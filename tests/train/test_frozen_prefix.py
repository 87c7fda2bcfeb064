"""Frozen blocks computed once (budgetft.train.frozen_prefix): a model served from stored
states scores and trains exactly as the whole model does, reuses what it stored (in memory and
through a shared folder), attaches only where the trained parts sit above frozen blocks, and
leaves no trace once detached."""

import copy

import pytest
import torch

from budgetft import methods
from budgetft.methods import DECODER, ENCODER
from budgetft.train import frozen_prefix, row_states
from budgetft.methods.context import context_for
from budgetft.scoring.rows import evaluate
from budgetft.train.trial import TrialSettings, run_trial
from tests.methods.test_methods import _load, decoder_task, encoder_dir, encoder_task  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_thread")


def _last_k(task, architecture, k=1):
    model = _load(task, architecture)
    torch.manual_seed(0)
    return methods.get("last_k").apply(model, {"k": k, "learning_rate": 1e-3}, context_for(task.job, task.tokenizer))


def _scores(model, task):
    model.eval()
    with torch.no_grad():
        scoring = methods_scoring(model)
        return scoring.class_scores(model, task.eval.prompts[:12], task.class_tokens, task.pad_id)


def methods_scoring(model):
    from budgetft.scoring.rows import scoring_of

    return scoring_of(model)


@pytest.mark.parametrize("architecture", [DECODER, ENCODER])
def test_stored_states_score_exactly_as_the_whole_model(architecture, decoder_task, encoder_task):
    task = decoder_task if architecture == DECODER else encoder_task
    model = _last_k(task, architecture)
    whole = _scores(model, task)
    prefix = frozen_prefix.attach(model, "tiny")
    assert prefix is not None and prefix.j == 1
    first = _scores(model, task)  # computes and stores the rows' states
    assert prefix.computed == 12 and prefix.served == 0
    second = _scores(model, task)  # served from the store: the frozen block does not run
    assert prefix.computed == 12 and prefix.served == 12
    torch.testing.assert_close(first, whole)
    torch.testing.assert_close(second, whole)


def test_the_frozen_block_does_not_run_once_its_rows_are_stored(decoder_task):
    model = _last_k(decoder_task, DECODER)
    prefix = frozen_prefix.attach(model, "tiny")
    frozen, trained = [], []
    model.model.layers[0].mlp.register_forward_hook(lambda *a: frozen.append(1))
    model.model.layers[1].mlp.register_forward_hook(lambda *a: trained.append(1))
    _scores(model, decoder_task)
    assert frozen == [1] and trained == [1]  # once to store the rows' states (no trained block), once to score
    _scores(model, decoder_task)
    assert frozen == [1] and trained == [1, 1]  # the frozen block handed its input on
    prefix.detach()


@pytest.mark.parametrize("architecture", [DECODER, ENCODER])
def test_a_trial_trains_the_same_with_stored_states(architecture, decoder_task, encoder_task):
    """Dropout is off in the tiny models, so the frozen block in inference mode changes nothing:
    the same losses step by step, and the same evaluation."""
    task = decoder_task if architecture == DECODER else encoder_task
    config = methods.get("last_k").config({"k": 1, "learning_rate": 3e-3})
    runs = []
    for reuse in (False, True):
        settings = TrialSettings.from_job(task, "last_k", config, steps=6)
        settings.eval_steps = [3, 6]
        settings.reuse_frozen_layers = reuse
        result, model = run_trial(task, settings, model=_load(task, architecture))
        runs.append((result, model))
    (plain, plain_model), (stored, stored_model) = runs
    assert plain.frozen_prefix is None
    assert stored.frozen_prefix["first_trained_block"] == 1 and stored.frozen_prefix["rows_reused"] > 0
    assert [s for s, _ in stored.losses] == [s for s, _ in plain.losses]
    assert [v for _, v in stored.losses] == pytest.approx([v for _, v in plain.losses], rel=1e-4, abs=1e-5)
    assert stored.final["accuracy"] == plain.final["accuracy"]
    assert stored.final["eval_loss"] == pytest.approx(plain.final["eval_loss"], rel=1e-4, abs=1e-5)
    # Handed back whole: every block runs again, and the weights are the trained ones.
    assert evaluate(stored_model, task)["eval_loss"] == pytest.approx(stored.final["eval_loss"], rel=1e-5, abs=1e-6)
    assert set(stored_model.state_dict()) == set(plain_model.state_dict())


def test_trials_share_states_through_a_folder(decoder_task, tmp_path):
    first = frozen_prefix.attach(_last_k(decoder_task, DECODER), "tiny", tmp_path)
    _scores(first.model, decoder_task)
    assert first.computed == 12 and len(list((tmp_path / first.tag).glob("*.pt"))) == 12
    assert not list((tmp_path / first.tag).glob(".*.tmp"))  # written whole, then renamed
    second = frozen_prefix.attach(_last_k(decoder_task, DECODER), "tiny", tmp_path)
    scores = _scores(second.model, decoder_task)
    assert second.computed == 0 and second.served == 12
    second.detach()
    torch.testing.assert_close(scores, _scores(second.model, decoder_task))
    # Another identity (other weights or precision) never reads these states.
    other = frozen_prefix.attach(_last_k(decoder_task, DECODER), "tiny|bf16", tmp_path)
    _scores(other.model, decoder_task)
    assert other.computed == 12


def test_a_store_writes_no_more_than_its_disk_bound(decoder_task, tmp_path, monkeypatch):
    """LST's every-block states would fill a disk: each store writes at most DISK_BYTES; the rows
    past it stay in memory (or are computed again) and the scores do not change."""
    probe = frozen_prefix.attach(_last_k(decoder_task, DECODER), "probe")
    whole = _scores(probe.model, decoder_task)
    row_bytes = max(state.numel() * state.element_size() for state in probe.memory.values())
    monkeypatch.setattr(row_states, "DISK_BYTES", 5 * row_bytes)
    first = frozen_prefix.attach(_last_k(decoder_task, DECODER), "tiny", tmp_path)
    torch.testing.assert_close(_scores(first.model, decoder_task), whole)
    written = list((tmp_path / first.tag).glob("*.pt"))
    assert 1 <= len(written) < 12 and first.disk_bytes <= 5 * row_bytes and first.computed == 12
    # A later trial adds to the same folder: it counts what is there and writes nothing past the bound.
    second = frozen_prefix.attach(_last_k(decoder_task, DECODER), "tiny", tmp_path)
    torch.testing.assert_close(_scores(second.model, decoder_task), whole)
    files = list((tmp_path / first.tag).glob("*.pt"))
    assert sorted(files) == sorted(written)  # the first store filled the bound; the second writes nothing
    assert second.disk_bytes == sum(p.stat().st_size for p in files)


def test_a_torn_state_file_is_computed_again(decoder_task, tmp_path):
    first = frozen_prefix.attach(_last_k(decoder_task, DECODER), "tiny", tmp_path)
    _scores(first.model, decoder_task)
    victim = sorted((tmp_path / first.tag).glob("*.pt"))[0]
    victim.write_bytes(victim.read_bytes()[:10])  # a writer killed mid-file (before the rename it cannot be)
    second = frozen_prefix.attach(_last_k(decoder_task, DECODER), "tiny", tmp_path)
    _scores(second.model, decoder_task)
    assert second.computed == 1 and second.served == 11


@pytest.mark.parametrize("name", ["lora", "bitfit", "ia3", "prompt_tuning", "full", "siva", "mezo_top_k", "mezo_lst"])
def test_methods_that_train_below_the_top_are_not_served(name, decoder_task):
    method = methods.get(name)
    model = method.apply(_load(decoder_task, DECODER), method.config(), context_for(decoder_task.job, decoder_task.tokenizer))
    assert frozen_prefix.first_trained_block(model) is None
    assert frozen_prefix.attach(model, "tiny") is None


def test_k_lst_is_not_a_frozen_prefix_since_its_ladders_read_the_frozen_blocks(decoder_task):
    """k-LST trains the top block like last_k, but its side network reads every block's output:
    serving the frozen block by handing its input on would hand the ladder the block's input. It
    is served by LadderStates instead, which stores the frozen block's output
    (tests/methods/test_lst_states.py)."""
    method = methods.get("lst")
    model = method.apply(_load(decoder_task, DECODER), method.config({"k": 1, "reduction_factor": 4}), context_for(decoder_task.job, decoder_task.tokenizer))
    assert frozen_prefix.first_trained_block(model) is None
    assert frozen_prefix.ladder_blocks(model) == 1
    assert isinstance(frozen_prefix.attach(model, "tiny"), frozen_prefix.LadderStates)


def test_a_prefix_too_short_to_pay_is_not_served(decoder_task):
    """k = every block: nothing is frozen below the lowest trained block."""
    model = _last_k(decoder_task, DECODER, k=2)
    assert frozen_prefix.first_trained_block(model) is None


def test_detach_leaves_the_model_as_the_method_made_it(decoder_task):
    model = _last_k(decoder_task, DECODER)
    keys = list(model.state_dict())
    prefix = frozen_prefix.attach(model, "tiny")
    _scores(model, decoder_task)
    prefix.detach()
    assert list(model.state_dict()) == keys
    assert all("forward" not in block.__dict__ for block in model.model.layers)
    assert not model._forward_pre_hooks and not model.model.layers[1]._forward_pre_hooks
    assert not model.model.layers[0]._forward_hooks


def drop_out_in_the_bottom_block(model, p: float = 0.1) -> None:
    """The tiny BERT has no dropout: give its bottom block MiniLM's and BERT's 10%."""
    model.config.hidden_dropout_prob = p
    for module in model.bert.encoder.layer[0].modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def test_a_model_whose_frozen_blocks_drop_out_is_not_served(encoder_task):
    """MiniLM and BERT drop out 10% inside every block while training: stored states (computed
    without it) would change what the top blocks learn, so they are not used."""
    model = _last_k(encoder_task, ENCODER)
    assert frozen_prefix.first_trained_block(model) == 1  # the tiny BERT has no dropout
    drop_out_in_the_bottom_block(model)
    assert frozen_prefix.first_trained_block(model) is None


def test_a_job_that_trains_without_dropout_is_served_again(encoder_task):
    """train.dropout: 0 (the embedded job's) sets the modules and the config alike, so the
    frozen blocks compute what they would in training, and their states are served."""
    from budgetft.models.dropout import set_dropout

    model = _last_k(encoder_task, ENCODER)
    drop_out_in_the_bottom_block(model)
    set_dropout(model, 0.0)
    assert frozen_prefix.first_trained_block(model) == 1


def test_blocks_that_return_tuples_are_served_from_a_shared_folder(decoder_task, tmp_path):
    """GPT-Neo's blocks return (hidden, ...) and its loop reads outputs[0]: a later trial's first
    batch, served entirely from the folder, must hand on the same shape."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(0)
    config = GPTNeoConfig(
        vocab_size=len(decoder_task.tokenizer), hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=128,
        attention_types=[[["global"], 2]], embed_dropout=0.0, attention_dropout=0.0, resid_dropout=0.0,
        pad_token_id=0, eos_token_id=2, bos_token_id=2,
    )
    base = GPTNeoForCausalLM(config).eval()
    context = context_for(decoder_task.job, decoder_task.tokenizer)

    def fresh():
        model = methods.get("last_k").apply(copy.deepcopy(base), {"k": 1, "learning_rate": 1e-3}, context)
        return model.eval()

    whole = _scores(fresh(), decoder_task)
    first = frozen_prefix.attach(fresh(), "neo", tmp_path)
    assert first._out_len >= 1  # learnt before any forward was served
    torch.testing.assert_close(_scores(first.model, decoder_task), whole)
    second = frozen_prefix.attach(fresh(), "neo", tmp_path)
    torch.testing.assert_close(_scores(second.model, decoder_task), whole)
    assert second.computed == 0 and second.served == 12
