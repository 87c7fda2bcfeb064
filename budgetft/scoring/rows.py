"""Scoring rows with a model: every class's score for each row, and the metrics of a split.

One loop serves evaluation, the baselines and the class-bias fit: longest batch first, eval
mode, no gradients, under the device's precision. A decoder's rows are scored by its label
words' log-probabilities (budgetft.scoring.verbalizer), an encoder's by its classification head
(budgetft.scoring.head); both modules have the same functions with the same arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from budgetft.data.batching import sorted_batches
from budgetft.metrics import classification_metrics
from budgetft.models.architecture import ENCODER, architecture_of
from budgetft.scoring import ensemble, head, verbalizer
from budgetft.telemetry.precision import autocast, precision_for

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def virtual_token_offset(model: Any) -> int:
    """How many soft-prompt positions peft prepends to the logits (0 for prefix tuning, whose
    virtual tokens live in the key/value cache, and for every non-prompt method)."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not getattr(config, "is_prompt_learning", False):
        return 0
    if str(config.peft_type).endswith("PREFIX_TUNING"):
        return 0
    return int(config.num_virtual_tokens)


def scoring_of(model):
    """The scoring functions for a model's architecture."""
    return head if architecture_of(model) == ENCODER else verbalizer


def score_rows(model, task, encoded, rows: np.ndarray | None = None, batch_size: int = 16, precision=None,
               live_member: bool = False) -> np.ndarray:
    """(rows, classes) class scores of `encoded`'s rows (all, or those at `rows`), longest batch
    first, with the model in eval mode, no gradients, under `precision` (default: its device's).

    An ensemble of adapters (budgetft.scoring.ensemble: PET's one per prompt pattern) scores
    rows that come with every pattern's encoding (Encoded.patterns) as the mean over its members
    of each class's score, each member on its own pattern's encoding of the rows. With
    `live_member` the model scores as the member that is training, alone, on its own pattern's
    encoding (the class-bias fit of a new member: its own prior); `encoded` is then that
    pattern's encoding, or comes with every pattern's. Rows of one pattern only are refused for
    an ensemble of two or more members otherwise: they cannot be scored by the whole ensemble."""
    members = ensemble.members(model)
    patterns = getattr(encoded, "patterns", None)
    if members and live_member:
        if patterns is not None:
            encoded = patterns.get(members[-1][1])
        return _score_rows(model, task, encoded, rows, batch_size, precision)
    if len(members) > 1 and patterns is None:
        raise ValueError(
            f"an ensemble of {len(members)} adapters scores a row under each member's prompt pattern, and these rows come "
            "with one encoding only (Encoded.patterns is None): encode them under every pattern (budgetft.data.patterns.attach)"
        )
    if members and patterns is not None:
        total = 0.0
        for adapter, pattern in members:
            with ensemble.acting(model, adapter):
                total = total + _score_rows(model, task, patterns.get(pattern), rows, batch_size, precision)
        return total / len(members)
    return _score_rows(model, task, encoded, rows, batch_size, precision)


def _score_rows(model, task, encoded, rows: np.ndarray | None = None, batch_size: int = 16, precision=None) -> np.ndarray:
    import torch

    rows = np.arange(len(encoded)) if rows is None else np.asarray(rows)
    precision = precision or precision_for(next(model.parameters()).device)
    offset = virtual_token_offset(model)
    scoring = scoring_of(model)
    scores = np.zeros((len(rows), len(task.class_tokens)))
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(precision):
        for idx in sorted_batches(encoded.lengths[rows], batch_size):
            prompts = [encoded.prompts[i] for i in rows[idx]]
            scores[idx] = scoring.class_scores(model, prompts, task.class_tokens, task.pad_id, offset).float().cpu().numpy()
    model.train(was_training)
    return scores


def metrics_of(scores: np.ndarray, task, labels: np.ndarray, gold_len: np.ndarray) -> dict:
    """Accuracy and friends from class scores, with eval_loss the trial's own objective."""
    gold = scores[np.arange(len(labels)), labels]
    top = scores.max(axis=1)
    class_ce = top + np.log(np.exp(scores - top[:, None]).sum(axis=1)) - gold
    metrics = classification_metrics(labels, scores.argmax(axis=1), task.class_names)
    metrics["label_word_nll"] = float((-gold / gold_len).mean())
    metrics["eval_loss"] = float(class_ce.mean()) if task.job.train.loss == "classes" else metrics["label_word_nll"]
    return metrics


def evaluate(model, task, batch_size: int = 16) -> dict:
    """Verbalizer accuracy and friends on the task's evaluation rows.

    eval_loss is the trial's own objective on these rows (nats), so it falls when training
    works: for the "classes" loss the cross-entropy over the classes' scores per row, for "lm"
    the gold label words' NLL per token over the whole vocabulary. The latter is always kept
    as label_word_nll; under the "classes" loss it may rise while the decision improves, since
    nothing asks the label words to take mass from the rest of the vocabulary."""
    scores = score_rows(model, task, task.eval, batch_size=batch_size)
    labels = task.eval.labels
    # Label-word NLL is per label token; an encoder's head scores a class in one go.
    gold_len = np.array([1 if scoring_of(model) is head else len(task.class_tokens[y]) for y in labels])
    return metrics_of(scores, task, labels, gold_len)
