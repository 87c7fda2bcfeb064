"""`budgetft init DATA`: a job file proposed from a data file, that `budgetft plan` takes as is."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from budgetft.cli.common import cli_errors, stderr_console

# Imported inside functions: budgetft's domain code: `budgetft --help` loads none of it (start-up
# time).


def init(
    data: Path = typer.Argument(..., metavar="DATA", help="A JSONL, JSON, CSV or Parquet file with one example a row.", show_default=False),
    model: Optional[str] = typer.Option(None, "--model", help="The model to fine-tune: a hub id, a local folder or an embedded model (default: the embedded default, SmolLM2-135M-Instruct, with all-MiniLM-L6-v2 as a second option)."),
    label: Optional[str] = typer.Option(None, "--label", help="The field that holds the labels (default: found from the fields' names and values)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The job file to write (default: <job name>.yaml in this directory); split files, when needed, go beside it."),
    force: bool = typer.Option(False, "--force", help="Overwrite the job file and its split files if they exist."),
) -> None:
    """Propose a job from a data file: label field, classes, label words, template, splits."""
    from budgetft.data.profile import check_usable, find_label, profile_file
    from budgetft.data.scaffold import DEFAULT_MODEL, job_name, propose, split_path, write

    err = stderr_console()
    with cli_errors(err):
        with err.status(f"reading {data}…"):
            profile = profile_file(data)
            label = find_label(profile, label)
            check_usable(profile, label)  # a file that cannot train a classifier is refused before any model loads
        out = out or Path(f"{job_name(data)}.yaml")
        with err.status("loading the model's tokenizer…"):
            tokenize, tokenizer, architecture = _tokenizer(model or DEFAULT_MODEL)
        proposal = propose(profile, out, label=label, model=model, tokenize=tokenize, architecture=architecture)
        targets = [out, *(split_path(out, split) for split in proposal.split_files)]
        taken = [str(p) for p in targets if p.exists()]
        if taken and not force:
            err.print(f"[bold red]error:[/] {escape(', '.join(taken))} already exist{'s' if len(taken) == 1 else ''}; give another --out, or --force to overwrite")
            raise typer.Exit(2)
        written = write(proposal, out)
        _check_as_plan_does(out, tokenizer, written)
    _show(err, proposal, out, written)


def _tokenizer(name: str):
    """(text -> token ids, or None when the tokenizer does not know a word; the tokenizer; the
    model's architecture), read as `plan` will read them."""
    from budgetft.models.loading import detect_architecture, load_tokenizer, resolve_model
    from budgetft.spec.job import ModelSpec

    resolved = resolve_model(ModelSpec(name=name))
    tokenizer = load_tokenizer(resolved)
    unknown = getattr(tokenizer, "unk_token_id", None)

    def tokenize(text: str) -> list[int] | None:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return None if unknown is not None and unknown in ids else ids

    return tokenize, tokenizer, detect_architecture(resolved)


def _check_as_plan_does(out: Path, tokenizer, written: list[Path]) -> None:
    """Read the job back as `plan` does (spec, splits, labels, label words): a proposal that
    fails here is a bug of ours, and its files are removed rather than left half right."""
    from budgetft.data.checks import check_splits, class_token_ids
    from budgetft.data.sources import load_splits
    from budgetft.spec import load_job

    try:
        spec = load_job(str(out))
        splits = load_splits(spec.data, spec.seed)
        check_splits(splits, spec.prompt, spec.data.label_field, (spec.data.train_split, spec.data.eval_split))
        class_token_ids(tokenizer, spec.prompt.labels)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _show(err, proposal, out: Path, written: list[Path]) -> None:
    total = sum(n for _, n, _ in proposal.classes)
    table = Table(title=f"{proposal.name}: label field {proposal.label!r}", title_justify="left")
    for col in ("class", "rows", "share", "label word"):
        table.add_column(col, justify="right" if col in ("rows", "share") else "left")
    for cls, n, word in proposal.classes:
        table.add_row(cls, f"{n:,}", f"{100 * n / total:.1f}%", repr(word))
    err.print(table)
    prompt = proposal.job["prompt"]
    err.print(f"text fields: {', '.join(proposal.text_fields)}; prompt up to {prompt['max_length']} tokens, shortening {prompt['truncate_field']!r}")
    err.print("template:\n  " + escape(prompt["template"]).replace("\n", "\n  "))
    for note in proposal.notes:
        err.print(f"- {escape(note)}")
    err.print(f"wrote {', '.join(str(p) for p in written)}")
    err.print(f"next: budgetft plan {out} --budget 0.25 --no-calibrate   (then budgetft run {out} --budget ...)")
