"""README.md of an export: the model card. It says what the model does and how it was made, and
carries the proof budgetft collected: accuracy with its 95% interval on the run's evaluation rows
next to the majority and zero-shot baselines, the exact test against the majority answer, what
the model cost and where the money went, the hardware and the dates; then how to load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from budgetft import __version__
from budgetft.metrics import wilson_interval
from budgetft.report import fmt, stats
from budgetft.report.test_section import verdict_words


@dataclass
class CardFacts:
    chosen: Any  # budgetft.use.winner.ChosenTrial
    summary: Any  # budgetft.report.summary.Summary of the run
    hardware: dict  # budgetft.report.hardware.hardware_summary
    trial: dict  # trials/<id>/trial.json
    job: Any  # budgetft.spec.JobSpec
    architecture: str  # decoder | encoder
    export_format: str  # peft_adapter | full_model
    base_model: str  # hub id, or the local directory it came from
    base_model_path: str  # where the exact weights it was trained on are
    embedded: bool  # trained on budgetft's embedded (GGUF-converted) copy of base_model
    merged: bool
    method_summary: str
    recipe: str
    files: list[str]


def model_card(f: CardFacts) -> str:
    parts = [
        _front_matter(f),
        _title(f),
        _task(f),
        _data(f),
        _method(f),
        _results(f),
        _cost(f),
        _hardware(f),
        _use(f),
        _provenance(f),
    ]
    return "\n".join(parts)


def _front_matter(f: CardFacts) -> str:
    lines = ["---", f"library_name: {'peft' if f.export_format == 'peft_adapter' else 'transformers'}"]
    if "/" in f.base_model and not f.base_model.startswith(("/", ".", "~")):  # a hub id, not a path
        lines.append(f"base_model: {f.base_model}")
    if f.architecture == "encoder":
        lines.append("pipeline_tag: text-classification")
    tags = ["budgetft", f.chosen.method, "text-classification"]
    lines.append("tags:")
    lines += [f"- {t}" for t in tags]
    lines += ["metrics:", "- accuracy", "---", ""]
    return "\n".join(lines)


def _title(f: CardFacts) -> str:
    r = f.chosen.report
    how = "the winner of" if not f.chosen.named else "trial " + f.chosen.trial_id + " of"
    cap = f" under a {fmt.usd(r.cap)} cap" if r.cap is not None else ""
    return (f"# {f.job.name}: {fmt.method(f.chosen.method)} on {f.base_model}\n\n"
            f"{f.job.description + ' ' if f.job.description else ''}A classifier fine-tuned by budgetft: {how} run "
            f"`{r.run_id}`{cap}, which spent {fmt.usd(r.spent)} in all.\n")


def _task(f: CardFacts) -> str:
    prompt = f.job.prompt
    how = ("the log-probability of each class's label word(s) right after the prompt (a verbalizer), "
           "plus a per-class bias fitted and trained with the method; nothing is generated, so every answer is a class"
           if f.architecture == "decoder" else
           "a classification head with one output per class, trained with the method")
    lines = [
        "## Task", "",
        f"Each row (fields: {', '.join(f'`{x}`' for x in prompt.fields)}) is written into the prompt",
        "", "```text", prompt.template, "```", "",
        f"and assigned one of {len(prompt.labels)} classes by {how}.", "",
        "| class | label word |", "|:---|:---|",
        *[f"| {name} | `{word!r}` |" for name, word in prompt.labels.items()],
        "",
    ]
    return "\n".join(lines)


def _data(f: CardFacts) -> str:
    d = f.job.data
    source = d.name if not d.files else ", ".join(f"{split}: {path}" for split, path in d.files.items())
    subset = f" (subset {d.subset})" if d.subset else ""
    n = f.chosen.row.n
    limit = f"{n} rows of the {d.eval_split!r} split" if n else f"the {d.eval_split!r} split"
    train_limit = f", at most {f.job.train.train_limit} rows of it" if f.job.train.train_limit else ""
    return "\n".join([
        "## Data", "",
        f"- Source: {source}{subset}; label field `{d.label_field}`",
        f"- Trained on the {d.train_split!r} split{train_limit}; evaluated on {limit} (sampled with seed {f.job.seed})",
        f"- Prompts longer than `prompt.max_length` = {f.job.prompt.max_length} tokens lose words from the end of "
        + (f"`{f.job.prompt.truncate_field}`" if f.job.prompt.truncate_field else "nothing (such rows are refused)"),
        "",
    ])


def _method(f: CardFacts) -> str:
    row, trial, t = f.chosen.row, f.trial, f.job.train
    settings = "\n".join(f"| `{k}` | {v} |" for k, v in f.chosen.config.items())
    params = (f"{fmt.integer(row.trainable_params)} trainable of {fmt.integer(row.total_params)} parameters"
              if row.trainable_params and row.total_params else "parameter counts not recorded")
    bias = f.chosen.class_bias
    lines = [
        "## Method and settings", "",
        f"{fmt.method(f.chosen.method)} (`{f.chosen.method}`): {f.method_summary}; {params}.", "",
        "| setting | value |", "|:---|:---|", settings, "",
        f"- Training: {trial.get('steps', '?')} of {trial.get('max_steps', '?')} planned steps of {t.batch_size} rows "
        f"(AdamW, {t.warmup_ratio:.0%} warm-up then linear decay, loss `{t.loss}`, seed {f.job.seed}); "
        + (f"these weights are from step {row.kept_step}, the trial's best evaluation" if row.kept_step is not None
           else f"these weights are from step {trial.get('best_step') or trial.get('steps', '?')}, its last: the trial was never evaluated"),
        f"- Ended: {row.ended}" + (f" ({row.stop_reason})" if row.stop_reason else ""),
    ]
    if bias:
        values = ", ".join(f"{name} {b:+.4f}" for name, b in zip(f.job.prompt.labels, bias))
        lines.append(f"- Class bias (nats, added to the label words' scores): {values}")
    lines.append("")
    return "\n".join(lines)


def _held_out(f: CardFacts) -> str | None:
    """The card's results when this model is the run's held-out test winner: rows no decision saw."""
    test = f.chosen.report.test
    if not test or test.get("winner") != f.chosen.trial_id:
        return None
    if test.get("missing") or not test.get("metrics"):  # the money did not pay for it: say so, claim nothing
        return f"## No held-out test\n\n{test.get('missing') or 'the held-out test was not scored'}.\n"

    n = test["rows"]

    def line(name: str, m: dict) -> str:
        ci = wilson_interval(round(m["accuracy"] * n), n)
        return f"| {name} | {fmt.pct(m['accuracy'])} | {fmt.ci(ci)} | {fmt.pct(m.get('balanced_accuracy'))} | {fmt.number(m.get('macro_f1'), 3)} |"

    lines = [
        f"## Results on {n} held-out test rows", "",
        "These rows were cut from the evaluation split before training and seen by no decision: not the",
        "rung decisions, not the choice of this model (made on the separate selection rows), not the",
        "choice of its kept weights.", "",
        "| model | accuracy % | 95% CI (Wilson) | balanced accuracy % | macro-F1 |", "|:---|---:|---:|---:|---:|",
        line(f"**this model** ({f.chosen.trial_id})", test["metrics"]),
    ]
    if test.get("majority"):
        lines.append(line(f"majority baseline (always {test['majority'].get('majority_class')!r})", test["majority"]))
    if test.get("zero_shot"):
        lines.append(line("zero-shot baseline (the untuned model)", test["zero_shot"]))
    lines.append("")
    for name, key in (("the majority baseline", "vs_majority"), ("the untuned model", "vs_zero_shot")):
        vs = test.get(key)
        if vs:
            lines.append(f"- Against {name} on the same rows: {fmt.points(vs['lift_points'])} points; {verdict_words(vs)} "
                         f"(right where it is wrong on {vs['better']} rows, wrong where it is right on {vs['worse']})")
    if test.get("rows_reason"):
        lines.append(f"- Why {n} rows: {test['rows_reason']}")
    lines.append("")
    return "\n".join(lines)


def _results(f: CardFacts) -> str:
    held_out = _held_out(f)
    if held_out is not None:
        return held_out
    row, report = f.chosen.row, f.chosen.report

    def line(name: str, r: Any) -> str:
        return f"| {name} | {fmt.pct(r.accuracy)} | {fmt.ci(r.ci95)} | {fmt.pct(r.balanced_accuracy)} | {fmt.number(r.macro_f1, 3) if r.macro_f1 is not None else fmt.DASH} |"

    lines = [
        f"## Results on {row.n} evaluation rows", "",
        "| model | accuracy % | 95% CI (Wilson) | balanced accuracy % | macro-F1 |", "|:---|---:|---:|---:|---:|",
        line(f"**this model** ({row.id})", row),
    ]
    if report.majority is not None:
        lines.append(line(f"majority baseline ({fmt.method_and_settings(report.majority)})", report.majority))
    if report.zero_shot is not None:
        lines.append(line("zero-shot baseline (the untuned model)", report.zero_shot))
    lines.append("")
    if row.lift_points is not None:
        lines.append(f"- Lift over the majority baseline: {fmt.points(row.lift_points)} points"
                     + (f"; over zero-shot: {fmt.points(row.lift_vs_zero_shot)} points" if row.lift_vs_zero_shot is not None else ""))
    test = row.vs_majority
    if test is not None:
        name = "McNemar's exact test" if test.test == "mcnemar_exact" else "an exact binomial test"
        verdict = {"better": "significantly more accurate", "worse": "significantly less accurate",
                   "not_significant": "not significantly different"}.get(test.verdict, test.verdict)
        lines.append(f"- Against the majority baseline on the same rows, {name} (two-sided, alpha = {stats.ALPHA}): "
                     f"right where it is wrong on {test.better} rows, wrong where it is right on {test.worse}; "
                     f"p = {fmt.p_value(test.p_value)}: **{verdict}**")
    else:
        lines.append("- No significance test: the run has no majority baseline to test against")
    choice = ("it was chosen as the first of the report's ranking (significant wins over the majority baseline "
              "by lift per dollar, then the other trials), so the same rows also picked it")
    lines.append(f"- These rows are the run's evaluation rows: {choice if not f.chosen.named else 'ASHA decided on them too'}; "
                 "read the accuracy as slightly optimistic for new rows")
    lines.append("")
    return "\n".join(lines)


def _cost(f: CardFacts) -> str:
    report, row = f.chosen.report, f.chosen.row
    whole = f"{fmt.usd(report.spent)}" + (f" of its {fmt.usd(report.cap)} cap ({100 * report.spent / report.cap:.1f}%)" if report.cap else "")
    lines = [
        "## Cost", "",
        f"- This model's trial: {fmt.usd(row.cost)} (the ledger's charges tagged with {row.id})",
        f"- The whole run, baselines and every other trial included: {whole}",
        f"- Priced at ${report.price_per_hour}/h ({report.run.get('price_source') or 'source unknown'}), "
        "per second, from an append-only ledger paid before each second was used",
        "",
        "| where the money went | USD |", "|:---|---:|",
        *[f"| {category} | {fmt.usd(amount)} |" for category, amount in f.summary.spend],
        "",
    ]
    return "\n".join(lines)


def _hardware(f: CardFacts) -> str:
    report, hw = f.chosen.report, f.hardware
    usage = (hw.get("trials") or {}).get(f.chosen.trial_id) or {}
    lines = ["## Hardware and dates", "", f"- Machine: {hw.get('device') or report.machine}"]
    if usage:
        peak = usage.get("peak_mem_mb")
        util = usage.get("mean_util_pct")
        lines.append(f"- This trial: {usage.get('samples', 0)} telemetry samples ({usage.get('source')})"
                     + (f", mean utilization {util:.0f}%" if util is not None else "")
                     + (f", peak memory {peak:,.0f} MiB" if peak is not None else ""))
    trial = f.trial
    lines += [
        f"- Run started {report.run.get('started') or '?'}, finished {report.run.get('finished') or '(not finished)'}; "
        f"this trial ran {trial.get('started') or '?'} to {trial.get('ended') or '?'}",
        f"- Exported {datetime.now(timezone.utc).isoformat(timespec='seconds').replace('+00:00', 'Z')} by budgetft {__version__}",
        "",
    ]
    return "\n".join(lines)


def _use(f: CardFacts) -> str:
    if f.export_format == "peft_adapter":
        what = (f"This folder holds a peft adapter for `{f.base_model}`; `adapter_config.json` points peft at the base "
                f"weights the adapter was trained on (`{f.base_model_path}`).")
    elif f.merged:
        what = "This folder holds the whole model: the peft adapter merged into its base weights, which transformers loads as is."
    else:
        what = (f"{fmt.method(f.chosen.method)} is budgetft's own method, not a peft adapter, so this folder holds the whole "
                "model with the method's trained weights in place, which transformers loads as is.")
        if f.chosen.method == "bitfit" and f.architecture == "decoder":
            what += (" BitFit added biases to linear layers that had none; `config.json` turns them on "
                     "(e.g. `attention_bias`, `mlp_bias`).")
    notes = []
    if f.embedded:
        notes.append(f"The base weights are budgetft's float32 copy of the embedded GGUF (Q4_1) file of `{f.base_model}`, "
                     "converted on first use (`budgetft` recreates it on another machine from the same package). "
                     "The hub's own weights of that name differ slightly, and so would the scores.")
    if f.architecture == "decoder":
        notes.append("`budgetft_scoring.json` holds what scoring needs besides the weights: the template, the classes, "
                     "their label words' token ids, and the class bias (nats) added to their log-probabilities.")
    else:
        notes.append("`budgetft_scoring.json` holds the template and the classes in the head's output order.")
    return "\n".join([
        "## How to use", "",
        what, "",
        "This code (transformers" + (" and peft" if f.export_format == "peft_adapter" else "") +
        ", nothing from budgetft) gives each row the class probabilities `budgetft predict` gives it:", "",
        "```python", f.recipe.rstrip("\n"), "```", "",
        *[f"- {n}" for n in notes],
        "",
    ])


def _provenance(f: CardFacts) -> str:
    r = f.chosen.report
    return "\n".join([
        "## Files", "",
        *[f"- `{name}`" for name in f.files],
        "",
        f"Made by budgetft {__version__} from run `{r.run_id}` (`{r.root}`), trial `{f.chosen.trial_id}`"
        + (" (chosen with --trial)" if f.chosen.named else " (the run's winner)") + ".",
        "",
    ])
