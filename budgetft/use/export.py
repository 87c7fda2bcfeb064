"""`budgetft export`: a run's winner (or a named trial) as a folder the Hugging Face libraries load
as they are, with what scoring needs and a model card carrying the proof.

Formats, decided before any weights load:
- a peft method: its adapter as peft wrote it (adapter_config.json pointing at the base weights it
  was trained on, adapter_model.safetensors); with --merge, the adapter merged into the base and
  saved as a whole model, except for prompt methods (prompt/p/prefix tuning), whose trained
  virtual tokens no weight can hold;
- budgetft's own methods (bitfit, last_k, full, mezo, mezo_top_k, fish_mask): the whole model with the trained
  weights in place (budgetft.use.full_model); houlsby, pfeiffer, adamix, lst, mezo_lst, pasta and siva add modules
  transformers models have no place for, and are refused before anything loads (NOT_EXPORTABLE).
Every export also holds the tokenizer, budgetft_scoring.json (template, classes, label-word
token ids, class bias) and README.md (budgetft.use.model_card).

The folder is written under a temporary name beside --to and renamed at the end: a failed export
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from budgetft import methods
from budgetft.files import read_json
from budgetft.models import cache as model_cache
from budgetft.report.hardware import hardware_summary
from budgetft.report.summary import summarize
from budgetft.use import UseError, bridge
from budgetft.use.full_model import plain_model
from budgetft.use.model_card import CardFacts, model_card
from budgetft.use.predict import load_chosen
from budgetft.use.recipe import ADAPTER, FULL, SCORING_FILE, recipe
from budgetft.use.scoring_task import scoring_task
from budgetft.use.winner import MANIFEST, choose_trial

SCORING_SCHEMA = "budgetft.scoring"
SCORING_SCHEMA_VERSION = 1
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
# Our methods whose modules transformers cannot represent, with why.
NOT_EXPORTABLE = {
    "houlsby": "inserts bottleneck adapter modules (with a nonlinearity) after every block's sublayers",
    "pfeiffer": "inserts bottleneck adapter modules (with a nonlinearity) after every block's feed-forward sublayer",
    "lst": "adds a ladder side network that reads every block's output",
    "mezo_lst": "adds a ladder side network that reads every block's output (after a MeZO phase over every weight)",
    "pasta": "adds trained vectors to the special tokens' states before every block",
    "siva": "keeps its trained singular vectors in modules beside each weight (not yet folded back into it)",
    "adamix": "inserts bottleneck adapter modules (with a nonlinearity; its experts averaged) after every block's feed-forward sublayer",
    "pet": "is an ensemble of several LoRA adapters, one per prompt pattern, whose class scores are averaged over the patterns' prompts",
    "ipet": "is an ensemble of several LoRA adapters, one per prompt pattern, whose class scores are averaged over the patterns' prompts",
}
# peft types that prepend trained virtual tokens: nothing to merge into the weights.
PROMPT_PEFT_TYPES = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "MULTITASK_PROMPT_TUNING", "ADAPTION_PROMPT", "CPT")


@dataclass
class ExportRequest:
    run_dir: Path
    to: Path
    merge: bool = False
    trial_id: str | None = None


@dataclass
class ExportResult:
    folder: Path
    export_format: str  # peft_adapter | full_model
    merged: bool
    trial_id: str
    method: str
    files: list[str]


def export(request: ExportRequest, say: Callable[[str], None] = lambda text: None) -> ExportResult:
    check_target(request.to)
    chosen = choose_trial(request.run_dir, request.trial_id)
    export_format, merged = format_for(chosen, request.merge)
    job = chosen.job()  # the trial's model's variant of the run's job
    task = scoring_task(job)
    say(f"exporting {'trial' if chosen.named else 'the winner,'} {chosen.trial_id} ({chosen.method}) as "
        + ("a peft adapter" if export_format == ADAPTER else "a merged model" if merged else "a full model"))
    tmp = request.to.parent / f".{request.to.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if export_format == ADAPTER:
            _copy_adapter(chosen, task, tmp)
        else:
            _save_full(chosen, task, tmp, merged)
        task.tokenizer.save_pretrained(str(tmp))
        scoring = scoring_json(chosen, task, export_format, merged)
        (tmp / SCORING_FILE).write_text(json.dumps(scoring, indent=2) + "\n", encoding="utf-8")
        files = sorted([p.name for p in tmp.iterdir()] + ["README.md"])
        (tmp / "README.md").write_text(_card(chosen, task, scoring, export_format, merged, files), encoding="utf-8")
        if request.to.exists():
            request.to.rmdir()  # check_target allowed only an empty folder
        tmp.rename(request.to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(request.to, export_format, merged, chosen.trial_id, chosen.method, files)


def check_target(to: Path) -> None:
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise UseError(f"--to {to} exists and is not an empty folder; give a new folder (or empty this one)")


def format_for(chosen: Any, merge: bool) -> tuple[str, bool]:
    """(format, merged) for the trial, or UseError saying why it cannot be exported so."""
    if chosen.manifest["layout"] == "tensors":
        why = NOT_EXPORTABLE.get(chosen.method)
        if why:
            raise UseError(
                f"{chosen.method} {why}, which no transformers model class can load; score this trial with "
                f"`budgetft predict {chosen.run_dir} --trial {chosen.trial_id}`, or export a trial of another method with --trial"
            )
        return FULL, False  # already a whole model: --merge has nothing to add
    config_file = chosen.weights / "adapter_config.json"
    try:
        peft_type = str(json.loads(config_file.read_text(encoding="utf-8")).get("peft_type", ""))
    except (OSError, ValueError) as exc:
        raise UseError(f"{config_file} cannot be read ({exc}); the trial's adapter is incomplete ({MANIFEST} says peft)") from None
    if not merge:
        return ADAPTER, False
    if peft_type.upper() in PROMPT_PEFT_TYPES:
        raise UseError(
            f"{chosen.method} prepends trained virtual tokens to every input, and no weight of the model can hold them, "
            "so there is nothing to merge; export without --merge (a peft adapter that peft loads as is)"
        )
    return FULL, True


def _copy_adapter(chosen: Any, task: Any, to: Path) -> None:
    """peft's own files, with base_model_name_or_path set to the weights the adapter was
    trained on (a local folder, budgetft's converted embedded copy, or the hub id)."""
    config = json.loads((chosen.weights / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = task.model.location
    config["revision"] = task.model.revision
    config["inference_mode"] = True
    (to / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    copied = [name for name in ADAPTER_FILES[1:] if (chosen.weights / name).is_file()]
    if not copied:
        raise UseError(f"{chosen.weights} has adapter_config.json but no adapter weights; the trial's adapter is incomplete")
    for name in copied:
        shutil.copy2(chosen.weights / name, to / name)


def _save_full(chosen: Any, task: Any, to: Path, merged: bool) -> None:
    model = load_chosen(chosen, task)
    if merged:
        # Merging adds the adapters' product into the base weights in place, and this model's
        # base tensors are the process's held copy (budgetft.models.cache): drop that copy first,
        # so no later load in this process (predict, the trackers' export) reads merged weights.
        model_cache.release()
        model = model.merge_and_unload()
    plain = plain_model(model, task.model.architecture, task.class_names, drop=(bridge.class_bias_attribute(),))
    plain.save_pretrained(str(to))


def scoring_json(chosen: Any, task: Any, export_format: str, merged: bool) -> dict:
    """budgetft_scoring.json: everything scoring needs besides the weights and the tokenizer."""
    job = task.job
    return {
        "schema": SCORING_SCHEMA,
        "schema_version": SCORING_SCHEMA_VERSION,
        "format": export_format,
        "merged": merged,
        "architecture": task.model.architecture,
        "scored_by": "label_words" if task.model.architecture == "decoder" else "classification_head",
        "base_model": base_model_name(job, task),
        "base_model_path": task.model.location,
        "base_model_revision": task.model.revision,
        "template": job.prompt.template,
        "fields": job.prompt.fields,
        "label_field": job.data.label_field,
        "classes": list(task.class_names),
        "label_words": task.label_words,
        "class_token_ids": task.class_tokens if task.model.architecture == "decoder" else None,
        "class_bias": chosen.class_bias,  # nats, one per class, added to the label words' scores
        "max_length": job.prompt.max_length,
        "prompt_token_budget": task.prompt_budget,
        "truncate_field": job.prompt.truncate_field,
        "tokenizer": {"add_special_tokens": True, "drop_trailing_eos": True},
        "method": chosen.method,
        "config": chosen.config,
        "run_id": chosen.report.run_id,
        "trial_id": chosen.trial_id,
    }


def base_model_name(job: Any, task: Any) -> str:
    """The base model's name for people and the Hub: the job's hub id (also for an embedded
    copy), or the absolute path of a local model folder."""
    if task.model.source == "local":
        return str(Path(task.model.location).resolve())
    return job.model.name


def _card(chosen: Any, task: Any, scoring: dict, export_format: str, merged: bool, files: list[str]) -> str:
    trial = read_json(chosen.run_dir / "trials" / chosen.trial_id / "trial.json", {}) or {}
    facts = CardFacts(
        chosen=chosen,
        summary=summarize(chosen.report),
        hardware=hardware_summary(chosen.run_dir),
        trial=trial,
        job=task.job,
        architecture=task.model.architecture,
        export_format=export_format,
        base_model=scoring["base_model"],
        base_model_path=scoring["base_model_path"],
        embedded=task.model.source == "embedded",
        merged=merged,
        method_summary=methods.get(chosen.method).summary,
        recipe=recipe(task.model.architecture, export_format, task.job.prompt.fields, task.model.revision),
        files=files,
    )
    return model_card(facts)
