"""Every registered method applies to a tiny Llama, trains, and is scored by the verbalizer."""

import pytest
import torch

from budgetft import methods
from budgetft.methods import ApplyContext
from budgetft.methods._peft import virtual_token_offset
from budgetft.scoring import label_word_nll
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from budgetft.trial import TrialSettings, _template_words, count_params, run_trial


def fixed_batch_loss(model, task, n=64) -> float:
    model.eval()
    with torch.no_grad():
        nll, count = label_word_nll(
            model, task.train.prompts[:n], task.train.labels[:n].tolist(), task.class_tokens, task.pad_id, virtual_token_offset(model)
        )
    return nll.item() / count


def test_unknown_method_lists_valid_ones():
    with pytest.raises(KeyError, match="valid methods: lora, prompt_tuning, p_tuning, prefix_tuning, ia3, bitfit, full"):
        methods.get("qlora")


def test_aliases_resolve():
    assert methods.get("P-Tuning").name == "p_tuning" and methods.get("prefix").name == "prefix_tuning"


@pytest.fixture
def task(tiny_job_data):
    tiny_job_data["eval"]["limit"] = 16
    return prepare_task(validate_job(tiny_job_data))


LEARNING_RATES = {"lora": 1e-2, "prompt_tuning": 1e-1, "p_tuning": 1e-2, "prefix_tuning": 1e-2, "ia3": 5e-2, "bitfit": 1e-2, "full": 1e-3}


@pytest.mark.parametrize("name", methods.names())
def test_method_trains_and_scores(task, name):
    from budgetft.models.loading import load_model

    method = methods.get(name)
    base = load_model(task.model)
    _, total_before = count_params(base)
    overrides = {"learning_rate": LEARNING_RATES[name]}
    if name == "p_tuning":
        overrides["encoder_hidden_size"] = 16  # the default MLP is larger than this tiny model
    config = method.config(overrides)
    settings = TrialSettings.from_job(task, name, config, steps=10)
    settings.eval_every = 10
    result, model = run_trial(task, settings, model=base)
    assert result.trainable_params > 0
    if name == "full":
        assert result.trainable_params == result.total_params
    else:
        assert result.trainable_params < 0.5 * total_before  # parameter-efficient
    # Loss on the same rows before and after training: per-step losses are on different
    # batches and too noisy to compare over a few steps.
    torch.manual_seed(settings.seed)  # run_trial seeds the same way before applying the method
    untrained = method.apply(load_model(task.model), config, ApplyContext(task.tokenizer, _template_words(task.job.prompt.template)))
    before, after = fixed_batch_loss(untrained, task), fixed_batch_loss(model, task)
    assert after < before, f"{name}: loss on the training rows did not fall ({before:.3f} -> {after:.3f})"
    final = result.final
    assert 0.0 <= final["accuracy"] <= 1.0 and sum(final["prediction_share"].values()) == pytest.approx(1.0)
    assert final["n"] == 16 and final["eval_loss"] > 0


def test_bitfit_adds_zero_biases_without_changing_outputs(task):
    import numpy as np
    import torch

    from budgetft.models.loading import load_model
    from budgetft.scoring import class_scores

    base = load_model(task.model).eval()
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
