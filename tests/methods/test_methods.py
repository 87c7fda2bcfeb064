"""The method registry, and one matrix over all of it: every method on a tiny random model of
every architecture it supports applies, trains a few steps (the loss on fixed rows falls),
saves, loads onto a fresh base model and evaluates exactly as before saving.

Both run the real trial loop: a decoder is scored by its label words (the verbalizer), an
encoder by its classification head (budgetft.methods.seqcls), chosen by the trial from the
model itself; the encoder's architecture is detected from its config by prepare_task.
"""

import numpy as np
import pytest
import torch

from budgetft import methods
from budgetft.train import steps
from budgetft.methods import DECODER, ApplyContext
from budgetft.scoring.rows import scoring_of, virtual_token_offset
from budgetft.train.persist import load_trained, save_trained
from budgetft.search_space import parse_space
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from budgetft.methods.context import template_words as _template_words
from budgetft.train.trial import TrialSettings, run_trial
from budgetft.methods.counting import count_model
from budgetft.scoring.rows import evaluate
from tests.conftest import make_rows, tiny_job_dict, write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

ORIGINAL_SEVEN = ["lora", "prompt_tuning", "p_tuning", "prefix_tuning", "ia3", "bitfit", "full"]
ISSUE_METHODS = [
    *ORIGINAL_SEVEN, "rslora", "dora", "pissa", "olora", "adalora", "vera", "loha", "lokr",
    "ln_tuning", "last_k", "houlsby", "pfeiffer", "mezo",
]
NEW_METHODS = ["siva", "pasta", "mezo_top_k", "lst", "adamix", "fish_mask", "mezo_lst", "pet", "ipet"]  # issue 15: the methods no library ships
GPU_METHODS = ["qlora"]  # issue 26: LoRA over a 4-bit base


# --- the registry -----------------------------------------------------------------------

def test_registry_has_every_method_of_the_issue():
    assert set(ISSUE_METHODS) <= set(methods.names())  # new methods may join; none may leave
    assert len(methods.names()) == len(set(methods.names()))


def test_unknown_method_lists_valid_ones():
    with pytest.raises(KeyError) as err:
        methods.get("galore")
    message = err.value.args[0]
    assert "unknown method 'galore'; valid methods:" in message
    assert all(name in message for name in methods.names())


def test_aliases_resolve():
    assert methods.get("P-Tuning").name == "p_tuning" and methods.get("prefix").name == "prefix_tuning"
    assert methods.get("LayerNorm").name == "ln_tuning" and methods.get("last-k-layers").name == "last_k"


@pytest.mark.parametrize("name", [*ISSUE_METHODS, *NEW_METHODS])
def test_every_method_declares_what_a_planner_needs(name):
    method = methods.get(name)
    assert method.summary and "learning_rate" in method.defaults
    assert set(method.default_space) <= method.params  # the space only names real parameters
    space = parse_space(method.default_space)
    assert "learning_rate" in space
    assert set(method.architectures) <= set(methods.ARCHITECTURES) and method.architectures
    assert method.task_types and method.forward_passes >= 1
    assert method.saves_as in ("peft adapter", "trainable tensors")
    # A search space's midpoint is a valid configuration.
    assert method.config({k: p.midpoint() for k, p in space.items()})


# --- tiny models of each architecture ----------------------------------------------------

# Two more wordings of the tiny job's template, over the same fields (pet's patterns 1 and 2).
PET_PATTERNS = ["question : {question} ? passage : {passage} . answer :", "{passage} . is it there ? {question} ?"]


def _task(model_dir, tmp_path):
    data = tiny_job_dict(model_dir, tmp_path)
    data["eval"]["limit"] = 16
    data["train"]["train_limit"] = 96  # fewer rows to encode; a few steps see a few dozen
    data["prompt"]["patterns"] = PET_PATTERNS  # pet trains one adapter per pattern
    unlabelled = [{k: v for k, v in row.items() if k != "label"} for row in make_rows(64, seed=3)]
    data["data"]["files"]["unlabelled"] = str(write_jsonl(tmp_path / "unlabelled.jsonl", unlabelled))
    data["data"]["unlabelled_split"] = "unlabelled"  # ipet labels these itself
    return prepare_task(validate_job(data))


@pytest.fixture(scope="module")
def decoder_task(tiny_model_dir, tmp_path_factory):
    return _task(tiny_model_dir, tmp_path_factory.mktemp("decoder"))


@pytest.fixture(scope="module")
def encoder_dir(tiny_model_dir, tmp_path_factory):
    """A 2-layer random BERT with a 2-class head, sharing the tiny tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=128, num_labels=2, pad_token_id=0,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder_task(encoder_dir, tmp_path_factory):
    return _task(encoder_dir, tmp_path_factory.mktemp("encoder"))


_BASES: dict = {}


def _load(task, architecture):
    """A fresh copy of the architecture's untuned tiny model (loading from disk takes ~1 s
    in transformers 5 even for 20k parameters; a deep copy takes milliseconds)."""
    import copy

    from budgetft.models.loading import load_model

    assert task.model.architecture == architecture  # detected from the model's config
    key = (architecture, task.model.location)
    if key not in _BASES:
        _BASES[key] = load_model(task.model)
    return copy.deepcopy(_BASES[key])


def fixed_rows_loss(model, task, n=48) -> float:
    """Mean class cross-entropy on the first n training rows, with the scoring the trial uses."""
    from budgetft.scoring import ensemble

    if ensemble.members(model):  # PET's adapters: the ensemble's scores, each on its own pattern
        from budgetft.scoring.rows import score_rows

        scores = score_rows(model, task, task.train, np.arange(n))
        top = scores.max(axis=1)
        return float(np.mean(top + np.log(np.exp(scores - top[:, None]).sum(axis=1)) - scores[np.arange(n), task.train.labels[:n]]))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        total, rows = scoring_of(model).class_cross_entropy(
            model, task.train.prompts[:n], task.train.labels[:n].tolist(), task.class_tokens, task.pad_id, virtual_token_offset(model)
        )
    model.train(was_training)
    return total.item() / rows


# Learning rates and steps that move each method clearly on a random 2-layer model in a few
# steps; far above what a real model wants (see each method's default space).
LEARNING_RATES = {
    "lora": 1e-2, "prompt_tuning": 1e-2, "p_tuning": 1e-2, "prefix_tuning": 1e-2, "ia3": 5e-2,
    "bitfit": 3e-3, "full": 1e-3, "rslora": 1e-2, "dora": 1e-2, "pissa": 3e-3, "olora": 5e-3,
    "adalora": 1e-2, "vera": 5e-2, "loha": 1e-2, "lokr": 1e-2, "ln_tuning": 3e-2, "last_k": 3e-3,
    "houlsby": 3e-3, "pfeiffer": 3e-3, "mezo": 1e-3, "siva": 1e-2, "pasta": 3e-2, "mezo_top_k": 3e-3, "lst": 1e-2,
    "adamix": 1e-2,
    "fish_mask": 1e-2,
    "mezo_lst": 1e-2,
    "pet": 1e-2,
    "ipet": 1e-2,
}
# Sizes for 32-wide, 2-block models (the defaults are for 576-wide, 30-block ones).
SMALL = {
    "p_tuning": {"encoder_hidden_size": 16}, "vera": {"r": 16}, "last_k": {"k": 1},
    "houlsby": {"reduction_factor": 4}, "pfeiffer": {"reduction_factor": 4},
    "adalora": {"init_r": 6, "target_r": 3}, "loha": {"r": 4}, "siva": {"r": 4}, "mezo_top_k": {"k": 1}, "lst": {"reduction_factor": 4},
    "adamix": {"reduction_factor": 4},
    "mezo_lst": {"reduction_factor": 4},
    "pet": {"r": 2},  # three adapters: r 2 keeps them under half the tiny model
    "ipet": {"r": 2},
}
STEPS = {"mezo": 40}  # one random direction per step: more steps for a clear fall


def _matrix():
    for name in [*ISSUE_METHODS, *NEW_METHODS]:
        for architecture in methods.get(name).architectures:
            yield pytest.param(architecture, name, id=f"{architecture}-{name}")


@pytest.mark.parametrize("architecture, name", list(_matrix()))
def test_method_trains_saves_loads(architecture, name, decoder_task, encoder_task, tmp_path):
    task = decoder_task if architecture == DECODER else encoder_task
    method = methods.get(name)
    config = method.config({"learning_rate": LEARNING_RATES[name], **SMALL.get(name, {})})
    settings = TrialSettings.from_job(task, name, config, steps=STEPS.get(name, 10))
    settings.eval_every = settings.steps
    settings.class_bias = "none"  # the method alone moves the loss (tests/test_class_bias.py has the bias)
    context = ApplyContext(task.tokenizer, _template_words(task.job.prompt.template), tuple(task.job.prompt.labels.values()))

    _, total_before = count_model(_load(task, architecture))
    result, model = run_trial(task, settings, model=_load(task, architecture))

    # Trainable parameters: what the registry predicts, a fraction of the model unless the
    # method trains everything.
    assert result.trainable_params > 0
    assert method.count_params(_load(task, architecture), {k: v for k, v in config.items()})[0] == result.trainable_params
    if name in ("full", "mezo", "mezo_top_k", "mezo_lst"):  # mezo_top_k, mezo_lst: their MeZO phase moves every weight
        assert result.trainable_params == result.total_params
    elif name != "last_k":  # the tiny models have 2 blocks: k=1 is half of them
        assert result.trainable_params < 0.5 * total_before

    # The loss on the same rows falls (per-step losses are on different batches: too noisy).
    torch.manual_seed(settings.seed)  # run_trial seeds the same way before applying the method
    untrained = method.apply(_load(task, architecture), config, context)
    before, after = fixed_rows_loss(untrained, task), fixed_rows_loss(model, task)
    assert after < before, f"{name}: loss on the training rows did not fall ({before:.4f} -> {after:.4f})"
    final = result.final
    assert final["n"] == 16 and sum(final["prediction_share"].values()) == pytest.approx(1.0)

    # Save, load onto a fresh base, evaluate: the same result.
    scored = evaluate(model, task)
    save_trained(model, name, config, tmp_path / "saved")
    torch.manual_seed(4321)  # not the training seed: the loaded weights must decide
    loaded = load_trained(_load(task, architecture), name, config, tmp_path / "saved", context)
    again = evaluate(loaded, task)
    assert again["accuracy"] == scored["accuracy"]
    assert again["eval_loss"] == pytest.approx(scored["eval_loss"], rel=1e-5, abs=1e-6)


# --- method-specific checks --------------------------------------------------------------

def test_bitfit_adds_zero_biases_without_changing_outputs(decoder_task):
    from budgetft.scoring.verbalizer import class_scores

    task = decoder_task
    base = _load(task, DECODER).eval()
    prompts = task.eval.prompts[:4]
    with torch.no_grad():
        before = class_scores(base, prompts, task.class_tokens, task.pad_id)
    model = methods.get("bitfit").apply(base, {"learning_rate": 1e-3}, methods.ApplyContext())
    with torch.no_grad():
        after = class_scores(model, prompts, task.class_tokens, task.pad_id)
    assert torch.allclose(before, after, atol=1e-6)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(".bias") for n in trainable)
    assert not any("lm_head" in n for n in trainable)
    assert np.isfinite(after.numpy()).all()


@pytest.mark.parametrize("name", ["houlsby", "pfeiffer", "pissa", "olora", "dora", "rslora"])
def test_adapters_start_as_the_base_model(decoder_task, name):
    """Every adapter (and PiSSA/OLoRA, whose base keeps the residual) starts where the base
    model is: training moves from the model, not from a perturbed copy."""
    from budgetft.scoring.verbalizer import class_scores

    task = decoder_task
    prompts = task.eval.prompts[:4]
    with torch.no_grad():
        before = class_scores(_load(task, DECODER).eval(), prompts, task.class_tokens, task.pad_id)
        method = methods.get(name)
        model = method.apply(_load(task, DECODER), method.config({"lora_dropout": 0.0} if "lora_dropout" in method.defaults else {}), ApplyContext()).eval()
        after = class_scores(model, prompts, task.class_tokens, task.pad_id)
    assert torch.allclose(before, after, atol=1e-4)


def test_houlsby_has_twice_pfeiffers_adapters(decoder_task):
    h = methods.get("houlsby").count_params(_load(decoder_task, DECODER))[0]
    p = methods.get("pfeiffer").count_params(_load(decoder_task, DECODER))[0]
    # Llama's attention output and feed-forward output are both hidden-size wide.
    assert h == 2 * p


def test_last_k_trains_only_the_top_blocks(decoder_task):
    model = methods.get("last_k").apply(_load(decoder_task, DECODER), {"k": 1, "learning_rate": 1e-3}, ApplyContext())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("model.layers.1.") for n in trainable)
    assert not any(n.startswith("model.layers.0.") or "embed" in n for n in trainable)
    assert "model.norm.weight" in trainable


def test_prompt_tuning_starts_from_the_label_words(decoder_task):
    task = decoder_task
    context = ApplyContext(task.tokenizer, "passage question", (" yes", " no"))
    model = methods.get("prompt_tuning").apply(_load(task, DECODER), {"num_virtual_tokens": 4, "init": "labels", "learning_rate": 1e-2}, context)
    table = model.get_input_embeddings().weight
    prompt = model.prompt_encoder["default"].embedding.weight
    yes, no = task.tokenizer(" yes no", add_special_tokens=False)["input_ids"]
    assert torch.equal(prompt[0], table[yes]) and torch.equal(prompt[1], table[no]) and torch.equal(prompt[2], table[yes])


def test_adalora_reallocates_ranks_during_the_trial(decoder_task):
    task = decoder_task
    method = methods.get("adalora")
    settings = TrialSettings.from_job(task, "adalora", method.config({"learning_rate": 1e-2}), steps=10)
    _, model = run_trial(task, settings)
    config = model.peft_config["default"]
    assert config.total_step == 10 and config.rank_pattern  # after_step ran and masked ranks


@pytest.mark.parametrize("name", [*ISSUE_METHODS, *NEW_METHODS])
def test_parameter_count_needs_no_weights(decoder_task, name):
    """Counting on the meta device (no weights) gives the same numbers as on the real model."""
    from transformers import AutoConfig


    method = methods.get(name)
    overrides = SMALL.get(name, {})
    meta = method.count_params(AutoConfig.from_pretrained(decoder_task.model.location), overrides)
    real = method.count_params(_load(decoder_task, DECODER), overrides)
    assert meta == real


def test_mezo_step_matches_a_hand_computed_zeroth_order_step(decoder_task):
    """θ' = θ - lr · (L(θ+εz) - L(θ-εz)) / (2ε) · z, with z drawn from the step's seed."""
    from budgetft.methods import mezo

    task = decoder_task
    idx = np.arange(8)
    eps, lr = 1e-3, 1e-2

    def loss_of(model):
        with torch.no_grad():
            total, rows = scoring_of(model).class_cross_entropy(
                model, [task.train.prompts[i] for i in idx], task.train.labels[idx].tolist(), task.class_tokens, task.pad_id
            )
        return total.item() / rows

    # By hand: the seed the step draws, z per parameter in order, and the two losses.
    model = mezo.apply(_load(task, DECODER), {}, ApplyContext()).eval()
    theta = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(11)
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    gen = torch.Generator().manual_seed(seed)
    z = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in theta]
    with torch.no_grad():
        for p, t, zi in zip(model.parameters(), theta, z):
            p.copy_(t + eps * zi)
        plus = loss_of(model)
        for p, t, zi in zip(model.parameters(), theta, z):
            p.copy_(t - eps * zi)
        minus = loss_of(model)
    g = (plus - minus) / (2 * eps)
    expected = [t - lr * g * zi for t, zi in zip(theta, z)]

    # By MeZO, from the same starting weights and the same RNG state.
    model = mezo.apply(_load(task, DECODER), {}, ApplyContext()).train()
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(11)
    loss, tokens, padded = mezo.train_step(
        model, params, lambda: steps.accumulate(model, task, idx, 8, 0, "classes", backward=False), lr, {"epsilon": eps}
    )
    assert loss == pytest.approx((plus + minus) / 2, rel=1e-4)
    assert g != 0
    for p, e in zip(model.parameters(), expected):
        assert torch.allclose(p, e, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # no backward pass, ever
    assert model.training  # restored after the no-dropout passes


# --- `budgetft methods` ------------------------------------------------------------------

def test_methods_command_lists_every_method_with_counts(tiny_job_file, tiny_model_dir):
    import json

    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from budgetft.cli import app

    result = CliRunner().invoke(app, ["methods", str(tiny_job_file), "--set", "methods.lora.r=4", "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout[result.stdout.index("{"):])
    assert [m["method"] for m in listing["methods"]] == [*ISSUE_METHODS, *NEW_METHODS, *GPU_METHODS]
    assert listing["architecture"] == DECODER
    assert listing["parameters"] == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters())
    by_name = {m["method"]: m for m in listing["methods"]}
    encoder_only = {n for n in by_name if not methods.get(n).supports(DECODER)}
    assert encoder_only == {"pasta"} and not by_name["pasta"]["supported"]
    assert all(m["supported"] and m["trainable_params"] > 0 and not m["error"] for n, m in by_name.items() if n not in encoder_only)
    assert by_name["full"]["share"] == 1.0 and by_name["lora"]["share"] < 1.0
    assert by_name["lora"]["space_source"] == "job" and by_name["ia3"]["space_source"] == "default"
    # Counted at the job's configuration: LoRA at r=4 has half the parameters of r=8.
    assert 2 * by_name["lora"]["trainable_params"] == by_name["rslora"]["trainable_params"]
    assert by_name["mezo"]["passes"] == "2 forward, no backward"
    assert all(m["seconds_per_step"] is None for m in by_name.values())  # nothing calibrated yet


def test_methods_command_shows_calibrated_speed_and_memory(tiny_job_file):
    from typer.testing import CliRunner

    from budgetft.cli import app
    from budgetft.planner.rates import store_rates
    from budgetft.spec import load_job
    from budgetft.telemetry.device import device_name

    spec = load_job(str(tiny_job_file), [])
    measured = {"seconds_per_step": 0.25, "examples_per_s": 32.0, "peak_memory_mb": 1234.0, "trainable_params": 1}
    store_rates(spec, device_name(), {"lora": measured}, None)
    result = CliRunner().invoke(app, ["methods", str(tiny_job_file)])
    assert result.exit_code == 0, result.output
    lora_row = next(line for line in result.stdout.splitlines() if "│ lora " in line)
    assert "0.25" in lora_row and "32.0" in lora_row and "1,234" in lora_row
    assert "calibrated on" in result.stdout


def test_a_method_that_cannot_run_on_the_architecture_is_refused_up_front(encoder_dir, tmp_path):
    """prefix_tuning on an encoder: peft 0.21 + transformers 5 fail at the first step ("Model
    does not support past key values"); budgetft refuses it before any model is loaded."""
    from budgetft.methods import MethodUnsupported

    data = tiny_job_dict(encoder_dir, tmp_path)
    data["methods"] = {"lora": {}, "prefix_tuning": {}}
    with pytest.raises(MethodUnsupported) as err:
        prepare_task(validate_job(data))
    message = str(err.value)
    assert "'prefix_tuning'" in message and "encoder models" in message and "p_tuning" in message


# --- SiVA ---------------------------------------------------------------------------------

@pytest.mark.parametrize("targets", ["all", "kv"])
def test_siva_reconstructs_the_base_at_step_0_and_trains_only_singular_vectors(decoder_task, targets):
    """W = residual + U_r diag(s_r) V_r^T: the layer's outputs are the base's, U and V have
    orthonormal columns/rows, s is the top of W's spectrum, and only U and V (r x (in + out)
    per adapted layer) train."""
    from budgetft.methods import siva

    task = decoder_task
    base = _load(task, DECODER).eval()
    model = siva.apply(_load(task, DECODER), {"r": 4, "targets": targets, "learning_rate": 1e-3}, ApplyContext()).eval()
    ids = torch.as_tensor(task.train.prompts[0]).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, base(input_ids=ids).logits, rtol=1e-4, atol=1e-5)
    layers = [(n, m) for n, m in model.named_modules() if hasattr(m, "siva")]
    names = {n.rsplit(".", 1)[-1] for n, _ in layers}
    assert names == ({"k_proj", "v_proj"} if targets == "kv" else {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
    base_weights = dict(base.named_parameters())
    for name, layer in layers:
        w = base_weights[f"{name}.weight"].detach()
        s = torch.linalg.svdvals(w)
        torch.testing.assert_close(layer.siva.s, s[:4])
        torch.testing.assert_close(layer.siva.u.t() @ layer.siva.u, torch.eye(4), atol=1e-5, rtol=0)
        torch.testing.assert_close(layer.weight + (layer.siva.u * layer.siva.s) @ layer.siva.v, w, atol=1e-5, rtol=1e-5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.siva.{x}" for n, _ in layers for x in ("u", "v")}
    assert count_model(model)[0] == sum(4 * (m.in_features + m.out_features) for _, m in layers)


def test_siva_refuses_an_unknown_target_set(decoder_task):
    from budgetft.methods import siva

    with pytest.raises(ValueError, match="targets is 'qk'"):
        siva.apply(_load(decoder_task, DECODER), {"r": 4, "targets": "qk", "learning_rate": 1e-3}, ApplyContext())


# --- PaSTA --------------------------------------------------------------------------------

def test_pasta_adds_its_vectors_to_the_special_tokens_states_only(encoder_task):
    """Zero vectors leave the encoder unchanged; a vector v for the first position shifts the
    input of every block at position 0 by v and nowhere else (the first block's input is the
    embedding output, so it is checked there by hand)."""
    from budgetft.methods import pasta
    from budgetft.methods.context import context_for

    task = encoder_task
    base = _load(task, "encoder").eval()
    model = pasta.apply(_load(task, "encoder"), {"learning_rate": 1e-3}, context_for(task.job, task.tokenizer)).eval()
    ids = torch.as_tensor(task.train.prompts[0]).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, base(input_ids=ids).logits)
    blocks = model.bert.encoder.layer
    seen = {}
    def look(module, args, kwargs):
        seen["h"] = (args[0] if args else kwargs["hidden_states"]).clone()

    blocks[0].register_forward_pre_hook(look, with_kwargs=True)  # after PaSTA's own pre-hook
    v = torch.arange(32, dtype=torch.float32) / 100
    with torch.no_grad():
        blocks[0].pasta.vectors[0] = v
        embedded = model.bert.embeddings(input_ids=ids)
        model(input_ids=ids)
    torch.testing.assert_close(seen["h"][0, 0], embedded[0, 0] + v)
    torch.testing.assert_close(seen["h"][0, 1:], embedded[0, 1:])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if "pasta" in n} == {f"bert.encoder.layer.{i}.pasta.vectors" for i in range(2)}
    assert all("pasta" in n or "classifier" in n for n in trainable)


def test_pasta_is_refused_on_a_decoder_up_front(tiny_job_data, tmp_path):
    from budgetft.methods.base import MethodUnsupported

    with pytest.raises(MethodUnsupported, match="pasta"):
        methods.check_supports("pasta", DECODER)


def test_methods_command_counts_an_encoder_only_method_on_the_jobs_encoder(tiny_job_data, encoder_dir, tmp_path):
    """The job's model is a decoder; PaSTA runs on encoders only, so it is counted on the job's
    other model, an encoder, and the listing says which."""
    import json

    import yaml
    from typer.testing import CliRunner

    from budgetft.cli import app

    tiny_job_data["models"] = [{"name": str(encoder_dir), "source": "local"}]
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(tiny_job_data))
    result = CliRunner().invoke(app, ["methods", str(job), "--json"])
    assert result.exit_code == 0, result.output
    by_name = {m["method"]: m for m in json.loads(result.stdout[result.stdout.index("{"):])["methods"]}
    pasta = by_name["pasta"]
    assert not pasta["supported"] and pasta["counted_on"] == str(encoder_dir)
    assert pasta["trainable_params"] == 2 * 2 * 32 + (32 * 2 + 2)  # two vectors in each of 2 blocks, and the head
    assert by_name["lora"]["counted_on"] is None
    table = CliRunner().invoke(app, ["methods", str(job)])
    assert "of tiny-bert" in table.output.replace("\n", "")


# --- phased methods: MeZO, then the top k blocks --------------------------------------------

def test_a_phased_method_switches_at_its_share_of_the_steps(decoder_task):
    """mezo_top_k over 10 steps with zo_share 0.3: steps 1-3 are MeZO (every weight moves, at
    MeZO's learning rate), steps 4-10 backpropagate into the top block only (the bottom block is
    untouched from the switch on), each phase with its own warm-up and decay."""
    task = decoder_task
    method = methods.get("mezo_top_k")
    config = method.config({"k": 1, "zo_share": 0.3, "zo_learning_rate": 1e-3, "learning_rate": 3e-3})
    settings = TrialSettings.from_job(task, "mezo_top_k", config, steps=10)
    settings.eval_steps, settings.class_bias = [10], "none"
    base = _load(task, DECODER)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    logs, switches = [], []

    def on_model(model):
        switches.append((len(logs), {n: p.detach().clone() for n, p in model.named_parameters()}))

    result, model = run_trial(task, settings, model=base, on_step=logs.append, on_model=on_model)
    assert [at for at, _ in switches] == [0, 3]  # the second phase applied after step 3
    at_switch = switches[1][1]
    bottom = "model.layers.0.self_attn.q_proj.weight"
    top = "model.layers.1.self_attn.q_proj.weight"
    assert not torch.equal(at_switch[bottom], before[bottom])  # MeZO moved the bottom block
    after = dict(model.named_parameters())
    torch.testing.assert_close(after[bottom].detach(), at_switch[bottom], rtol=0, atol=0)  # frozen from then on
    assert not torch.equal(after[top].detach(), at_switch[top])  # the top block trained
    # Each phase's own schedule: MeZO's rate (1e-3) warms up over its 3 steps; last_k's (3e-3) over its 7.
    lrs = [log.lr for log in logs]
    assert max(lrs[:3]) <= 1e-3 + 1e-12 and lrs[3] > 1e-3
    assert result.steps == 10 and result.final["step"] == 10
    # What it saves is every weight either phase trained; reloading gives the same scores.
    from budgetft.train.phases import trained_names

    assert trained_names(model) >= {bottom, top}


def test_phase_steps_add_up_and_each_phase_gets_one():
    from budgetft.methods import Phase
    from budgetft.methods.phased import steps_of

    two = [Phase("mezo", {}, 0.3), Phase("last_k", {}, 0.7)]
    assert steps_of(two, 10) == [3, 7]
    assert steps_of(two, 2) == [1, 1]
    assert steps_of([Phase("mezo", {}, 0.99), Phase("last_k", {}, 0.01)], 5) == [4, 1]
    assert sum(steps_of(two, 1001)) == 1001


def test_a_phased_method_refuses_a_share_outside_0_1(decoder_task):
    method = methods.get("mezo_top_k")
    with pytest.raises(ValueError, match="zo_share is 1.5"):
        method.phases(method.config({"zo_share": 1.5}))


# --- LST ----------------------------------------------------------------------------------

def test_lst_ladder_with_connection_dropout_matches_a_hand_computation():
    """x_i = s_{i-1} + m_i down_i(h_i), s_i = x_i + FFN_i(LN_i(x_i)), out = up(s_L); m_i is 0
    or 1 / (1 - p) in training, 1 in evaluation."""
    from budgetft.methods.lst import _side_class

    torch.manual_seed(0)
    side = _side_class()(8, 3, 2, 0.5, torch.zeros(1))
    torch.nn.init.normal_(side.up.weight)  # not zero, so the output shows the side stream
    states = [torch.randn(2, 5, 8) for _ in range(3)]
    masks = [2.0, 0.0, 2.0]  # connection 1 dropped, the others kept and scaled by 1 / (1 - 0.5)
    s = 0.0
    for i, h in enumerate(states):
        x = s + side.down[i](h) * masks[i]
        s = x + side.ffn[i](side.norms[i](x))
    torch.testing.assert_close(side(states, masks), side.up(s))
    # Dropping connection 1 changes the output; the masks drawn in training are 0 or 2.
    assert not torch.allclose(side(states, masks), side(states, [2.0, 2.0, 2.0]))
    side.train()
    torch.manual_seed(1)
    drawn = [m for _ in range(50) for m in side.masks(3, "cpu")]
    assert set(drawn) == {0.0, 2.0}
    side.eval()
    assert side.masks(3, "cpu") == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("k", [0, 1])
def test_lst_starts_as_the_backbone_and_trains_the_side_network(decoder_task, k):
    """up() starts at zero: the same logits as the base; k = 0 trains the side network alone
    (no gradient reaches the backbone), k = 1 the top block too."""
    from budgetft.methods import lst

    task = decoder_task
    base = _load(task, DECODER).eval()
    model = lst.apply(_load(task, DECODER), {"k": k, "reduction_factor": 4, "ladder_dropout": 0.1, "learning_rate": 1e-3}, ApplyContext())
    ids = torch.as_tensor(task.train.prompts[0]).unsqueeze(0)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, base(input_ids=ids).logits)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    backbone = {n for n in trainable if not n.startswith("lst_side.")}
    assert {n.split(".")[0] for n in trainable} >= {"lst_side"}
    assert backbone == ({n for n, _ in model.named_parameters() if n.startswith("model.layers.1.")} if k else set())
    model.train()
    torch.nn.init.normal_(model.lst_side.up.weight, std=0.1)
    model(input_ids=ids).logits.sum().backward()
    assert model.lst_side.down[0].weight.grad is not None
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("model.layers.0."))


def test_lst_refuses_k_beyond_the_blocks(decoder_task):
    from budgetft.methods import lst

    with pytest.raises(ValueError, match="k=2, but the model has 2 blocks"):
        lst.apply(_load(decoder_task, DECODER), {"k": 2, "reduction_factor": 4, "ladder_dropout": 0.1, "learning_rate": 1e-3}, ApplyContext())


def test_a_phased_method_checks_every_phase_before_the_first_step(decoder_task):
    """k=3 on a 2-block model is refused by the last_k phase: before MeZO's half is paid for."""
    method = methods.get("mezo_top_k")
    settings = TrialSettings.from_job(decoder_task, "mezo_top_k", method.config({"k": 3}), steps=4)
    steps = []
    with pytest.raises(ValueError, match="last_k: k=3"):
        run_trial(decoder_task, settings, model=_load(decoder_task, DECODER), on_step=steps.append)
    assert steps == []


def test_a_later_phase_is_served_from_stored_states_with_the_class_bias_fitted(decoder_task):
    """The verbalizer's class bias, fitted before the first phase, sits above every block: the
    last_k phase still serves its frozen block from stored states."""
    method = methods.get("mezo_top_k")
    settings = TrialSettings.from_job(decoder_task, "mezo_top_k", method.config({"k": 1}), steps=6)
    settings.eval_steps, settings.class_bias = [6], "fit"
    result, _ = run_trial(decoder_task, settings, model=_load(decoder_task, DECODER))
    assert result.class_bias is not None
    assert result.frozen_prefix is not None and result.frozen_prefix["first_trained_block"] == 1


def test_calibration_measures_a_phased_method_phase_by_phase(decoder_task):
    from budgetft.train.measure import calibrate_method

    measured = calibrate_method(decoder_task, "mezo_top_k", steps=1)
    phases = measured["phases"]
    assert [p["method"] for p in phases] == ["mezo", "last_k"]
    slow, fast = sorted(p["seconds_per_step"] for p in phases)
    assert slow <= measured["seconds_per_step"] <= fast
    assert measured["seconds_per_step"] == pytest.approx(sum(p["share"] * p["seconds_per_step"] for p in phases))
