"""Checks that refuse unusable data before any model is loaded, each naming the fix."""

from __future__ import annotations

from collections import Counter

from budgetft.data import DataError
from budgetft.data.sources import Splits
from budgetft.spec import PromptSpec, label_key


def class_lookup(labels: dict[str, str]) -> dict[str, int]:
    """Data label text -> class index. Exact keys first; a case-insensitive match is accepted
    when it is unambiguous (so a CSV's "True" finds the class "true")."""
    lookup = {key: i for i, key in enumerate(labels)}
    lowered = Counter(key.lower() for key in labels)
    for i, key in enumerate(labels):
        if lowered[key.lower()] == 1:
            lookup.setdefault(key.lower(), i)
    return lookup


def class_of(value, lookup: dict[str, int]) -> int | None:
    key = label_key(value)
    return lookup.get(key, lookup.get(key.lower()))


def check_splits(splits: Splits, prompt: PromptSpec, label_field: str, split_names: tuple[str, str]) -> None:
    lookup = class_lookup(prompt.labels)
    for index, (rows, split) in enumerate(zip((splits.train, splits.eval), split_names)):
        if not rows:
            raise DataError(f"the {split!r} split is empty ({splits.origin_of(index)}); give a split with rows")
        needed = [*prompt.fields, label_field]
        for i, row in enumerate(rows):
            missing = [f for f in needed if f not in row or row[f] is None]
            if missing:
                what = "label field" if missing == [label_field] else "field(s)"
                raise DataError(
                    f"{split} row {i} has no {what} {', '.join(map(repr, missing))} "
                    f"(its fields: {', '.join(map(str, row))}); fix prompt.template or data.label_field"
                )
        unknown = Counter(label_key(r[label_field]) for r in rows if class_of(r[label_field], lookup) is None)
        if unknown:
            seen = ", ".join(f"{k!r} ({n} rows)" for k, n in unknown.most_common(5))
            raise DataError(
                f"{split} split has labels not in prompt.labels: {seen}; "
                f"the label map has {', '.join(map(repr, prompt.labels))}: " + _label_fix(set(unknown), set(prompt.labels))
            )
    classes = Counter(class_of(r[label_field], lookup) for r in splits.train)
    if len(classes) < 2:
        only = list(prompt.labels)[next(iter(classes))]
        raise DataError(
            f"the {split_names[0]!r} split has one class only ({only!r}, {len(splits.train)} rows): "
            "a classifier needs rows of two or more classes to learn from"
        )


# What YAML 1.1 (PyYAML) reads as a boolean when a key is left unquoted: `yes:` becomes true.
YAML_BOOLEAN_WORDS = {"yes", "no", "y", "n", "on", "off"}


def _label_fix(unknown: set[str], keys: set[str]) -> str:
    """The fix for data labels the label map lacks: quoting, when YAML turned the job's
    yes/no/on/off keys into true/false."""
    booleans = {k for k in unknown if k.lower() in YAML_BOOLEAN_WORDS}
    if booleans and {k.lower() for k in keys} & {"true", "false"}:
        words = ", ".join(sorted(booleans))
        return (f"YAML reads unquoted {words} as true/false, so the job's label keys became booleans; "
                f"quote them in prompt.labels (e.g. 'yes': ' yes', 'no': ' no')")
    return "add the missing classes or fix the data"


def class_token_ids(tokenizer, labels: dict[str, str]) -> list[list[int]]:
    """Token ids of each class's label word(s), as they follow the prompt."""
    ids = []
    for key, words in labels.items():
        tokens = tokenizer(words, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise DataError(
                f"label word {words!r} for class {key!r} tokenizes to nothing with this model's tokenizer; "
                "choose a word the model knows, e.g. ' yes' / ' no'"
            )
        unk = getattr(tokenizer, "unk_token_id", None)
        if unk is not None and unk in tokens:
            raise DataError(
                f"label word {words!r} for class {key!r} is unknown to this model's tokenizer (it becomes "
                f"{tokenizer.unk_token!r}); choose a word in the model's vocabulary"
            )
        ids.append(list(tokens))
    seen: dict[tuple, str] = {}
    for key, tokens in zip(labels, ids):
        if tuple(tokens) in seen:
            raise DataError(
                f"classes {seen[tuple(tokens)]!r} and {key!r} have label words with the same tokens; "
                "give each class a distinct label word"
            )
        seen[tuple(tokens)] = key
    return ids
