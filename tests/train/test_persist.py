"""A trained method saved and loaded onto a fresh base model scores exactly as before saving."""

import json

import pytest
import torch

from budgetft import methods
from budgetft.methods import ApplyContext
from budgetft.train.persist import MANIFEST, load_trained, save_trained
from budgetft.models.loading import load_model
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from budgetft.methods.context import template_words as _template_words
from budgetft.train.trial import TrialSettings, run_trial
from budgetft.scoring.rows import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

# Large enough that a few steps move every adapter far from its initialisation, so a load that
# silently kept the fresh initialisation would score differently.
LEARNING_RATES = {"lora": 3e-2, "prompt_tuning": 1e-1, "p_tuning": 1e-2, "prefix_tuning": 3e-2, "ia3": 1e-1, "bitfit": 3e-2, "full": 3e-3}
SMALL = {"p_tuning": {"encoder_hidden_size": 16}}
PERSISTED = ("lora", "prompt_tuning", "p_tuning", "prefix_tuning", "ia3", "bitfit", "full")


@pytest.fixture(scope="module")
def task(tmp_path_factory, tiny_model_dir):
    from tests.conftest import tiny_job_dict

    data = tiny_job_dict(tiny_model_dir, tmp_path_factory.mktemp("persist-data"))
    data["eval"]["limit"] = 24
    return prepare_task(validate_job(data))


@pytest.mark.parametrize("name", PERSISTED)
def test_evaluate_after_load_equals_before_save(task, name, tmp_path):
    method = methods.get(name)
    config = method.config({"learning_rate": LEARNING_RATES[name], **SMALL.get(name, {})})
    settings = TrialSettings.from_job(task, name, config, steps=4)
    settings.eval_every = 4
    _, trained = run_trial(task, settings, model=load_model(task.model))
    before = evaluate(trained, task)

    save_trained(trained, name, config, tmp_path / "adapter")
    manifest = json.loads((tmp_path / "adapter" / MANIFEST).read_text())
    assert manifest["method"] == name and manifest["config"]["learning_rate"] == config["learning_rate"]

    context = ApplyContext(task.tokenizer, _template_words(task.job.prompt.template))
    torch.manual_seed(1234)  # a different seed than training: the loaded weights must win
    loaded = load_trained(load_model(task.model), name, config, tmp_path / "adapter", context)
    after = evaluate(loaded, task)
    assert after["accuracy"] == before["accuracy"]
    assert after["eval_loss"] == pytest.approx(before["eval_loss"], rel=1e-5, abs=1e-6)
    # And the untrained re-application differs, so the check above has teeth.
    torch.manual_seed(1234)
    fresh = evaluate(method.apply(load_model(task.model), config, context), task)
    assert fresh["eval_loss"] != pytest.approx(before["eval_loss"], rel=1e-5, abs=1e-6)


def test_our_methods_save_only_trainable_tensors(task, tmp_path):
    from safetensors.torch import load_file

    model = methods.get("bitfit").apply(load_model(task.model), {"learning_rate": 1e-3}, ApplyContext())
    save_trained(model, "bitfit", {"learning_rate": 1e-3}, tmp_path)
    saved = load_file(str(tmp_path / "trainable.safetensors"))
    assert saved and all(name.endswith(".bias") for name in saved)


def test_loading_under_the_wrong_method_is_refused(task, tmp_path):
    model = methods.get("bitfit").apply(load_model(task.model), {"learning_rate": 1e-3}, ApplyContext())
    save_trained(model, "bitfit", {"learning_rate": 1e-3}, tmp_path)
    with pytest.raises(ValueError, match="holds a 'bitfit' adapter, not 'full'"):
        load_trained(load_model(task.model), "full", {"learning_rate": 1e-3}, tmp_path)
    with pytest.raises(FileNotFoundError, match="no saved method"):
        load_trained(load_model(task.model), "bitfit", {"learning_rate": 1e-3}, tmp_path / "nothing")
