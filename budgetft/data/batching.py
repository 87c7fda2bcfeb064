"""Length-grouped batches and dynamic padding: rows of similar length share a batch, so
little compute goes to padding, while batch order stays random."""

from __future__ import annotations

import numpy as np

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

# Rows are sorted by length within windows of this many batches, then the batches shuffled.
GROUP_WINDOW = 64


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(lengths))
    window = batch_size * GROUP_WINDOW
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """For evaluation: longest first, so a memory problem shows up on the first batch."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_right(seqs: list[np.ndarray], pad_id: int):
    """Right padding: a causal model's positions then match the unpadded sequence."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask
