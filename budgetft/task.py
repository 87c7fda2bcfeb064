"""A job's task, ready to train on: checked data, encoded once, and the verbalizer's tokens.

Everything here runs before any model weights are loaded, so bad input is refused early
and costs nothing.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace

from budgetft import methods
from budgetft.data import DataError
from budgetft.data.checks import check_splits, class_token_ids
from budgetft.data.encode import Encoded, cached_encode, tokenizer_fingerprint
from budgetft.data.patterns import attach as attach_patterns, check_fits
from budgetft.data.sources import load_splits
from budgetft.data.unlabelled import UnlabelledRows
from budgetft.methods.phased import check_job, needs_unlabelled, trains_on_patterns
from budgetft.models.loading import ResolvedModel, detect_architecture, load_tokenizer, resolve_model
from budgetft.spec import JobSpec


@dataclass
class Task:
    job: JobSpec
    model: ResolvedModel
    tokenizer: object
    class_names: list[str]
    class_tokens: list[list[int]]
    train: Encoded
    eval: Encoded  # the selection rows: what trials are evaluated on
    eval_rows: list[int]  # their indices in the evaluation split, so every score uses the same rows
    data_origin: str
    stats: dict = field(default_factory=dict)
    test: Encoded | None = None  # the held-out test rows (eval.test_rows), scored once at the end
    test_rows: list[int] = field(default_factory=list)  # their indices in the evaluation split
    # Rows without labels (data.unlabelled_split), apart from the evaluation split, for a method
    # that labels rows itself (iPET), read and encoded when first needed; None where the job
    # names no such split.
    unlabelled_rows: UnlabelledRows | None = None

    @property
    def unlabelled(self) -> Encoded | None:
        """The unlabelled rows encoded (on first use), every pattern to hand; None where there are none."""
        return None if self.unlabelled_rows is None else self.unlabelled_rows.encoded()

    @property
    def unlabelled_count(self) -> int:
        """How many unlabelled rows there are, apart from the evaluation rows (read, not encoded)."""
        return 0 if self.unlabelled_rows is None else len(self.unlabelled_rows)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def majority_class(self) -> int:
        """The most frequent label in the training split (ties: the first class listed)."""
        counts = Counter(self.train.labels.tolist())
        return max(range(len(self.class_names)), key=lambda c: (counts.get(c, 0), -c))


def split_eval_rows(n_rows: int, test_rows: int, limit: int | None, seed: int) -> tuple[list[int], list[int]]:
    """(test, selection) row indices of the evaluation split, disjoint, drawn with the seed: the
    test rows first, so they stay the same rows whatever the selection's size."""
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    test = order[:test_rows]
    rest = order[test_rows:]
    selection = rest if limit is None else rest[:limit]
    return sorted(test), sorted(selection)


def prepare_task(job: JobSpec) -> Task:
    t0 = time.perf_counter()
    splits = load_splits(job.data, job.seed)
    check_splits(splits, job.prompt, job.data.label_field, (job.data.train_split, job.data.eval_split))
    resolved = resolve_model(job.model)
    resolved = replace(resolved, architecture=detect_architecture(resolved, job.model.architecture), num_labels=len(job.prompt.labels))
    listed = {name: methods.check_supports(name, resolved.architecture) for name in job.methods}  # a method that cannot run on this model is refused now, not mid-run
    # Rows without labels: read only for a method that labels rows itself (iPET), and counted
    # once the evaluation rows are dropped from them (what its trials get); encoded when a trial
    # first scores them.
    unlabelled = None if job.data.unlabelled_split is None else UnlabelledRows(job.data, splits.eval, job.prompt, None, 0, "")
    if unlabelled is not None and any(needs_unlabelled(m, job.space_for(name)) for name, m in listed.items()):
        unlabelled.rows()
    has_unlabelled = unlabelled is not None and unlabelled.loaded is not None and len(unlabelled) > 0
    for name, method in listed.items():  # ... and one that trains on prompt patterns (PET) or unlabelled rows (iPET) the job lacks
        check_job(method, job.space_for(name), len(job.prompt.templates), has_unlabelled)
    tokenizer = load_tokenizer(resolved)
    class_tokens = class_token_ids(tokenizer, job.prompt.labels)
    budget = job.prompt.max_length - max(len(t) for t in class_tokens)
    if any(trains_on_patterns(m, job.space_for(name)) for name, m in listed.items()):
        check_fits(job.prompt, tokenizer, budget)  # every pattern's own words fit, before a trial asks for it
    train_rows = splits.train
    if job.train.train_limit is not None and job.train.train_limit < len(train_rows):
        train_rows = random.Random(job.seed).sample(train_rows, job.train.train_limit)
    n_test = job.eval.test_rows if isinstance(job.eval.test_rows, int) else 0  # "auto": the run decides
    if n_test and n_test >= len(splits.eval):
        raise DataError(
            f"eval.test_rows is {n_test} but the {job.data.eval_split!r} split has {len(splits.eval)} rows; "
            "lower eval.test_rows so that some rows are left to select the winner on"
        )
    test_rows, eval_rows = split_eval_rows(len(splits.eval), n_test, job.eval.limit, job.seed)
    fp = tokenizer_fingerprint(tokenizer)
    t1 = time.perf_counter()
    train, hit_train = cached_encode(train_rows, job.prompt, job.data.label_field, tokenizer, budget, fp)
    evaluation, hit_eval = cached_encode([splits.eval[i] for i in eval_rows], job.prompt, job.data.label_field, tokenizer, budget, fp)
    test = cached_encode([splits.eval[i] for i in test_rows], job.prompt, job.data.label_field, tokenizer, budget, fp)[0] if test_rows else None
    # The job's other prompt patterns, encoded when a trial first asks (budgetft.data.patterns).
    for encoded, rows in ((train, train_rows), (evaluation, [splits.eval[i] for i in eval_rows]), (test, [splits.eval[i] for i in test_rows])):
        if encoded is not None:
            attach_patterns(encoded, rows, job.prompt, tokenizer, budget, job.data.label_field, fp)
    if unlabelled is not None:
        unlabelled.tokenizer, unlabelled.budget, unlabelled.fingerprint = tokenizer, budget, fp
    t2 = time.perf_counter()
    stats = {
        "train_rows": len(train),
        "eval_rows": len(evaluation),
        "test_rows": len(test_rows),
        "eval_split_rows": len(splits.eval),
        "train_truncated": train.truncated,
        "eval_truncated": evaluation.truncated,
        "mean_prompt_tokens": float(train.lengths.mean()),
        "tokenize_s": round(t2 - t1, 3),
        "tokenize_cache_hit": hit_train and hit_eval,
        "prepare_s": round(t2 - t0, 3),
    }
    if unlabelled is not None and unlabelled.loaded is not None:  # read for a method of the job
        stats["unlabelled_rows"] = len(unlabelled)
        stats["unlabelled_dropped_as_eval_rows"] = unlabelled.dropped
    return Task(job, resolved, tokenizer, list(job.prompt.labels), class_tokens, train, evaluation, eval_rows, splits.origin, stats, test, test_rows, unlabelled)


def prepare_tasks(job: JobSpec) -> dict[str, Task]:
    """One task per model the job names (JobSpec.variants), by model name, the job's own first.
    They share the data and the split: the same training, selection and test rows."""
    return {variant.model.name: prepare_task(variant) for variant in job.variants()}
