"""Label-word log-probabilities: the training loss and the verbalizer's class scores.

Every prediction is a valid class: a class's score is the summed log-probability of its label
word(s) right after the prompt, and the prediction is the class with the highest score.
Nothing is generated or parsed.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from budgetft.data.batching import pad_right

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

# The attribute (a torch Parameter of shape [classes]) holding a per-class bias that is added to
# the label-word scores: fitted before training (budgetft.scoring.class_bias) and trained with
# the method.
BIAS_ATTRIBUTE = "budgetft_class_bias"


@functools.lru_cache(maxsize=None)
def _accepts_logits_to_keep(model_cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


def _base_model(model):
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def next_token_logprobs(model, seqs: list[np.ndarray], rows: list[int], positions: list[int], pad_id: int, offset: int = 0):
    """Log-softmax of the next-token distribution after seqs[rows[k]][:positions[k]+1], for each k.

    offset: positions peft prepends to the logits (soft prompts). Only the needed positions go
    through the output head: with a 49k vocabulary that head is ~20% of a small model's FLOPs.
    """
    import torch

    device = next(model.parameters()).device
    input_ids, attention_mask = pad_right(seqs, pad_id)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    rows_t = torch.as_tensor(rows, device=device)
    pos_t = torch.as_tensor(positions, device=device) + offset
    if _accepts_logits_to_keep(type(_base_model(model))):
        keep = torch.unique(pos_t)  # sorted
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits
        picked = logits[rows_t, torch.searchsorted(keep, pos_t)]
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        picked = logits[rows_t, pos_t]
    return torch.log_softmax(picked.float(), dim=-1)


def label_word_nll(model, prompts: list[np.ndarray], labels: list[int], class_tokens: list[list[int]], pad_id: int, offset: int = 0):
    """Summed negative log-likelihood of each row's gold label word(s) given its prompt, and the
    number of label tokens. Loss on the label word only: the prompt is context, not a target."""
    seqs, rows, positions, targets = [], [], [], []
    for i, (prompt, y) in enumerate(zip(prompts, labels)):
        words = class_tokens[y]
        seqs.append(np.concatenate([prompt, np.asarray(words, dtype=prompt.dtype)]))
        for j, token in enumerate(words):
            rows.append(i)
            positions.append(len(prompt) + j - 1)  # the logit at t predicts token t+1
            targets.append(token)
    import torch

    logprobs = next_token_logprobs(model, seqs, rows, positions, pad_id, offset)
    picked = logprobs.gather(1, torch.as_tensor(targets, device=logprobs.device)[:, None]).squeeze(1)
    return -picked.sum(), len(targets)


def class_scores(model, prompts: list[np.ndarray], class_tokens: list[list[int]], pad_id: int, offset: int = 0):
    """(rows, classes) tensor of summed label-word log-probabilities, plus the model's fitted
    per-class bias if it has one (budgetft.scoring.class_bias)."""
    scores = _label_word_scores(model, prompts, class_tokens, pad_id, offset)
    bias = getattr(model, BIAS_ATTRIBUTE, None)
    return scores if bias is None else scores + bias.to(scores.dtype)


def _label_word_scores(model, prompts: list[np.ndarray], class_tokens: list[list[int]], pad_id: int, offset: int = 0):
    import torch

    if all(len(words) == 1 for words in class_tokens):
        # One forward pass: every class is read off the same next-token distribution.
        logprobs = next_token_logprobs(
            model, prompts, list(range(len(prompts))), [len(p) - 1 for p in prompts], pad_id, offset
        )
        return logprobs[:, [words[0] for words in class_tokens]]
    # Multi-token label words: score prompt + each class's words, sum over its tokens.
    seqs, rows, positions, targets, owner = [], [], [], [], []
    for prompt in prompts:
        for words in class_tokens:
            owner_row = len(seqs)
            seqs.append(np.concatenate([prompt, np.asarray(words, dtype=prompt.dtype)]))
            for j, token in enumerate(words):
                rows.append(owner_row)
                positions.append(len(prompt) + j - 1)
                targets.append(token)
                owner.append(owner_row)
    logprobs = next_token_logprobs(model, seqs, rows, positions, pad_id, offset)
    picked = logprobs.gather(1, torch.as_tensor(targets, device=logprobs.device)[:, None]).squeeze(1)
    totals = torch.zeros(len(seqs), device=picked.device).index_add_(0, torch.as_tensor(owner, device=picked.device), picked)
    return totals.view(len(prompts), len(class_tokens))


def class_cross_entropy(model, prompts: list[np.ndarray], labels: list[int], class_tokens: list[list[int]], pad_id: int, offset: int = 0):
    """Summed cross-entropy over the classes' verbalizer scores, and the number of rows.

    Still a loss on the label words only, but relative to the other classes' words rather than
    to the whole vocabulary: every step works on the decision the verbalizer makes, instead of
    first moving probability mass from unrelated tokens onto the label words."""
    import torch

    scores = class_scores(model, prompts, class_tokens, pad_id, offset)
    target = torch.as_tensor(labels, device=scores.device)
    return torch.nn.functional.cross_entropy(scores, target, reduction="sum"), len(labels)
