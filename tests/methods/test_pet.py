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

from budgetft import methods
from budgetft.train import steps
from budgetft.methods import DECODER, ENCODER, MethodUnsupported
from budgetft.scoring import ensemble
from budgetft.methods.context import context_for
from budgetft.train.persist import load_trained, save_trained
from budgetft.scoring import class_bias
from budgetft.scoring.rows import evaluate, score_rows
from budgetft.spec import JobError, validate_job
from budgetft.task import prepare_task
from budgetft.train.trial import TrialSettings, run_trial
from tests.conftest import make_rows, tiny_job_dict, write_jsonl

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("pet")]  # its module fixtures are built once, on one test worker

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
    # iPET listed: the job's unlabelled rows are read (and counted) when the task is prepared.
    return prepare_task(validate_job(_job(tiny_model_dir, tmp_path_factory.mktemp("pet"), **{"methods__ipet": {}})))


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


def test_rows_of_one_pattern_are_scored_by_the_member_that_is_training_only_when_asked(task):
    """A phase's training rows (one pattern's encoding, no other patterns to hand) are scored by
    the member that is training, alone, when the caller says so (the class-bias fit of a new
    member reads its own prior); otherwise an ensemble of several members refuses them rather
    than score them silently with one member."""
    model, _ = _ensemble(task)
    from budgetft.scoring.verbalizer import class_scores

    view = task.train.patterns.get(2)
    assert view.patterns is None
    with torch.no_grad():
        alone = class_scores(model, [view.prompts[i] for i in range(4)], task.class_tokens, task.pad_id).numpy()
    np.testing.assert_allclose(score_rows(model, task, view, np.arange(4), live_member=True), alone, rtol=1e-5, atol=1e-6)
    # Rows that come with every pattern: the live member reads its own pattern's encoding.
    np.testing.assert_allclose(score_rows(model, task, task.train, np.arange(4), live_member=True), alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ensemble of 3 adapters.*one encoding only"):
        score_rows(model, task, view, np.arange(4))


# --- training ---------------------------------------------------------------------------------

def test_each_patterns_adapter_trains_on_its_own_encoding(task, monkeypatch):
    """9 steps, 3 patterns: steps 1-3 train adapter pattern0 on the template's encoding of the
    rows, 4-6 pattern1 on pattern 1's, 7-9 pattern2 on pattern 2's; only that adapter (and its
    class bias) trains, each member gets its own class bias fitted on its own encoding."""
    seen = []
    real = steps.accumulate

    def spy(model, rows_task, idx, *args, **kwargs):
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        seen.append((model.active_adapter, [tuple(rows_task.train.prompts[i]) for i in idx], list(idx), trainable))
        return real(model, rows_task, idx, *args, **kwargs)

    monkeypatch.setattr(steps, "accumulate", spy)
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
    # 0.5 x 64 training rows asked for, at most half the 48 unlabelled rows kept: 24 of 48 scored.
    assert added == info["added"] == 24 and info["scored"] == 48
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
    real_accumulate = steps.accumulate

    def accumulate(model, rows_task, idx, *args, **kwargs):
        trained_on.append((model.active_adapter, len(rows_task.train), int(max(idx))))
        return real_accumulate(model, rows_task, idx, *args, **kwargs)

    monkeypatch.setattr(steps, "accumulate", accumulate)
    result, model = run_trial(task, _settings(task, "ipet", 12), model=_load(task))
    # Labelled once, by the whole first generation, with growth 5: 4x the training rows asked for.
    assert calls[0] == ([("pattern0", 0), ("pattern1", 1), ("pattern2", 2)], 4.0)
    grown = calls[1]
    # Each member of generation 1 draws 2 steps x 8 rows = 16 rows: it grows from 16 // 5 = 3
    # labelled rows, with 4 x 3 = 12 labelled by the ensemble (24 scored), not 4 x the 64.
    assert grown == 3 + 12 and result.pseudo_labels[0]["labelled"] == 3 and result.pseudo_labels[0]["scored"] == 24
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
    from budgetft.train.measure import calibrate_method

    assert scoring_passes(methods.get("pet"), methods.get("pet").config()) == 3
    assert scoring_passes(methods.get("ipet"), methods.get("ipet").config({"generations": 3})) == 3
    assert scoring_passes(methods.get("lora"), methods.get("lora").config()) == 1
    measured = calibrate_method(task, "pet", steps=1)
    assert [p["method"] for p in measured["phases"]] == ["lora"] * 3 and measured["steps"] == 2
    assert len({p["seconds_per_step"] for p in measured["phases"]}) == 1


# --- paying for iPET's labelling and the members' class-bias fits ------------------------------

def _recorded_ipet(task, monkeypatch, refuse=None):
    """An iPET trial of 12 steps (2 a phase; generation 1 from step 7), with every ask of
    may_continue, every phase it announces and every scoring call on the unlabelled rows recorded.
    refuse(kind, events so far) -> True refuses that ask."""
    from budgetft.scoring import pseudo_labels as labelling

    events, scored = [], []
    real = labelling.score_rows

    def spy(model, rows_task, encoded, rows=None, *args, **kwargs):
        if encoded is task.unlabelled:
            scored.append(len(rows))
        return real(model, rows_task, encoded, rows, *args, **kwargs)

    monkeypatch.setattr(labelling, "score_rows", spy)

    def may_continue(kind):
        events.append(("ask", kind))
        return not (refuse and refuse(kind, events))

    settings = _settings(task, "ipet", 12)
    # 40 rows a step: each member of generation 1 draws 80 rows, enough to ask for more than half
    # the 48 unlabelled rows (16 labelled x 4), so 24 are kept of the 48 scored.
    settings.batch_size = 40
    result, model = run_trial(task, settings, model=_load(task), may_continue=may_continue,
                              on_phase=lambda phase: events.append(("phase", phase)), on_step=lambda log: events.append(("step", log.step)))
    return result, model, events, scored


def test_ipet_labelling_is_paid_for_chunk_by_chunk_as_evaluations_are(task, monkeypatch):
    """Generation 1's rows are scored in chunks no larger than the evaluation (16 rows here: 48
    rows scored, three chunks), each started only after may_continue("evaluation") said yes, and
    the first member of generation 1 asks before its class bias is fitted, as every later member
    does."""
    result, _, events, scored = _recorded_ipet(task, monkeypatch)
    assert scored == [16, 16, 16] and len(task.eval) == 16
    between = events[events.index(("step", 6)) + 1 : events.index(("step", 7))]
    labelling = [("ask", "evaluation"), ("phase", "labelling")] * 3 + [("phase", "training")]
    refit = [("ask", "evaluation"), ("phase", "training")]
    assert between == labelling + refit + [("ask", "step")]
    # Generation 0's later members ask before their fits too (between steps 2 and 3, 4 and 5).
    assert events[events.index(("step", 2)) + 1 : events.index(("step", 3))] == refit + [("ask", "step")]
    assert result.steps == 12 and result.stop_reason == ""
    assert result.pseudo_labels[0]["scored"] == 48 and result.pseudo_labels[0]["chunks"] == 3


def test_ipet_labelling_refused_mid_way_stops_the_trial_cleanly(task, monkeypatch):
    """The money ends before the second chunk: no more rows are scored, generation 1 never
    trains, the trial ends with a stop reason and its first generation's ensemble."""
    def refuse(kind, events):
        labelling_asks = sum(1 for i, e in enumerate(events) if e == ("ask", "evaluation") and ("step", 6) in events[:i])
        return kind == "evaluation" and labelling_asks == 2

    result, model, events, scored = _recorded_ipet(task, monkeypatch, refuse)
    assert scored == [16]
    assert result.steps == 6 and "labelling rows for generation 1 (part 2 of 3): not paid for" in result.stop_reason
    assert [a for a, _ in ensemble.members(model)] == ["pattern0", "pattern1", "pattern2"]
    assert result.pseudo_labels[0]["refused_at_chunk"] == 1


def test_a_members_class_bias_fit_refused_stops_the_trial_before_the_member_joins(task, monkeypatch):
    def refuse(kind, events):
        return kind == "evaluation" and ("step", 2) in events

    result, model, events, _ = _recorded_ipet(task, monkeypatch, refuse)
    assert result.steps == 2 and "stopped before phase 2 (pattern1) after step 2: fitting its class bias is not paid for" in result.stop_reason
    assert ("step", 3) not in events
    # Asked before the member joined: the model is the ensemble of the members that trained.
    assert ensemble.members(model) == [("pattern0", 0)] and class_bias.class_bias_of(model) is not None


def test_at_most_half_the_unlabelled_rows_are_kept():
    """Each row kept is the more confident of two scored: a split no larger than twice the rows
    asked for is not simply kept whole."""
    from budgetft.scoring.pseudo_labels import how_many, rows_scored

    assert how_many(4.0, 64, 48) == 24 and rows_scored(4.0, 64, 48) == 48
    assert how_many(0.25, 64, 1000) == 16 and rows_scored(0.25, 64, 1000) == 32
    assert how_many(4.0, 64, 1) == 0 and rows_scored(4.0, 64, 1) == 0


def test_a_generation_labels_only_the_rows_its_members_steps_can_train_on():
    """A member drawing `examples` rows grows from examples / (1 + factor) labelled rows, with
    factor times as many labelled by the ensemble: a pool of about `examples` rows in the paper's
    proportions; a long trial grows from every training row, as before."""
    from budgetft.scoring.pseudo_labels import how_many, labelled_base, rows_scored

    assert labelled_base(4.0, 9427, 400) == 80 and how_many(4.0, 9427, 3245, 400) == 320 and rows_scored(4.0, 9427, 3245, 400) == 640
    assert labelled_base(4.0, 9427, None) == 9427 and how_many(4.0, 9427, 3245) == 1622  # half the split
    assert labelled_base(4.0, 64, 10_000) == 64 and labelled_base(4.0, 64, 4) == 0 and how_many(4.0, 64, 48, 4) == 0


def test_pseudo_labelled_with_few_examples_keeps_a_sample_of_the_labelled_rows_under_every_pattern(task):
    from budgetft.scoring.pseudo_labels import pseudo_labelled

    model, _ = _ensemble(task, seed=1)
    grown, info = pseudo_labelled(model, task, factor=1.0, seed=7, examples=20)
    assert info["labelled"] == 10 and info["added"] == 10 and info["scored"] == 20 and len(grown.train) == 20
    train = {tuple(p): i for i, p in enumerate(task.train.prompts)}
    kept = [train[tuple(p)] for p in grown.train.prompts[:10]]  # the first ten are training rows, labels and all
    np.testing.assert_array_equal(grown.train.labels[:10], task.train.labels[kept])
    for k in range(3):
        view = grown.train.patterns.get(k)
        assert [tuple(p) for p in view.prompts[:10]] == [tuple(task.train.patterns.get(k).prompts[i]) for i in kept]
        np.testing.assert_array_equal(view.labels, grown.train.labels)
    again, _ = pseudo_labelled(model, task, factor=1.0, seed=7, examples=20)
    assert [tuple(p) for p in again.train.prompts] == [tuple(p) for p in grown.train.prompts]  # seeded


# --- the job's checks ----------------------------------------------------------------------------

def test_check_job_leaves_methods_without_phases_alone_and_reads_ranges():
    """A list of mixed types in another method's space is no business of the pattern check; the
    fewest patterns or generations a range or choice allows is what is checked."""
    from budgetft.methods.phased import check_job

    check_job(methods.get("lora"), {"r": [4, "eight"], "learning_rate": {"loguniform": [1e-4, 1e-3]}}, 1, False)
    pet, ipet = methods.get("pet"), methods.get("ipet")
    check_job(pet, {"patterns": {"randint": [2, 5]}}, 2, False)  # two patterns: enough for the fewest
    check_job(pet, {"patterns": {"choice": [4, 2]}}, 2, False)
    check_job(pet, {"patterns": [2, "many"]}, 2, False)
    with pytest.raises(MethodUnsupported, match="trains on 3 prompt patterns"):
        check_job(pet, {"patterns": {"randint": [3, 5]}}, 2, False)
    check_job(ipet, {"generations": {"choice": [1, 2]}}, 3, False)  # one generation labels nothing
    with pytest.raises(MethodUnsupported, match="unlabelled_split=test works with the embedded, offline copy only.*google/boolq has no test split"):
        check_job(ipet, {"generations": {"randint": [2, 3]}}, 3, False)


def test_a_job_whose_unlabelled_rows_are_all_evaluation_rows_is_refused_up_front(tiny_model_dir, tmp_path):
    """The job-level check counts the rows a trial would get, after the evaluation rows are dropped."""
    data = _job(tiny_model_dir, tmp_path)
    valid = [json.loads(line) for line in (tmp_path / "valid.jsonl").read_text().splitlines()]
    only_eval = [{"passage": "  " + r["passage"].upper() + " ", "question": r["question"]} for r in valid[:10]]
    data["data"]["files"]["unlabelled"] = str(write_jsonl(tmp_path / "unlabelled.jsonl", only_eval))
    data["methods"] = {"ipet": {}}
    with pytest.raises(MethodUnsupported, match="set data.unlabelled_split"):
        prepare_task(validate_job(data))


def test_unlabelled_rows_apart_from_evaluation_rows_up_to_case_and_whitespace():
    from budgetft.data.unlabelled import apart_from

    evaluation = [{"passage": "The Sky is blue", "question": "is it there"}]
    rows = [{"passage": "  the sky  IS blue\n", "question": "Is it there "}, {"passage": "the sea", "question": "is it there"}]
    assert apart_from(rows, evaluation, ["passage", "question"]) == [rows[1]]


def test_unlabelled_rows_are_read_only_for_a_method_that_labels_rows_and_encoded_when_first_scored(tiny_model_dir, tmp_path, monkeypatch):
    from budgetft.data import encode, sources
    from budgetft.data import unlabelled as unlabelled_module

    data = _job(tiny_model_dir, tmp_path)
    data["methods"] = {"lora": {}, "pet": {}}
    real_load = sources.load_unlabelled
    monkeypatch.setattr(sources, "load_unlabelled", lambda spec: pytest.fail("the unlabelled split was read"))
    plain = prepare_task(validate_job(data))
    assert "unlabelled_rows" not in plain.stats
    monkeypatch.setattr(sources, "load_unlabelled", real_load)

    encodes = []
    real_encode = encode.cached_encode

    def spy(rows, prompt, label_field, *args):
        out = real_encode(rows, prompt, label_field, *args)
        if label_field is None:
            encodes.append(out[1])  # cache hit?
        return out

    monkeypatch.setattr(unlabelled_module, "cached_encode", spy)
    data["methods"] = {"ipet": {}}
    task = prepare_task(validate_job(data))
    assert task.stats["unlabelled_rows"] == UNLABELLED_ROWS and task.unlabelled_count == UNLABELLED_ROWS
    assert encodes == []  # counted, not tokenized
    assert len(task.unlabelled) == UNLABELLED_ROWS and (task.unlabelled.labels == -1).all()
    assert encodes == [False]
    again = prepare_task(validate_job(data))
    np.testing.assert_array_equal(np.concatenate(again.unlabelled.prompts), np.concatenate(task.unlabelled.prompts))
    assert encodes == [False, True]  # the second task read them from the tokenization cache


def test_a_pattern_too_long_for_max_length_is_refused_when_the_job_is_prepared(tiny_model_dir, tmp_path):
    from budgetft.data import DataError

    data = _job(tiny_model_dir, tmp_path)
    data["prompt"]["patterns"] = [PATTERNS[0], "{passage} " + "the sky is very blue . " * 15 + "{question} ?"]
    data["methods"] = {"pet": {}}
    with pytest.raises(DataError, match=r"prompt\.patterns\[1\] has \d+ tokens of its own.*max_length=64"):
        prepare_task(validate_job(data))
    data["methods"] = {"lora": {}}  # a job that never trains on the patterns is not refused for them
    prepare_task(validate_job(data))


def test_a_pet_or_ipet_trial_is_priced_with_its_members_fits_and_its_labelling(task):
    """Beyond its steps and evaluations, an iPET trial pays each later member's class-bias fit
    (FIT_ROWS rows) and each later generation's labelling (the rows scored, by every member of
    the generation before); PET the fits; other methods nothing."""
    from budgetft.planner.inputs import phases_seconds, plan_inputs
    from budgetft.scoring.class_bias import FIT_ROWS

    per_row = 0.01
    ipet = phases_seconds(task, "ipet", per_row)  # 2 generations of 3 patterns; 48 rows scored by 3 members
    assert ipet == pytest.approx((6 - 1) * FIT_ROWS * per_row + 48 * 3 * per_row)
    # A trial of 12 steps: generation 1's first member draws 2 x 8 rows, so 3 labelled, 12 asked, 24 scored.
    assert phases_seconds(task, "ipet", per_row, steps=12) == pytest.approx((6 - 1) * FIT_ROWS * per_row + 24 * 3 * per_row)
    assert phases_seconds(task, "ipet", per_row, steps=0) == pytest.approx((6 - 1) * FIT_ROWS * per_row)
    assert phases_seconds(task, "pet", per_row) == pytest.approx(2 * FIT_ROWS * per_row)
    assert phases_seconds(task, "lora", per_row) == 0.0 and phases_seconds(task, "mezo_lst", per_row) == 0.0
    job = task.job.model_copy(update={"methods": {"lora": {}, "pet": {}, "ipet": {}}})
    calibration = {"eval_rows_per_s": 1 / per_row,
                   "methods": {m: {"seconds_per_step": 1.0, "examples_per_s": 8.0} for m in ("lora", "pet", "ipet")}}
    rates = plan_inputs({job.model.name: task}, job, calibration=calibration).rates
    # The plan prices iPET's labelling per step: 2 x 4/5 rows scored per row a generation-1
    # member draws (8 a step, in a sixth of the steps), by 3 members: 8 x 8/5 / 6 x 3 rows a step.
    labelling = 8 * 2 * 4 / 5 / 6 * 3 * per_row
    assert rates["ipet"].labelling_seconds_per_step == pytest.approx(labelling)
    assert rates["ipet"].seconds_per_step == pytest.approx(1.0 + labelling) and rates["pet"].seconds_per_step == 1.0
    assert rates["ipet"].trial_seconds == pytest.approx((6 - 1) * FIT_ROWS * per_row) and rates["lora"].trial_seconds == 0.0
    # Linear in the steps, never below what a trial of those steps pays.
    for steps in (12, 60, 240):
        assert steps * labelling >= phases_seconds(task, "ipet", per_row, steps) - (6 - 1) * FIT_ROWS * per_row - 1e-9
