import numpy as np
import pytest
import torch

from budgetft.methods import ApplyContext, get
from budgetft.models.loading import load_model
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from budgetft.train.steps import accumulate
from budgetft.train.trial import TrialSettings, run_trial
from budgetft.scoring.rows import evaluate
from budgetft.scoring.baselines import majority_baseline


@pytest.fixture
def task(tiny_job_data):
    return prepare_task(validate_job(tiny_job_data))


@pytest.mark.parametrize("loss_kind", ["classes", "lm"])
def test_gradient_accumulation_matches_full_batch(task, loss_kind):
    idx = np.arange(8)
    grads = []
    for micro in (8, 3):
        torch.manual_seed(0)
        model = get("lora").apply(load_model(task.model), {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "learning_rate": 1e-3}, ApplyContext())
        with torch.no_grad():  # make B non-zero so every LoRA weight gets a gradient
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02)
        loss, *_ = accumulate(model, task, idx, micro, 0, loss_kind)
        grads.append((loss, [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (loss_a, ga), (loss_b, gb) = grads
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ga, gb))


def test_training_learns_the_rule_and_beats_majority(task):
    """On a random tiny model full fine-tuning learns the rule in seconds (low-rank updates of
    random weights are slow to); LoRA's learning is checked on the real model in test_real_model."""
    majority = majority_baseline(task)
    base = load_model(task.model)
    zero_shot = evaluate(base, task)
    settings = TrialSettings.from_job(task, "full", get("full").config({"learning_rate": 3e-3}), steps=40)
    settings.eval_every = 20
    evals = []
    result, _ = run_trial(task, settings, model=base, on_eval=lambda step, m: evals.append(step))
    assert evals == [20, 40]
    assert result.final["accuracy"] > majority["accuracy"] + 0.2
    assert result.final["accuracy"] > zero_shot["accuracy"] + 0.2  # training, not the model's prior
    # The headline accuracy is the per-row record's mean: the same rows significance tests use.
    assert zero_shot["accuracy"] == pytest.approx(np.mean(zero_shot["correct"])) and len(zero_shot["correct"]) == len(task.eval)
    assert result.examples == 40 * 8 and result.examples_per_s > 0
    assert 0.0 <= result.padded_share < 0.5


def test_on_eval_can_stop_a_trial_early(task):
    settings = TrialSettings.from_job(task, "ia3", get("ia3").config(), steps=30)
    settings.eval_every = 5
    result, _ = run_trial(task, settings, on_eval=lambda step, m: step >= 10)
    assert result.steps == 10 and len(result.evals) == 2


def test_majority_class_comes_from_the_training_split(task):
    counts = np.bincount(task.train.labels, minlength=2)
    assert task.class_names[task.majority_class] == task.class_names[int(counts.argmax())]
    m = majority_baseline(task)
    assert m["prediction_share"][m["majority_class"]] == 1.0


def test_the_trials_seed_draws_an_encoders_fresh_head(tiny_model_dir, tmp_path):
    """run_trial loads the model after seeding torch, so the job's seed (not whatever the worker
    process drew before) decides the classification head an encoder starts from: the same seed
    gives the same head, another seed another."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from budgetft.spec import validate_job
    from budgetft.task import prepare_task
    from budgetft.train.trial import TrialSettings, run_trial
    from tests.conftest import tiny_job_dict

    folder = tmp_path / "bert"
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    config = BertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=128, num_labels=2, pad_token_id=0)
    model = BertForSequenceClassification(config)
    del model.classifier  # a checkpoint without a head, like a sentence-transformers encoder
    model.save_pretrained(folder)
    data = tiny_job_dict(folder, tmp_path)
    data["eval"]["limit"] = 8
    heads = []
    for seed in (0, 0, 1):
        data["seed"] = seed
        task = prepare_task(validate_job(data))
        settings = TrialSettings.from_job(task, "bitfit", {"learning_rate": 1e-9}, steps=1)
        settings.eval_steps = []
        torch.manual_seed(1234 + len(heads))  # what the worker process drew before: must not matter
        _, trained = run_trial(task, settings)
        heads.append(trained.classifier.weight.detach().clone())
    assert torch.allclose(heads[0], heads[1], atol=1e-6)
    assert not torch.allclose(heads[0], heads[2], atol=1e-3)


def test_a_shortened_trial_decays_to_zero_and_evaluates_at_its_new_end(task):
    """A machine slower than calibrated: at step 38 the money is found to buy only up to step 42
    of the 60 planned. The schedule then decays to zero by step 42, the trial evaluates there
    (its one planned evaluation was at 60) and stops."""
    settings = TrialSettings.from_job(task, "full", get("full").config({"learning_rate": 1e-3}), steps=60)
    settings.eval_steps = [60]
    asked, lrs = [], []

    def horizon(step, step_s, end):
        asked.append((step, end, step_s))
        return 42 if step >= 38 else end

    result, _ = run_trial(task, settings, on_step=lambda log: lrs.append((log.step, log.lr)), horizon=horizon)
    assert result.steps == 42 and [e["step"] for e in result.evals] == [42]
    assert dict(lrs)[42] == 0.0 and all(lr > 0 for step, lr in lrs if step < 42)
    # asked only once the pace is measured (30 steps after the first), and never at the last step
    assert asked[0][0] == 31 and all(step < end for step, end, _ in asked) and all(s > 0 for *_, s in asked)
    # no jump at the cut: the rate falls linearly from where it stood to zero at step 42
    at = dict(lrs)
    assert at[39] == pytest.approx(at[38] * 3 / 4) and at[40] == pytest.approx(at[38] * 2 / 4)


def test_a_lengthened_trial_skips_its_planned_evaluation_and_evaluates_at_its_new_end(task):
    """A machine faster than calibrated, where the plan lets the trial grow: at step 8 the end
    moves from 40 to 48. The rungs before both ends stay; the planned end's evaluation moves."""
    settings = TrialSettings.from_job(task, "full", get("full").config({"learning_rate": 1e-3}), steps=40)
    settings.eval_steps = [4, 40]
    lrs = []
    result, _ = run_trial(task, settings, on_step=lambda log: lrs.append((log.step, log.lr)),
                          horizon=lambda step, step_s, end: 48 if step >= 36 else end)
    assert result.steps == 48 and [e["step"] for e in result.evals] == [4, 48]
    at = dict(lrs)
    assert at[48] == 0.0 and at[40] > 0 and at[37] == pytest.approx(at[36] * 11 / 12)  # stretched from where it stood


def test_the_pace_is_recent_seconds_per_token_at_the_datas_mean_step():
    from budgetft.train.schedule import pace

    # 3 s for 3,000 tokens lately: 1 ms a token; the data's mean step is 1,200 tokens
    assert pace([(1.0, 1000), (2.0, 2000)], 1200.0) == pytest.approx(1.2)
    assert pace([(1.0, 0), (3.0, 0)], 1200.0) == pytest.approx(2.0)  # tokens unknown: the plain mean


def test_an_unmoved_horizon_leaves_the_plan(task):
    settings = TrialSettings.from_job(task, "ia3", get("ia3").config(), steps=10)
    result, _ = run_trial(task, settings, horizon=lambda step, step_s, end: end)
    assert result.steps == 10 and [e["step"] for e in result.evals] == [10]


def test_the_jobs_dropout_reaches_the_model_but_not_the_methods_own(tiny_model_dir, tmp_path):
    """train.dropout sets the base model's dropout before the method applies: LoRA's own
    dropout (its lora_dropout, 0.05) stays as the method set it; unset, the model keeps its 0.1."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tests.conftest import tiny_job_dict

    folder = tmp_path / "bert"
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    config = BertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=128, num_labels=2, pad_token_id=0)
    BertForSequenceClassification(config).save_pretrained(folder)
    data = tiny_job_dict(folder, tmp_path)
    data["eval"]["limit"] = 8
    seen = {}
    for dropout in (None, 0.0):
        data["train"]["dropout"] = dropout
        task = prepare_task(validate_job(data))
        settings = TrialSettings.from_job(task, "lora", get("lora").config({"learning_rate": 1e-4}), steps=1)
        settings.eval_steps = []

        def on_model(model, dropout=dropout):
            seen[dropout] = {
                "model": {m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_" not in n},
                "lora": {m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_" in n},
            }

        run_trial(task, settings, on_model=on_model)
    assert seen[None] == {"model": {0.1}, "lora": {0.05}}
    assert seen[0.0] == {"model": {0.0}, "lora": {0.05}}
