"""Scoring for encoders with a sequence-classification head: the class scores are the head's
log-softmax, one logit per class in the job's label order, instead of the label words'
log-probabilities a decoder's verbalizer reads.

The functions take the same arguments as their budgetft.scoring.verbalizer namesakes (class_tokens and
offset are unused: the head already gives one score per class, and peft's sequence-
classification wrapper consumes soft prompts itself), so the trial can pick one set or the
other by architecture (budgetft.scoring.rows.scoring_of) with no other change.
"""

from __future__ import annotations

import numpy as np

from budgetft.data.batching import pad_right

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def class_scores(model, prompts: list[np.ndarray], class_tokens: list[list[int]], pad_id: int, offset: int = 0):
    """(rows, classes) tensor of log-probabilities from the classification head."""
    import torch

    device = next(model.parameters()).device
    input_ids, attention_mask = pad_right(prompts, pad_id)
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
    if logits.shape[-1] != len(class_tokens):
        raise ValueError(
            f"the classification head has {logits.shape[-1]} outputs but the job has {len(class_tokens)} classes; "
            "load the model with num_labels equal to the number of classes"
        )
    return torch.log_softmax(logits.float(), dim=-1)


def class_cross_entropy(model, prompts: list[np.ndarray], labels: list[int], class_tokens: list[list[int]], pad_id: int, offset: int = 0):
    """Summed cross-entropy of the head's prediction, and the number of rows."""
    import torch

    scores = class_scores(model, prompts, class_tokens, pad_id, offset)
    target = torch.as_tensor(labels, device=scores.device)
    return torch.nn.functional.nll_loss(scores, target, reduction="sum"), len(labels)


def label_word_nll(model, prompts: list[np.ndarray], labels: list[int], class_tokens: list[list[int]], pad_id: int, offset: int = 0):
    """An encoder has no label words: its "lm" loss is the head's cross-entropy, per row."""
    return class_cross_entropy(model, prompts, labels, class_tokens, pad_id, offset)
