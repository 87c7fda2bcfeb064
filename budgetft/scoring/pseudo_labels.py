"""Pseudo-labels for self-training (iPET: budgetft.methods.ipet): rows of the job's unlabelled split
(Task.unlabelled, never evaluation rows: budgetft.data.unlabelled) labelled by the model as it
stands, for the next generation to train on beside the labelled rows.

The model is the last generation's ensemble, so a row's label is the class with the highest mean
score over its patterns (budgetft.scoring.rows.score_rows). How many rows: `factor` times the
trial's training rows (iPET's d^g - 1, so generation g trains on d^g times the labelled rows),
at most what the split holds. Which: per class, the rows the ensemble is most confident about
(highest probability of its label), in the training rows' class proportions, so a generation
that leans to one class does not hand the next a set of that class alone. iPET (Schick &
Schütze, 2021) instead samples rows with probability in proportion to that confidence, labelled
by a random quarter of the other patterns' models; ours labels with the whole ensemble.

Scoring the whole split would cost one forward pass per row and pattern (3,245 BoolQ rows x 3
patterns: ~25 minutes on 2 CPU cores), so a seeded sample of OVERSAMPLE rows per row kept is
scored: enough choice for the confidence and the class quotas, at a known cost. The rows kept are
at most 1/OVERSAMPLE of the split, so that the most confident are always chosen from OVERSAMPLE
times as many (a split smaller than that would otherwise be kept whole, whatever the confidence).

How many labelled rows a generation grows from: all of the training rows when its members' steps
draw at least (1 + factor) times as many rows each; otherwise `examples / (1 + factor)` of them (a
seeded sample), where `examples` is what one member's steps draw. The generation then trains on a
pool of about `examples` rows, in the paper's proportions (generation g: d^g times its labelled
rows), so each labelled row, and each row the ensemble labelled, is trained on about once. Sized
on the whole training split instead, a short trial paid to label rows its steps never reached:
iPET on BoolQ's 9,427 training rows scored 3,245 unlabelled rows by 3 members (~1,326 s on 2 CPU
cores) whatever its steps, so no budget under ~$0.40 at $1/h could buy an iPET trial at all.

The scoring is paid for as it goes, like every other piece of a trial's work: in chunks of rows
(about an evaluation's: rows x members as one evaluation of the selection rows), each started
only once `before_chunk` says it is paid for (budgetft.train.loop asks may_continue("evaluation")); a
refusal leaves no rows labelled and the trial stops.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from budgetft.data.patterns import joined, subset
from budgetft.scoring.rows import score_rows

OVERSAMPLE = 2  # rows scored per row kept


def labelled_base(factor: float, labelled: int, examples: int | None = None) -> int:
    """The labelled rows a generation grows from: all `labelled`, or where one member's steps draw
    only `examples` rows, examples / (1 + factor) of them (see the module's docstring)."""
    if examples is None:
        return labelled
    return max(0, min(labelled, int(examples // (1 + factor))))


def how_many(factor: float, labelled: int, available: int, examples: int | None = None) -> int:
    """Rows to add: `factor` times the labelled rows the generation grows from (labelled_base), at
    most 1/OVERSAMPLE of the `available` unlabelled rows (each kept row is chosen from OVERSAMPLE
    scored)."""
    return max(0, min(available // OVERSAMPLE, int(round(factor * labelled_base(factor, labelled, examples)))))


def rows_scored(factor: float, labelled: int, available: int, examples: int | None = None) -> int:
    """Unlabelled rows scored (by every member of the ensemble) to add how_many rows."""
    return min(available, OVERSAMPLE * how_many(factor, labelled, available, examples))


def sample_rows(factor: float, labelled: int, available: int, seed: int, examples: int | None = None) -> np.ndarray:
    """Which of the `available` unlabelled rows are scored (sorted): rows_scored of them, seeded."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(available, size=rows_scored(factor, labelled, available, examples), replace=False))


def chunks(sample: np.ndarray, size: int) -> list[np.ndarray]:
    """`sample` in consecutive chunks of `size` rows (the last may be shorter)."""
    size = max(1, int(size))
    return [sample[i : i + size] for i in range(0, len(sample), size)]


def quotas(n: int, prior: np.ndarray) -> np.ndarray:
    """n rows shared between the classes in proportion to `prior` (largest remainders)."""
    exact = n * prior / prior.sum()
    out = np.floor(exact).astype(int)
    for c in np.argsort(-(exact - out), kind="stable")[: n - out.sum()]:
        out[c] += 1
    return out


def choose(probs: np.ndarray, n: int, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels): n rows of `probs` (rows, classes) and their most probable class, each
    class's quota filled with its most confident rows first; a class with too few rows leaves its
    quota to the most confident rows left, whatever their class."""
    labels = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    picked: list[int] = []
    for c, quota in enumerate(quotas(n, prior)):
        picked += [int(i) for i in order if labels[i] == c][:quota]
    taken = set(picked)
    picked += [int(i) for i in order if i not in taken][: n - len(picked)]
    rows = np.asarray(sorted(picked), dtype=np.int64)
    return rows, labels[rows]


def pseudo_labelled(model: Any, task: Any, factor: float, seed: int, batch_size: int = 16, precision: Any = None,
                    chunk_rows: int | None = None, before_chunk: Callable[[int, int], bool] | None = None,
                    examples: int | None = None) -> tuple[Any, dict]:
    """The task with its training rows (or, where one member's steps draw only `examples` rows, a
    seeded sample of labelled_base of them) followed by `factor` times as many unlabelled rows (at
    most 1/OVERSAMPLE of them), labelled by `model` (every pattern's encoding to hand, as for the
    training rows), and what was done: labelled rows kept, rows scored and added, and the added
    rows' classes. The rows are scored `chunk_rows` at a time (default: as many rows as the task's
    evaluation), each chunk only once before_chunk(chunk index, chunks) says yes; (None, what was
    done) when it says no."""
    available = task.unlabelled_count
    n = how_many(factor, len(task.train), available, examples)
    if n == 0:
        return task, {"labelled": len(task.train), "scored": 0, "added": 0, "classes": {}}
    base = labelled_base(factor, len(task.train), examples)
    sample = sample_rows(factor, len(task.train), available, seed, examples)
    parts = chunks(sample, chunk_rows or len(task.eval))
    scores = []
    for k, part in enumerate(parts):
        if before_chunk is not None and not before_chunk(k, len(parts)):
            return None, {"scored": int(sum(len(p) for p in parts[:k])), "added": 0, "classes": {}, "refused_at_chunk": k, "chunks": len(parts)}
        pool = task.unlabelled  # encoded (or read from the tokenization cache) once the first chunk is paid for
        scores.append(score_rows(model, task, pool, part, batch_size, precision))
    scores = np.concatenate(scores)
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    prior = np.bincount(task.train.labels, minlength=len(task.class_names)).astype(float)
    rows, labels = choose(probs, n, prior)
    kept = task.train
    if base < len(task.train):  # a different seed stream from the unlabelled sample's
        kept = subset(task.train, np.sort(np.random.default_rng([seed, 1]).choice(len(task.train), size=base, replace=False)))
    info = {"labelled": int(base), "scored": int(len(sample)), "added": int(len(rows)), "chunks": len(parts),
            "classes": {name: int((labels == c).sum()) for c, name in enumerate(task.class_names)}}
    return replace(task, train=joined(kept, pool, sample[rows], labels)), info
