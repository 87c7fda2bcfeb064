"""Save a trained method's weights, and load them back onto a fresh base model.

Two layouts, one rule: only what the method trained is written, and loading re-applies the
method to the base model first, so whatever `apply` does to the base (BitFit's added zero
biases, PiSSA's residual base weights, bottleneck modules) happens again before the weights
go in.

- peft methods: the adapter as peft writes it (`save_pretrained`: adapter_config.json and
  adapter_model.safetensors), loaded with peft's own state-dict loader.
- our methods: the trainable tensors in `trainable.safetensors`.

Both also write `budgetft_method.json` (method name, configuration, and the verbalizer's
trained per-class bias if the trial fitted one: budgetft.scoring.class_bias), which `load_trained`
checks, so an adapter is never loaded under the wrong method.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from budgetft import methods
from budgetft.methods.base import ApplyContext
from budgetft.methods.phased import apply_phases
from budgetft.scoring import class_bias, ensemble
from budgetft.train.phases import phases_applied, trained_names

# Imported inside functions: peft, safetensors, torch: importing this module must stay cheap
# (start-up time).

MANIFEST = "budgetft_method.json"
TENSORS = "trainable.safetensors"


def save_trained(model: Any, method_name: str, config: dict, path: Path) -> None:
    method = methods.get(method_name)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if _is_peft(model) and method.uses_peft:
        # The adapter only (kilobytes to a few MB), never the base weights. A method built from
        # peft adapters that saves its own tensors (PET's several adapters) goes below.
        model.save_pretrained(str(path))
        layout = "peft"
    else:
        from safetensors.torch import save_file

        # named_parameters() lists a tied weight once, so no tensor is stored twice. A phased
        # method saves what any of its phases trained (MeZO moved weights last_k then froze).
        trained = trained_names(model)
        tensors = {
            n: p.detach().cpu().contiguous()
            for n, p in model.named_parameters()
            if (p.requires_grad or (trained is not None and n in trained)) and n != class_bias.ATTRIBUTE  # the bias goes in the manifest
        }
        if not tensors:
            raise ValueError(f"method {method.name!r}: the model has no trainable parameters to save")
        save_file(tensors, str(path / TENSORS))
        layout = "tensors"
    manifest = {"method": method.name, "config": _jsonable(config), "layout": layout}

    applied = phases_applied(model)
    if method.phases is not None and applied is not None:
        manifest["phases"] = applied  # loading rebuilds exactly the phases these weights had
    bias = class_bias.class_bias_of(model)
    if bias is not None:
        manifest["class_bias"] = bias

    members = ensemble.describe(model)
    if members is not None:
        manifest["members"] = members  # an ensemble's adapters: their patterns and class biases
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def load_trained(base_model: Any, method_name: str, config: dict, path: Path, context: Any = None) -> Any:
    """The base model with the method re-applied and its saved weights loaded, in eval mode."""
    method = methods.get(method_name)
    path = Path(path)
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise FileNotFoundError(f"{path} holds no saved method ({MANIFEST} is missing); save it with save_trained")
    manifest = json.loads(manifest_file.read_text())
    if manifest["method"] != method.name:
        raise ValueError(f"{path} holds a {manifest['method']!r} adapter, not {method.name!r}")
    if method.phases is not None and manifest.get("phases") is not None:
        model = apply_phases(method.phases, base_model, config, context or ApplyContext(), int(manifest["phases"]))
    else:
        model = method.apply(base_model, config, context or ApplyContext())
    if manifest["layout"] == "peft":
        _load_peft(model, path)
    else:
        _load_tensors(model, path / TENSORS)
    if manifest.get("class_bias") is not None:
        class_bias.attach(model, manifest["class_bias"])
    if manifest.get("members") is not None:
        ensemble.restore(model, manifest["members"])
    model.eval()
    return model


def _load_peft(model: Any, path: Path) -> None:
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    config = model.active_peft_config
    if str(config.peft_type).endswith("ADALORA"):
        # AdaLoRA saves each layer at the rank it ended with; peft resizes the fresh layers to
        # the saved rank pattern before loading, if the live config knows the pattern.
        saved = json.loads((path / "adapter_config.json").read_text())
        config.rank_pattern = saved.get("rank_pattern")
    weights = load_peft_weights(str(path), device=str(next(model.parameters()).device))
    result = set_peft_model_state_dict(model, weights)
    if config.is_prompt_learning:
        # peft saves a prompt method's *output* (the virtual-token embeddings, after P-tuning's
        # MLP or prefix tuning's projection) and loads it into the encoder's embedding table;
        # inference mode makes the forward pass read that table directly, as peft's own loader
        # does. A loaded prompt adapter is therefore for evaluation, not for further training.
        config.inference_mode = True
        return  # peft loads the prompt encoder itself, outside the state dict it reports on
    # Adapter keys not found in the file: the adapter would silently keep its fresh
    # initialisation there.
    missing = [k for k in getattr(result, "missing_keys", []) if _is_adapter_key(model, k)]
    if missing:
        raise ValueError(f"{path}: adapter weights missing for {len(missing)} tensors, e.g. {missing[0]}")


def _load_tensors(model: Any, file: Path) -> None:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(file))
    params = dict(model.named_parameters())
    unknown = sorted(set(tensors) - set(params))
    if unknown:
        raise ValueError(f"{file}: tensors the re-applied method does not have, e.g. {unknown[0]}")
    expected = {n for n, p in params.items() if p.requires_grad}
    missing = sorted(expected - set(tensors))
    if missing:
        raise ValueError(f"{file}: no saved value for trainable tensor {missing[0]} (and {len(missing) - 1} more)")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def _is_adapter_key(model: Any, key: str) -> bool:
    """True for a key that belongs to the adapter (trainable), not to the frozen base model."""
    params = dict(model.named_parameters())
    param = params.get(key)
    return param is not None and param.requires_grad


def _jsonable(config: dict) -> dict:
    out = {}
    for key, value in config.items():
        if hasattr(value, "item"):  # numpy / torch scalars from a search space
            value = value.item()
        out[key] = value
    return out
