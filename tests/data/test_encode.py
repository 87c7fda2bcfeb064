import numpy as np

from budgetft.data.batching import length_grouped_batches, pad_right
from budgetft.spec import validate_job
from budgetft.task import prepare_task
from tests.conftest import write_jsonl


def test_long_rows_lose_passage_words_only(tiny_job_data, tmp_path):
    long_passage = " ".join(["sky"] * 200 + ["alpha"])
    rows = [{"passage": long_passage, "question": "is it there", "label": True}, {"passage": "beta", "question": "is it there", "label": False}]
    tiny_job_data["data"]["files"]["train"] = str(write_jsonl(tmp_path / "long.jsonl", rows))
    tiny_job_data["prompt"]["max_length"] = 24
    task = prepare_task(validate_job(tiny_job_data))
    assert task.stats["train_truncated"] == 1
    long_ids = max(task.train.prompts, key=len)
    text = task.tokenizer.decode(long_ids)
    assert len(long_ids) <= 24 - 1  # room for the one-token label word
    assert text.startswith("passage : sky") and text.endswith(". question : is it there ? answer :")


def test_tokenized_data_is_cached(tiny_job_data):
    job = validate_job(tiny_job_data)
    first = prepare_task(job)
    second = prepare_task(job)
    assert not first.stats["tokenize_cache_hit"] and second.stats["tokenize_cache_hit"]
    assert all(np.array_equal(a, b) for a, b in zip(first.train.prompts, second.train.prompts))
    assert np.array_equal(first.train.labels, second.train.labels)


def test_length_grouping_cuts_padding_and_covers_every_row():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 250, size=4000)
    batches = length_grouped_batches(lengths, 8, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(4000))

    def pad_share(groups):
        total = sum(len(g) * lengths[g].max() for g in groups)
        return 1 - lengths.sum() / total

    random_batches = np.array_split(rng.permutation(4000), 500)
    assert pad_share(batches) < 0.05 < pad_share(random_batches)


def test_pad_right_masks_padding():
    ids, mask = pad_right([np.array([5, 6, 7]), np.array([8])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]



def test_prompt_patterns_leave_the_templates_cache_key_as_it_was():
    """The shipped default job lists prompt.patterns (PET's); its rows' cache entries are keyed
    by the template's own fields, as they were before jobs had patterns: a job's patterns, even
    over a field the template does not read, change no key, for any of its models."""
    from budgetft.data.encode import cache_path
    from budgetft.spec import load_job

    rows = [{"passage": f"passage {i}", "question": f"question {i}", "answer": i % 2 == 0, "title": f"t{i}"} for i in range(20)]
    job = load_job("boolq-smollm2")
    extra = load_job("boolq-smollm2", ['prompt.patterns=["{title} {passage} {question}"]'])
    assert job.prompt.patterns  # the default job has patterns
    for variant, more in zip(job.variants(), extra.variants(), strict=True):
        without = variant.prompt.model_copy(update={"patterns": []})  # as jobs were before patterns
        key = cache_path(rows, without, "answer", 255, "fp")
        assert cache_path(rows, variant.prompt, "answer", 255, "fp") == key
        assert cache_path(rows, more.prompt, "answer", 255, "fp") == key
    # Rows without labels (data.unlabelled_split) have keys of their own.
    assert cache_path(rows, job.prompt, None, 255, "fp") != cache_path(rows, job.prompt, "answer", 255, "fp")
