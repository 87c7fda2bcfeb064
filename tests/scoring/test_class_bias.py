"""The verbalizer's per-class bias: fitted to the training prior before step 1, trained with the
method, saved and loaded with it."""

import json
import math

import numpy as np
import pytest
import torch

from budgetft import methods
from budgetft.scoring import class_bias
from budgetft.methods import ApplyContext
from budgetft.train.persist import MANIFEST, load_trained, save_trained
from budgetft.models.loading import load_model
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from budgetft.methods.context import template_words as _template_words
from budgetft.train.trial import TrialSettings, run_trial
from budgetft.scoring.rows import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")


def test_flat_scores_get_the_log_prior():
    # Scores that say nothing: the cross-entropy-optimal offsets are the log class frequencies.
    labels = np.array([0] * 75 + [1] * 25)
    b = class_bias.fit(np.zeros((100, 2)), labels)
    assert b[0] - b[1] == pytest.approx(math.log(3), abs=1e-3)
    assert b.sum() == pytest.approx(0, abs=1e-9)
    three = class_bias.fit(np.zeros((6, 3)), np.array([0, 0, 0, 1, 1, 2]))
    assert three[0] - three[2] == pytest.approx(math.log(3), abs=1e-2)
    assert three[1] - three[2] == pytest.approx(math.log(2), abs=1e-2)


def test_a_shifted_calibrated_model_is_shifted_back():
    # Rows drawn from a calibrated model, then every score of class 1 raised by 2 nats (the
    # untuned LM's own liking for one label word): the fit takes the 2 nats back out.
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0.05, 0.95, size=4000)
    labels = (rng.uniform(size=4000) < p1).astype(int)
    scores = np.log(np.stack([1 - p1, p1], axis=1))
    scores[:, 1] += 2.0
    b = class_bias.fit(scores, labels)
    assert b[1] - b[0] == pytest.approx(-2.0, abs=0.15)


def test_a_class_missing_from_the_sample_keeps_a_finite_offset():
    b = class_bias.fit(np.zeros((10, 2)), np.zeros(10, dtype=int))
    assert np.isfinite(b).all() and b[0] > b[1]


@pytest.fixture(scope="module")
def task(tmp_path_factory, tiny_model_dir):
    from tests.conftest import tiny_job_dict

    data = tiny_job_dict(tiny_model_dir, tmp_path_factory.mktemp("bias-data"))
    data["eval"]["limit"] = 24
    return prepare_task(validate_job(data))


def test_trial_starts_from_the_training_prior_and_trains_the_bias(task):
    settings = TrialSettings.from_job(task, "lora", methods.get("lora").config({"learning_rate": 3e-2}), steps=6)
    seen = {}
    result, model = run_trial(task, settings, model=load_model(task.model), on_model=lambda m: seen.setdefault("start", class_bias.class_bias_of(m)))
    assert result.class_bias == pytest.approx(seen["start"], abs=1e-5) and len(result.class_bias) == len(task.class_names)
    assert sum(result.class_bias) == pytest.approx(0, abs=1e-5)
    assert result.class_bias_seconds > 0
    # Trained with the method: six steps at this rate move it off the fitted start.
    assert class_bias.class_bias_of(model) != pytest.approx(result.class_bias, abs=1e-4)
    # Trained, but not counted as the method's parameters.
    assert result.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad) - len(task.class_names)


def test_the_fit_uses_the_untuned_scores_on_training_rows(task):
    model = methods.get("lora").apply(load_model(task.model), methods.get("lora").config({}), ApplyContext())
    from budgetft.telemetry.precision import precision_for

    b = class_bias.fit_on_training_rows(model, task, seed=0, precision=precision_for(torch.device("cpu")), rows=16)
    # Scores with the offsets added predict the training rows' classes at least as well
    # (in cross-entropy) as the raw scores: the fit minimises exactly that on its sample.
    from budgetft.scoring import verbalizer as scoring

    rows = np.random.default_rng(0).choice(len(task.train), size=16, replace=False)
    with torch.inference_mode():
        raw = scoring.class_scores(model, [task.train.prompts[i] for i in rows], task.class_tokens, task.pad_id).numpy()
    y = task.train.labels[rows]

    def ce(s):
        s = s - s.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(y)), y]))

    assert ce(raw + b) <= ce(raw) + 1e-9


def test_none_leaves_the_raw_label_word_scores(task):
    settings = TrialSettings.from_job(task, "lora", methods.get("lora").config({}), steps=1)
    settings.class_bias = "none"
    result, model = run_trial(task, settings, model=load_model(task.model))
    assert result.class_bias is None and class_bias.class_bias_of(model) is None


@pytest.mark.parametrize("name", ["lora", "bitfit"])
def test_saved_and_loaded_with_the_method(task, name, tmp_path):
    config = methods.get(name).config({"learning_rate": 3e-2})
    settings = TrialSettings.from_job(task, name, config, steps=3)
    _, trained = run_trial(task, settings, model=load_model(task.model))
    save_trained(trained, name, config, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["class_bias"] == pytest.approx(class_bias.class_bias_of(trained))
    context = ApplyContext(task.tokenizer, _template_words(task.job.prompt.template))
    loaded = load_trained(load_model(task.model), name, config, tmp_path, context)
    assert class_bias.class_bias_of(loaded) == pytest.approx(manifest["class_bias"])
    assert evaluate(loaded, task)["eval_loss"] == pytest.approx(evaluate(trained, task)["eval_loss"], rel=1e-5)
    # Without the bias the same adapter scores differently: the manifest's value matters.
    manifest.pop("class_bias")
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    bare = load_trained(load_model(task.model), name, config, tmp_path, context)
    assert evaluate(bare, task)["eval_loss"] != pytest.approx(evaluate(trained, task)["eval_loss"], rel=1e-5)


def test_the_fit_is_announced_as_training(task):
    # The run's meter charges a trial's time by its phase: the fit is part of training, not start-up.
    settings = TrialSettings.from_job(task, "lora", methods.get("lora").config({}), steps=1)
    events = []
    run_trial(
        task, settings, model=load_model(task.model),
        on_phase=lambda phase: events.append(phase),
        on_model=lambda m: events.append("model ready, bias fitted" if class_bias.class_bias_of(m) else "model ready"),
    )
    assert events[:2] == ["training", "model ready, bias fitted"]
