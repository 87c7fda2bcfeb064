"""PET and iPET (budgetft.methods.pet, ipet): one LoRA adapter per prompt pattern, each trained on
its own pattern's encoding of the rows, scored by the mean over patterns of each class's score;
iPET's later generations train on rows the previous generation's ensemble labelled, never rows
of the evaluation split. On the tiny random decoder of tests/conftest.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from budgetft import methods, trial
from budgetft.methods import DECODER, ENCODER, MethodUnsupported, ensemble
from budgetft.methods.context import context_for
from budgetft.methods.persist import load_trained, save_trained
from budgetft.scoring import class_bias
from budgetft.scoring.rows import evaluate, score_rows
from budgetft.spec import JobError, validate_job
from budgetft.task import prepare_task
from budgetft.trial import TrialSettings, run_trial
from tests.conftest import make_rows, tiny_job_dict, write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

# Two more wordings of the tiny job's template, over the same fields.
PATTERNS = ["question : {question} ? passage : {passage} . answer :", "{passage} . is it there ? {question} ?"]
UNLABELLED_ROWS = 48
SHARED_WITH_EVAL = 5  # unlabelled rows that are also validation rows: dropped


def _job(model_dir, tmp_path, **changes) -> dict:
    data = tiny_job_dict(model_dir, tmp_path)
    data["eval"]["limit"] = 16
    data["train"]["train_limit"] = 64
    data["prompt"]["patterns"] = list(PATTERNS)
    valid = [json.loads(line) for line in (tmp_path / "valid.jsonl").read_text().splitlines()]
    unlabelled = [{k: v for k, v in r.items() if k != "label"} for r in make_rows(UNLABELLED_ROWS, seed=3)]
    unlabelled += [{k: v for k, v in r.items() if k != "label"} for r in valid[:SHARED_WITH_EVAL]]
    data["data"]["files"]["unlabelled"] = str(write_jsonl(tmp_path / "unlabelled.jsonl", unlabelled))
    data["data"]["unlabelled_split"] = "unlabelled"
    for key, value in changes.items():
        section, name = key.split("__")
        data[section][name] = value
    return data


@pytest.fixture(scope="module")
def task(tiny_model_dir, tmp_path_factory):
    return prepare_task(validate_job(_job(tiny_model_dir, tmp_path_factory.mktemp("pet"))))


_BASE: dict = {}


def _load(task):
    import copy

    from budgetft.models.loading import load_model

    if "base" not in _BASE:
        _BASE["base"] = load_model(task.model)
    return copy.deepcopy(_BASE["base"])


def _ensemble(task, method="pet", seed=0, **overrides):
    """An untrained ensemble whose adapters differ (their LoRA B drawn at random, not zero)."""
    m = methods.get(method)
    config = m.config({"r": 2, **overrides})
    model = m.apply(_load(task), config, context_for(task.job, task.tokenizer))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return model.eval(), config


def _settings(task, method, steps, **overrides):
    m = methods.get(method)
    settings = TrialSettings.from_job(task, method, m.config({"r": 2, "learning_rate": 1e-2, **overrides}), steps=steps)
    settings.eval_steps = [steps]
    return settings


# --- the ensemble ---------------------------------------------------------------------------

def test_ensemble_scores_are_the_mean_of_each_patterns_class_log_probabilities(task):
    """score_rows of an ensemble = mean over members of (label word's log-probability after the
    row under the member's pattern, with the member's adapter, + the member's class bias),
    computed here one row at a time from the model's raw logits."""
    model, _ = _ensemble(task)
    assert ensemble.members(model) == [("pattern0", 0), ("pattern1", 1), ("pattern2", 2)]
    biases = {"pattern0": [0.3, -0.3], "pattern1": [-0.2, 0.2], "pattern2": [0.1, -0.1]}
    ensemble.restore(model, [{"adapter": a, "pattern": p, "class_bias": biases[a]} for a, p in ensemble.members(model)])
    class_bias.attach(model, biases["pattern2"])  # the live (last) member's, as persist attaches it
    rows = np.arange(6)

    by_hand = []
    with torch.no_grad():
        for adapter, pattern in ensemble.members(model):
            model.set_adapter(adapter)
            encoded = task.eval.patterns.get(pattern)
            member = []
            for i in rows:
                ids = torch.as_tensor(encoded.prompts[i]).long()[None]
                logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
                member.append([logp[words[0]].item() + b for words, b in zip(task.class_tokens, biases[adapter])])
            by_hand.append(member)
    model.set_adapter("pattern2")
    expected = np.mean(by_hand, axis=0)

    scored = score_rows(model, task, task.eval, rows)
    np.testing.assert_allclose(scored, expected, rtol=1e-5, atol=1e-5)
    # The members disagree (the test would prove nothing otherwise).
    assert np.ptp(np.array(by_hand)[:, :, 0], axis=0).max() > 1e-3
    # Scoring left the live member as it was: its adapter, its bias object.
    assert model.active_adapter == "pattern2" and class_bias.class_bias_of(model) == pytest.approx(biases["pattern2"])


def test_rows_of_one_pattern_are_scored_by_the_member_that_is_training(task):
    """A phase's training rows (one pattern's encoding, no other patterns to hand) are scored by
    the model as it stands: the class-bias fit of a new member reads its own prior."""
    model, _ = _ensemble(task)
    from budgetft.scoring.verbalizer import class_scores

    view = task.train.patterns.get(2)
    assert view.patterns is None
    with torch.no_grad():
        alone = class_scores(model, [view.prompts[i] for i in range(4)], task.class_tokens, task.pad_id).numpy()
    np.testing.assert_allclose(score_rows(model, task, view, np.arange(4)), alone, rtol=1e-5, atol=1e-6)


# --- training ---------------------------------------------------------------------------------

def test_each_patterns_adapter_trains_on_its_own_encoding(task, monkeypatch):
    """9 steps, 3 patterns: steps 1-3 train adapter pattern0 on the template's encoding of the
    rows, 4-6 pattern1 on pattern 1's, 7-9 pattern2 on pattern 2's; only that adapter (and its
    class bias) trains, each member gets its own class bias fitted on its own encoding."""
    seen = []
    real = trial._accumulate

    def spy(model, rows_task, idx, *args, **kwargs):
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        seen.append((model.active_adapter, [tuple(rows_task.train.prompts[i]) for i in idx], list(idx), trainable))
        return real(model, rows_task, idx, *args, **kwargs)

    monkeypatch.setattr(trial, "_accumulate", spy)
    settings = _settings(task, "pet", 9)
    result, model = run_trial(task, settings, model=_load(task))

    assert [a for a, *_ in seen] == ["pattern0"] * 3 + ["pattern1"] * 3 + ["pattern2"] * 3
    for adapter, prompts, idx, trainable in seen:
        pattern = int(adapter[-1])
        own = task.train.patterns.get(pattern)
        assert prompts == [tuple(own.prompts[i]) for i in idx]  # row i under the member's own pattern
        if pattern:
            assert prompts != [tuple(task.train.prompts[i]) for i in idx]
        adapters = {n for n in trainable if n != class_bias.ATTRIBUTE}
        assert adapters and all(f".{adapter}." in n for n in adapters)
        assert class_bias.ATTRIBUTE in trainable
    described = ensemble.describe(model)
    assert [d["adapter"] for d in described] == ["pattern0", "pattern1", "pattern2"]
    assert len({tuple(d["class_bias"]) for d in described}) == 3  # fitted per member
    # Evaluated by the ensemble of all three; trainable parameters: the three adapters.
    assert result.final["step"] == 9
    assert result.trainable_params == methods.get("pet").count_params(_load(task), {"r": 2})[0]


# --- refusals -----------------------------------------------------------------------------------

def test_pet_with_fewer_patterns_than_it_trains_on_is_refused_before_anything_is_spent(tiny_model_dir, tmp_path, monkeypatch):
    data = _job(tiny_model_dir, tmp_path)
    data["prompt"].pop("patterns")
    data["methods"] = {"pet": {}}
    with pytest.raises(MethodUnsupported, match=r"trains on 3 prompt patterns and the job has 1.*prompt\.patterns"):
        prepare_task(validate_job(data))  # a run is refused before it tokenizes a row

    data["methods"] = {"lora": {}}
    plain = prepare_task(validate_job(data))
    from budgetft.models import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    steps = []
    with pytest.raises(MethodUnsupported, match="add 2 more to prompt.patterns"):
        run_trial(plain, _settings(plain, "pet", 4), on_step=steps.append)
    assert steps == []
    with pytest.raises(ValueError, match="two or more prompt patterns"):
        methods.get("pet").phases(methods.get("pet").config({"patterns": 1}))


@pytest.mark.parametrize("name", ["pet", "ipet"])
def test_pet_is_refused_on_encoders_up_front(name):
    with pytest.raises(MethodUnsupported) as err:
        methods.check_supports(name, ENCODER)
    message = str(err.value)
    assert f"'{name}'" in message and "encoder" in message and "classification head" in message
    assert methods.get(name).supports(DECODER)


def test_patterns_are_checked_like_the_template(tiny_model_dir, tmp_path):
    data = _job(tiny_model_dir, tmp_path)
    data["prompt"]["patterns"] = ["question : {question} ? answer :"]  # no passage to shorten
    with pytest.raises(JobError, match=r"truncate_field 'passage' is not in prompt\.patterns\[0\]"):
        validate_job(data)
    data["prompt"]["patterns"] = [data["prompt"]["template"]]
    with pytest.raises(JobError, match="repeats an earlier pattern"):
        validate_job(data)
    data["prompt"]["patterns"] = ["{passage} {colour} ?"]  # a field the rows lack
    from budgetft.data import DataError

    with pytest.raises(DataError, match="'colour'"):
        prepare_task(validate_job(data))
    assert validate_job(_job(tiny_model_dir, tmp_path)).prompt.fields == ["passage", "question"]


# --- iPET -----------------------------------------------------------------------------------

def test_unlabelled_rows_never_include_evaluation_rows(task, tiny_model_dir, tmp_path):
    """Rows of the unlabelled split that are also validation rows are dropped; the evaluation
    split cannot be named as the unlabelled split."""
    assert len(task.unlabelled) == UNLABELLED_ROWS and task.stats["unlabelled_dropped_as_eval_rows"] == SHARED_WITH_EVAL
    evaluation = {tuple(p) for p in task.eval.prompts} | {tuple(p) for p in (task.test.prompts if task.test else [])}
    assert not evaluation & {tuple(p) for p in task.unlabelled.prompts}
    data = _job(tiny_model_dir, tmp_path)
    data["data"]["unlabelled_split"] = "validation"
    with pytest.raises(JobError, match="is the evaluation split"):
        validate_job(data)


def test_ipet_without_unlabelled_rows_is_refused_up_front(tiny_model_dir, tmp_path):
    data = _job(tiny_model_dir, tmp_path)
    data["data"].pop("unlabelled_split")
    data["methods"] = {"ipet": {}}
    with pytest.raises(MethodUnsupported, match="set data.unlabelled_split"):
        prepare_task(validate_job(data))
    data["methods"] = {"pet": {}}  # PET reads no unlabelled rows
    assert prepare_task(validate_job(data)).unlabelled is None


def test_pseudo_labels_are_the_ensembles_predictions(task):
    """The rows added are unlabelled rows, labelled with the argmax of the ensemble's mean
    scores, in the training rows' class proportions, under every pattern alike."""
    from budgetft.scoring.pseudo_labels import pseudo_labelled

    model, _ = _ensemble(task, seed=1)
    grown, info = pseudo_labelled(model, task, factor=0.5, seed=7)
    n = len(task.train)
    added = len(grown.train) - n
    assert added == info["added"] == 32 and info["scored"] == 48
    pool = {tuple(p): i for i, p in enumerate(task.unlabelled.prompts)}
    picked = np.array([pool[tuple(p)] for p in grown.train.prompts[n:]])  # each added row is an unlabelled row
    scores = score_rows(model, task, task.unlabelled, picked)
    np.testing.assert_array_equal(grown.train.labels[n:], scores.argmax(axis=1))
    assert not {tuple(p) for p in task.eval.prompts} & {tuple(p) for p in grown.train.prompts[n:]}
    for k in range(3):  # the same rows, the same labels, under each pattern
        view = grown.train.patterns.get(k)
        assert [tuple(p) for p in view.prompts[n:]] == [tuple(task.unlabelled.patterns.get(k).prompts[i]) for i in picked]
        np.testing.assert_array_equal(view.labels, grown.train.labels)


def test_pseudo_labelled_rows_are_the_most_confident_in_the_training_rows_class_proportions():
    from budgetft.scoring.pseudo_labels import choose

    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]])
    rows, labels = choose(probs, 4, np.array([1.0, 1.0]))
    assert rows.tolist() == [0, 1, 3, 5] and labels.tolist() == [0, 0, 1, 1]
    rows, labels = choose(probs, 4, np.array([3.0, 1.0]))
    assert rows.tolist() == [0, 1, 2, 5] and labels.tolist() == [0, 0, 0, 1]
    # Too few rows of a class: its quota goes to the most confident rows left.
    rows, labels = choose(probs, 4, np.array([0.0, 1.0]))
    assert rows.tolist() == [0, 3, 4, 5] and labels.tolist() == [0, 1, 1, 1]


def test_ipet_trains_its_next_generation_on_rows_its_first_generation_labelled(task, monkeypatch):
    from budgetft.scoring import pseudo_labels

    calls = []
    real = pseudo_labels.pseudo_labelled

    def spy(model, rows_task, factor, seed, *args, **kwargs):
        calls.append((ensemble.members(model), factor))
        out = real(model, rows_task, factor, seed, *args, **kwargs)
        calls.append(len(out[0].train))
        return out

    monkeypatch.setattr(pseudo_labels, "pseudo_labelled", spy)
    trained_on = []
    real_accumulate = trial._accumulate

    def accumulate(model, rows_task, idx, *args, **kwargs):
        trained_on.append((model.active_adapter, len(rows_task.train), int(max(idx))))
        return real_accumulate(model, rows_task, idx, *args, **kwargs)

    monkeypatch.setattr(trial, "_accumulate", accumulate)
    result, model = run_trial(task, _settings(task, "ipet", 12), model=_load(task))
    # Labelled once, by the whole first generation, with growth 5: 4x the training rows asked for.
    assert calls[0] == ([("pattern0", 0), ("pattern1", 1), ("pattern2", 2)], 4.0)
    grown = calls[1]
    assert grown == len(task.train) + UNLABELLED_ROWS  # all the unlabelled rows there are
    second = [t for t in trained_on if t[0].startswith("gen1_")]
    assert [t[0] for t in second] == ["gen1_pattern0"] * 2 + ["gen1_pattern1"] * 2 + ["gen1_pattern2"] * 2
    assert all(size == grown for _, size, _ in second)
    assert all(size == len(task.train) for a, size, _ in trained_on if not a.startswith("gen1_"))
    # The ensemble is the last generation's.
    assert [a for a, _ in ensemble.members(model)] == ["gen1_pattern0", "gen1_pattern1", "gen1_pattern2"]
    assert set(model.peft_config) == {"gen1_pattern0", "gen1_pattern1", "gen1_pattern2"}
    assert result.trainable_params == methods.get("ipet").count_params(_load(task), {"r": 2})[0]


# --- saving, loading, predicting ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["pet", "ipet"])
def test_save_and_load_give_identical_ensemble_scores(task, tmp_path, name):
    """With the class bias fitted (each member its own), at the end and in the middle of the
    trial: weights kept at an evaluation in the second pattern's phase (of iPET's second
    generation), a two-member ensemble. 2 steps a phase."""
    steps, middle = (6, 4) if name == "pet" else (12, 9)
    settings = _settings(task, name, steps)
    settings.eval_steps, settings.class_bias = [middle, steps], "fit"
    kept = {}

    def on_eval(step, metrics):
        if step == middle:  # what a run's worker does at a trial's best evaluation
            kept["members"] = ensemble.members(kept["model"])
            kept["scores"] = score_rows(kept["model"], task, task.eval)
            save_trained(kept["model"], name, settings.config, tmp_path / "middle")

    result, model = run_trial(task, settings, model=_load(task), on_eval=on_eval, on_model=lambda m: kept.update(model=m))
    assert len(kept["members"]) == 2
    final = score_rows(model, task, task.eval)
    save_trained(model, name, settings.config, tmp_path / "end")
    context = context_for(task.job, task.tokenizer)
    for folder, scores in (("end", final), ("middle", kept["scores"])):
        torch.manual_seed(4321)  # not the training seed: the loaded weights must decide
        loaded = load_trained(_load(task), name, settings.config, tmp_path / folder, context)
        np.testing.assert_allclose(score_rows(loaded, task, task.eval), scores, rtol=1e-5, atol=1e-6)
    assert len(ensemble.members(loaded)) == 2
    assert evaluate(model, task)["accuracy"] == result.final["accuracy"]


def test_predict_and_the_held_out_test_score_with_the_ensemble(task, tiny_model_dir, tmp_path):
    """`budgetft predict` encodes its rows under every pattern (ScoringTask.encode), and the test
    stage's rows carry theirs, so both score as evaluation does."""
    from budgetft.stages.baselines import task_on
    from budgetft.use import bridge
    from budgetft.use.scoring_task import scoring_task

    model, _ = _ensemble(task, seed=2)
    scoring = scoring_task(task.job)
    data = _job(tiny_model_dir, tmp_path, eval__test_rows=8)
    tested = prepare_task(validate_job(data))
    on_test = task_on(tested, tested.test, tested.test_rows)
    assert len(on_test.eval.patterns) == 3
    valid = [json.loads(line) for line in (tmp_path / "valid.jsonl").read_text().splitlines()]
    encoded = scoring.encode([valid[i] for i in tested.test_rows])
    assert len(encoded.patterns) == 3
    np.testing.assert_allclose(bridge.score_rows(model, scoring, encoded, np.arange(len(encoded)), 4),
                               score_rows(model, on_test, on_test.eval), rtol=1e-5, atol=1e-6)


def test_export_refuses_an_ensemble_and_says_why():
    from types import SimpleNamespace

    from budgetft.use import UseError
    from budgetft.use.export import format_for

    for name in ("pet", "ipet"):
        chosen = SimpleNamespace(manifest={"layout": "tensors"}, method=name, run_dir="run", trial_id="t001")
        with pytest.raises(UseError, match="ensemble of several LoRA adapters.*budgetft predict"):
            format_for(chosen, merge=False)


def test_an_ensemble_is_priced_and_calibrated_as_what_it_runs(task):
    """An evaluation scores each row once per member (the planner prices it so); calibration
    measures PET's identical LoRA phases once."""
    from budgetft.methods.phased import scoring_passes
    from budgetft.tune.measure import calibrate_method

    assert scoring_passes(methods.get("pet"), methods.get("pet").config()) == 3
    assert scoring_passes(methods.get("ipet"), methods.get("ipet").config({"generations": 3})) == 3
    assert scoring_passes(methods.get("lora"), methods.get("lora").config()) == 1
    measured = calibrate_method(task, "pet", steps=1)
    assert [p["method"] for p in measured["phases"]] == ["lora"] * 3 and measured["steps"] == 2
    assert len({p["seconds_per_step"] for p in measured["phases"]}) == 1
