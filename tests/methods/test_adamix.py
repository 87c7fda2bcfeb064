"""AdaMix by hand: M bottleneck experts per feed-forward sublayer, one (down, up) pair drawn from
torch's RNG per training pass, the experts' averaged weights in evaluation.

The registry matrix (tests/methods/test_methods.py) trains, saves and loads it in the real trial
loop; these check the arithmetic on tiny in-memory models (no disk, no task)."""

import copy

import pytest
import torch

from budgetft.methods import ApplyContext, adamix, pfeiffer

pytestmark = pytest.mark.usefixtures("one_thread")

EXPERTS, REDUCTION = 4, 4  # 32-wide blocks: an 8-unit bottleneck
CONFIG = {"num_experts": EXPERTS, "reduction_factor": REDUCTION, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config).eval()


IDS = torch.tensor([[3, 7, 11, 5, 9, 2]])


def _adamix(base):
    return adamix.apply(copy.deepcopy(base), dict(CONFIG), ApplyContext())


def _mixtures(model):
    return [m.bottleneck for m in model.modules() if hasattr(m, "bottleneck")]


def _scramble(model, seed=1):
    """Distinct random weights in every expert, so each (down, up) pair gives its own output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (p for n, p in model.named_parameters() if ".bottleneck." in n):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def _hand(h, wd, bd, wu, bu):
    """h + W_up·GELU(W_down·h + b_down) + b_up, written out."""
    hidden = h @ wd.t() + bd
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / 2**0.5))  # exact GELU
    return h + hidden @ wu.t() + bu


# --- step 0 -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_adamix_starts_as_the_base_model(kind, request):
    base = request.getfixturevalue(kind)
    model = _adamix(base)
    assert len(_mixtures(model)) == 2  # one mixture per block, after the feed-forward sublayer
    with torch.no_grad():
        expected = base(input_ids=IDS).logits
        torch.testing.assert_close(model.eval()(input_ids=IDS).logits, expected, rtol=0, atol=1e-6)
        torch.manual_seed(3)
        torch.testing.assert_close(model.train()(input_ids=IDS).logits, expected, rtol=0, atol=1e-6)
    for mixture in _mixtures(model):  # every expert starts from one down-projection and a zero up
        assert all(torch.equal(d.weight, mixture.down[0].weight) for d in mixture.down)
        assert all(not u.weight.any() and not u.bias.any() for u in mixture.up)


# --- training: one drawn pair -----------------------------------------------------------

def test_a_training_pass_uses_exactly_the_drawn_down_and_up_pair():
    mixture = adamix._mixture_class()(8, 3, EXPERTS, torch.zeros(1))
    _scramble_module(mixture)
    mixture.train()
    h = torch.randn(2, 5, 8)
    pairs = set()
    for seed in range(12):
        torch.manual_seed(seed)
        d, u = torch.randint(EXPERTS, (2,)).tolist()  # the draw, by hand: down first, then up
        pairs.add((d, u))
        torch.manual_seed(seed)
        out = mixture(h)
        down, up = mixture.down[d], mixture.up[u]
        torch.testing.assert_close(out, _hand(h, down.weight, down.bias, up.weight, up.bias))
        other = mixture.up[(u + 1) % EXPERTS]
        assert not torch.allclose(out, _hand(h, down.weight, down.bias, other.weight, other.bias))
    # Down and up are drawn independently: pairs with different indices occur.
    assert any(d != u for d, u in pairs) and len(pairs) > EXPERTS


def test_only_the_drawn_experts_receive_gradients():
    mixture = adamix._mixture_class()(8, 3, EXPERTS, torch.zeros(1))
    _scramble_module(mixture)
    mixture.train()
    h = torch.randn(2, 5, 8)  # drawn before seeding: the forward's draw is the routing alone
    torch.manual_seed(5)
    d, u = torch.randint(EXPERTS, (2,)).tolist()
    torch.manual_seed(5)
    mixture(h).sum().backward()
    assert [m.weight.grad is not None for m in mixture.down] == [i == d for i in range(EXPERTS)]
    assert [m.weight.grad is not None for m in mixture.up] == [i == u for i in range(EXPERTS)]


def test_a_training_pass_of_the_model_is_pfeiffer_with_the_drawn_experts(llama):
    """Each block's mixture draws its own pair, in block order: the whole model's training pass
    equals Pfeiffer adapters holding those experts' weights."""
    model = _adamix(llama)
    _scramble(model)
    torch.manual_seed(11)
    draws = [torch.randint(EXPERTS, (2,)).tolist() for _ in _mixtures(model)]
    plain = pfeiffer.apply(copy.deepcopy(llama), {"reduction_factor": REDUCTION}, ApplyContext()).eval()
    with torch.no_grad():
        for (d, u), mixture, adapter in zip(draws, _mixtures(model), _mixtures(plain)):
            adapter.down.load_state_dict(mixture.down[d].state_dict())
            adapter.up.load_state_dict(mixture.up[u].state_dict())
        torch.manual_seed(11)
        trained = model.train()(input_ids=IDS).logits
        torch.testing.assert_close(trained, plain(input_ids=IDS).logits)


# --- evaluation: averaged experts ----------------------------------------------------------

def test_evaluation_averages_the_experts_and_is_deterministic():
    mixture = adamix._mixture_class()(8, 3, EXPERTS, torch.zeros(1))
    _scramble_module(mixture)
    mixture.eval()
    h = torch.randn(2, 5, 8)
    mean = lambda layers, attr: sum(getattr(m, attr) for m in layers) / EXPERTS  # noqa: E731
    expected = _hand(h, mean(mixture.down, "weight"), mean(mixture.down, "bias"), mean(mixture.up, "weight"), mean(mixture.up, "bias"))
    state = torch.get_rng_state()
    with torch.no_grad():
        first, second = mixture(h), mixture(h)
    torch.testing.assert_close(first, expected)
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), state)  # no draw in evaluation


def test_the_evaluated_model_is_pfeiffer_with_the_averaged_experts(bert):
    model = _adamix(bert)
    _scramble(model)
    plain = pfeiffer.apply(copy.deepcopy(bert), {"reduction_factor": REDUCTION}, ApplyContext()).eval()
    with torch.no_grad():
        for mixture, adapter in zip(_mixtures(model), _mixtures(plain)):
            for name, layers in (("down", mixture.down), ("up", mixture.up)):
                target = getattr(adapter, name)
                target.weight.copy_(torch.stack([m.weight for m in layers]).mean(0))
                target.bias.copy_(torch.stack([m.bias for m in layers]).mean(0))
        model.eval()
        torch.manual_seed(1)
        a = model(input_ids=IDS).logits
        torch.manual_seed(2)
        b = model(input_ids=IDS).logits
        torch.testing.assert_close(a, plain(input_ids=IDS).logits)
    assert torch.equal(a, b)


# --- what trains ----------------------------------------------------------------------------

def test_only_the_experts_train_on_a_decoder(llama):
    model = _adamix(llama)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {
        f"model.layers.{i}.mlp.down_proj.bottleneck.{side}.{e}.{attr}"
        for i in range(2) for side in ("down", "up") for e in range(EXPERTS) for attr in ("weight", "bias")
    }
    assert trainable == expected
    per_expert = 2 * 32 * 8 + 8 + 32  # down (8x32 + 8) and up (32x8 + 32)
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad) == 2 * EXPERTS * per_expert


def test_only_the_experts_and_the_head_train_on_an_encoder(bert):
    model = _adamix(bert)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if not n.startswith("classifier.")} == {
        f"bert.encoder.layer.{i}.output.dense.bottleneck.{side}.{e}.{attr}"
        for i in range(2) for side in ("down", "up") for e in range(EXPERTS) for attr in ("weight", "bias")
    }
    assert {"classifier.weight", "classifier.bias"} <= trainable


def test_parameter_count_on_the_meta_device(llama):
    method = adamix.METHOD
    overrides = {"reduction_factor": REDUCTION}
    assert method.count_params(llama.config, overrides) == method.count_params(llama, overrides)


# --- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -2, 2.5, "four", None])
def test_a_bad_number_of_experts_is_refused_before_the_model_changes(llama, bad):
    model = copy.deepcopy(llama)
    with pytest.raises(ValueError, match=r"adamix: num_experts is .*; give a whole number of adapters per sublayer, 1 or more"):
        adamix.apply(model, {**CONFIG, "num_experts": bad}, ApplyContext())
    assert not _mixtures(model) and all(p.requires_grad for p in model.parameters())


def test_a_bad_number_of_experts_stops_the_trial_before_step_1(tiny_model_dir, tmp_path):
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task
    from budgetft.train.trial import TrialSettings, run_trial
    from tests.conftest import tiny_job_dict

    data = tiny_job_dict(tiny_model_dir, tmp_path)
    data["eval"]["limit"], data["train"]["train_limit"] = 8, 16
    task = prepare_task(validate_job(data))
    settings = TrialSettings.from_job(task, "adamix", adamix.METHOD.config({"num_experts": 0}), steps=2)
    steps = []
    with pytest.raises(ValueError, match="num_experts is 0"):
        run_trial(task, settings, on_step=steps.append)
    assert steps == []


def test_one_expert_is_a_plain_bottleneck_adapter():
    mixture = adamix._mixture_class()(8, 3, 1, torch.zeros(1))
    _scramble_module(mixture)
    h = torch.randn(1, 4, 8)
    expected = _hand(h, mixture.down[0].weight, mixture.down[0].bias, mixture.up[0].weight, mixture.up[0].bias)
    torch.testing.assert_close(mixture.train()(h), expected)
    torch.testing.assert_close(mixture.eval()(h), expected)


def _scramble_module(module, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
