"""The embedded default, for real: SmolLM2-135M-Instruct trained a few LoRA steps on BoolQ.

Converting the GGUF file takes ~25 s once per machine (cached under ~/.cache/budgetft);
the steps take ~10 s each on 2 CPU cores, so rows are kept short here.
"""

import pytest

from budgetft.spec import load_job
from budgetft.task import prepare_task
from budgetft.train.trial import TrialSettings, run_trial
from budgetft.scoring.rows import evaluate
from budgetft.scoring.baselines import majority_baseline


@pytest.mark.slow
def test_lora_on_the_embedded_model(real_cache):
    job = load_job(None, ["prompt.max_length=96", "eval.limit=24", "train.batch_size=4", "train.train_limit=200"])
    task = prepare_task(job)
    assert task.model.source == "embedded" and task.data_origin == "embedded:google/boolq"
    assert task.class_tokens == [[9805], [787]]  # " yes", " no": single tokens
    from budgetft.models.loading import load_model

    model = load_model(task.model)
    zero_shot = evaluate(model, task)
    settings = TrialSettings.from_job(task, "lora", {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "learning_rate": 1e-3}, steps=6)
    settings.eval_every = 6
    result, _ = run_trial(task, settings, model=model)
    losses = [loss for _, loss in result.losses]
    # The loss is the cross-entropy between the two classes' scores: a few steps move it
    # towards the ~0.67 nats of BoolQ's 62/38 class prior, on training and evaluation rows.
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    final = result.final
    assert final["eval_loss"] < zero_shot["eval_loss"]
    for metrics in (final, zero_shot, majority_baseline(task)):
        assert metrics["n"] == 24
        assert 0 <= metrics["accuracy_ci95"][0] <= metrics["accuracy"] <= metrics["accuracy_ci95"][1] <= 1
        assert 0 <= metrics["balanced_accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
        assert sum(metrics["prediction_share"].values()) == pytest.approx(1.0)
    assert result.trainable_params == 4_884_480 // 2  # r=8 on all 7 linear layers of 30 blocks
