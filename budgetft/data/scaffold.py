"""`budgetft init`: a job proposed from a data file, written so that `budgetft plan` takes it as is.

From the file's profile (budgetft.data.profile) it proposes:
- the label field and its classes, with their counts;
- a label word per class for a decoder to be scored by (" yes"/" no" for true/false, the class's
  own name for words, " negative"/" positive" for 0/1 in sentiment data, letters or digits
  otherwise), each checked with the model's tokenizer: it must be known to it, and no two
  classes may share tokens;
- a template over the text fields, the longest first (it is the one shortened when a row does
  not fit), each on its own line, ending in a cue for the answer ("Answer:" for yes/no, the label
  field's name, "Sentiment:", ...);
- a prompt length that fits 95% of the rows whole;
- splits: a split column (train / validation / test) is honoured, rows without a label are kept
  apart (for methods that label rows themselves, iPET), and both become JSONL files beside the
  job; a file with neither is held out by the job itself (data.eval_fraction, seeded);
- the embedded default's models and methods (budgetft's own default job: SmolLM2-135M-Instruct
  scored by label words, and the all-MiniLM-L6-v2 encoder fully fine-tuned), or the methods
  that suit --model.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from budgetft.data import DataError
from budgetft.data.profile import EVAL_SPLITS, TRAIN_SPLITS, DataProfile, check_usable, find_label
from budgetft.files import write_text

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
# The embedded default's second model and its recipe (jobs/boolq-smollm2.yaml): a small encoder
# steps and scores several times faster than the decoder on a CPU, and the plan chooses.
DEFAULT_OPTIONS = [{"name": "sentence-transformers/all-MiniLM-L6-v2",
                    "methods": {"full": {"learning_rate": {"loguniform": [2.5e-5, 1.0e-4]}, "train_embeddings": False}}}]
# Each method with its own default search space (budgetft.methods): what a new job compares.
METHODS = {"decoder": ("lora", "ia3", "prompt_tuning", "bitfit"), "encoder": ("full", "lora", "bitfit")}
SENTIMENT_HINTS = ("sentiment", "imdb", "review", "sst", "polarity", "yelp", "rating")
SENTIMENT_WORDS = {2: (" negative", " positive"), 3: (" negative", " neutral", " positive")}
GENERIC_LABELS = ("label", "labels", "target", "class", "y", "gold")
GENERIC_STEMS = ("combined", "data", "dataset", "train", "sample", "all", "full", "rows")
LENGTH_ROWS = 400  # rows tokenized to size the prompt (seeded sample)
MIN_LENGTH, MAX_LENGTH = 64, 512  # tokens: a prompt shorter is cut needlessly often; longer is slow on a CPU
SELECTION_ROWS = 200  # the embedded default's eval.limit: rows trials are compared on


@dataclass
class Proposal:
    name: str
    label: str
    classes: list[tuple[str, int, str]]  # (class as the data writes it, rows, label word)
    text_fields: list[str]
    job: dict
    split_files: dict[str, list[dict]] = field(default_factory=dict)  # split -> its rows, to write as JSONL
    notes: list[str] = field(default_factory=list)


def propose(profile: DataProfile, out: Path, label: str | None = None, model: str | None = None,
            tokenize: Callable[[str], list[int]] | None = None, architecture: str = "decoder") -> Proposal:
    """The job for `profile`'s file, to be written at `out`. `tokenize`: the model's tokenizer
    (text -> token ids, None for an unknown word), to check label words and size prompts."""
    label = find_label(profile, label)
    texts, counts = check_usable(profile, label)
    notes: list[str] = []
    renames = {t: identifier(t) for t in texts if not t.isidentifier()}
    if renames:  # a template names fields as {name}: the rows are written again with names it can hold
        notes.append("fields renamed for the template: " + ", ".join(f"{a!r} -> {b!r}" for a, b in renames.items()))
        profile = DataProfile(profile.path, [{renames.get(k, k): v for k, v in r.items()} for r in profile.rows], profile.fields)
        texts = [renames.get(t, t) for t in texts]
    classes = _ordered(counts)
    words = label_words(classes, _sentiment(profile, label, texts), tokenize)
    template, truncate = template_for(profile, texts, label, classes, _sentiment(profile, label, texts))
    name = job_name(profile.path)
    data, split_files, eval_rows = _splits(profile, label, out, notes, copy=bool(renames))
    majority, rows = max(counts.values()), sum(counts.values())
    notes.append(f"{rows:,} labelled rows in {len(classes)} classes; the majority class ({max(counts, key=counts.get)!r}) holds "
                 f"{100 * majority / rows:.0f}%: every run proves its winner against always answering it")
    few = [c for c in classes if counts[c] < 2]
    if few:
        notes.append(f"class(es) {', '.join(map(repr, few))} have a single row: training and evaluation cannot both see them")
    job = {
        "name": name,
        "description": f"{label} from {', '.join(texts)} in {profile.path.name} (proposed by budgetft init)",
        "model": {"name": model or DEFAULT_MODEL},
        **({"models": DEFAULT_OPTIONS} if model is None else {}),
        "data": data,
        "prompt": {"template": template, "labels": dict(zip(classes, words)), "truncate_field": truncate,
                   "max_length": prompt_length(profile, template, words, tokenize)},
        "train": {"batch_size": 8, "max_steps": 2000, "eval_every": 50},
        "eval": {"test_rows": "auto", "limit": SELECTION_ROWS if eval_rows >= 3 * SELECTION_ROWS else max(10, eval_rows // 3), "batch_size": 8},
        "methods": {m: {} for m in METHODS.get(architecture, METHODS["decoder"])},
        "seed": 0,
    }
    return Proposal(name, label, [(c, counts[c], w) for c, w in zip(classes, words)], texts, job, split_files, notes)


def write(proposal: Proposal, out: Path) -> list[Path]:
    """The split files, then the job (whose header says what init found); the paths written."""
    written = []
    for split, rows in proposal.split_files.items():
        path = split_path(out, split)
        write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
        written.append(path)
    header = [f"# {proposal.name}: proposed by `budgetft init` from the data; edit freely, then `budgetft plan {out}`.",
              f"# label field {proposal.label!r}: " + ", ".join(f"{c!r} ({n:,} rows) -> {w!r}" for c, n, w in proposal.classes),
              *(f"# {note}" for note in proposal.notes)]
    body = yaml.dump(proposal.job, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    written.append(write_text(out, "\n".join(header) + "\n" + body))
    return written


# -- the pieces


def label_words(classes: list[str], sentiment: bool, tokenize: Callable[[str], list[int] | None] | None) -> list[str]:
    """A word per class that the tokenizer knows, no two alike in tokens (DataError if none)."""
    ladder = [_first_words(classes, sentiment)]
    if len(classes) == 2:
        ladder += [[" yes", " no"], [" true", " false"]]
    ladder += [[f" {chr(ord('A') + i)}" for i in range(len(classes))]] if len(classes) <= 26 else []
    ladder += [[f" {i}" for i in range(len(classes))]]
    for words in ladder:
        if len(set(words)) == len(words) and (tokenize is None or _distinct_tokens(words, tokenize)):
            return words
    raise DataError(f"no label words this model's tokenizer tells apart for classes {', '.join(map(repr, classes))}; "
                    "write prompt.labels by hand (class: ' word'), or choose another --model")


def template_for(profile: DataProfile, texts: list[str], label: str, classes: list[str], sentiment: bool) -> tuple[str, str]:
    """(the template, the field shortened when a row does not fit: the longest)."""
    lines = []
    for name in texts:
        slot = "{" + name + "}"
        if name.lower() == "question" and _share(profile, name, lambda v: str(v).rstrip().endswith("?")) < 0.3:
            slot += "?"  # BoolQ's questions carry no question mark
        lines.append(f"{_title(name)}: {slot}")
    if _boolean(classes):  # a yes/no question, whatever the field is called ("is_correct")
        cue = "Answer:"
    elif label.lower() not in GENERIC_LABELS:
        cue = f"{_title(label)}:"
    else:
        cue = "Sentiment:" if sentiment else "Category:"
    return "\n".join([*lines, cue]), texts[0]


def prompt_length(profile: DataProfile, template: str, words: list[str], tokenize: Callable[[str], list[int] | None] | None) -> int:
    """Tokens that hold 95% of the rows' prompts whole, with the longest label word; 256 when no
    tokenizer is at hand."""
    if tokenize is None:
        return 256
    rows = profile.rows if len(profile.rows) <= LENGTH_ROWS else random.Random(0).sample(profile.rows, LENGTH_ROWS)
    lengths = sorted(len(tokenize(_render(template, r)) or []) for r in rows)
    longest_word = max(len(tokenize(w) or []) for w in words)
    p95 = lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)] + longest_word + 2  # + special tokens
    return int(min(MAX_LENGTH, max(MIN_LENGTH, 32 * math.ceil(p95 / 32))))


def job_name(path: Path) -> str:
    stem = path.stem.lower()
    if stem in GENERIC_STEMS and path.parent.name:
        stem = f"{path.parent.name.lower()}-{stem}"
    return re.sub(r"[^a-z0-9]+", "-", stem).strip("-") or "job"


def split_path(out: Path, split: str) -> Path:
    return out.with_name(f"{out.stem}.{split}.jsonl")


def for_job(path: Path) -> str:
    """A path as the job names it: relative to this directory when under it (jobs run from
    here), else absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _splits(profile: DataProfile, label: str, out: Path, notes: list[str], copy: bool = False) -> tuple[dict, dict[str, list[dict]], int]:
    """(data section, split files to write, rows in the evaluation split). `copy`: the rows
    must be written again (renamed fields) even where the file could be read as it is."""
    labelled = [r for r in profile.rows if r.get(label) not in (None, "")]
    unlabelled = [r for r in profile.rows if r.get(label) in (None, "")]
    files: dict[str, list[dict]] = {}
    split = profile.split_field()
    data: dict = {"name": for_job(profile.path), "label_field": label}
    if split is not None:
        train = [r for r in labelled if str(r.get(split)).lower() in TRAIN_SPLITS]
        evaluation = [r for r in labelled if str(r.get(split)).lower() in EVAL_SPLITS]
        if train and evaluation:
            files = {"train": train, "validation": evaluation}
            notes.append(f"the {split!r} column splits the rows: {len(train):,} train, {len(evaluation):,} for evaluation "
                         "(budgetft holds its own test rows out of them)")
        else:
            split = None
    if split is None and (unlabelled or copy):
        files = {"train": labelled}
    if unlabelled:
        files["unlabelled"] = unlabelled
        notes.append(f"{len(unlabelled):,} rows have no {label!r}: kept apart (data.unlabelled_split), for methods that label rows themselves (ipet)")
    if files:
        data["files"] = {name: for_job(split_path(out, name)) for name in files}
        if "unlabelled" in files:
            data["unlabelled_split"] = "unlabelled"
    if "validation" in files:
        return data, files, len(files["validation"])
    fraction = 0.2 if len(labelled) >= 1000 else 0.3  # a small file keeps more rows to test on
    data["eval_fraction"] = fraction
    notes.append(f"no split in the file: {fraction:.0%} of the labelled rows are held out for evaluation (seeded)")
    return data, files, round(len(labelled) * fraction)


def _ordered(counts: Counter) -> list[str]:
    """Classes as a reader expects them: true before false, numbers ascending, words A-Z."""
    classes = list(counts)
    if _boolean(classes):
        return sorted(classes, key=lambda c: c.lower() not in ("true", "yes"))
    try:
        return sorted(classes, key=float)
    except ValueError:
        return sorted(classes, key=str.lower)


def _first_words(classes: list[str], sentiment: bool) -> list[str]:
    if _boolean(classes):
        return [" yes" if c.lower() in ("true", "yes") else " no" for c in classes]
    numeric = all(re.fullmatch(r"-?\d+", c) for c in classes)
    if numeric and sentiment and len(classes) in SENTIMENT_WORDS:
        return list(SENTIMENT_WORDS[len(classes)])
    if numeric:
        return [f" {c}" for c in classes]
    return [" " + re.sub(r"[_\-]+", " ", c).strip().lower() for c in classes]


def _distinct_tokens(words: list[str], tokenize: Callable[[str], list[int] | None]) -> bool:
    seen = set()
    for word in words:
        tokens = tokenize(word)
        if not tokens or tuple(tokens) in seen:
            return False
        seen.add(tuple(tokens))
    return True


def _boolean(classes: list[str]) -> bool:
    lowered = {c.lower() for c in classes}
    return lowered in ({"true", "false"}, {"yes", "no"})


def _sentiment(profile: DataProfile, label: str, texts: list[str]) -> bool:
    words = " ".join([str(profile.path).lower(), label.lower(), *(t.lower() for t in texts)])
    return any(hint in words for hint in SENTIMENT_HINTS)


def _share(profile: DataProfile, name: str, test: Callable[[object], bool]) -> float:
    values = [r[name] for r in profile.rows[:2000] if r.get(name) not in (None, "")]
    return sum(1 for v in values if test(v)) / len(values) if values else 0.0


def _title(name: str) -> str:
    text = re.sub(r"[_\-]+", " ", name).strip()
    return text[:1].upper() + text[1:]


class _Dumper(yaml.SafeDumper):
    """YAML as people write it: a template over several lines as a literal block."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


class _Row(dict):
    def __missing__(self, key: str) -> str:  # a row without the field renders it empty
        return ""


def _render(template: str, row: dict) -> str:
    return template.format_map(_Row({k: "" if v is None else v for k, v in row.items()}))


def identifier(name: str) -> str:
    """A field name a template can hold: {review_text} for "review text"."""
    text = re.sub(r"\W+", "_", name).strip("_") or "field"
    return f"f_{text}" if text[0].isdigit() else text
