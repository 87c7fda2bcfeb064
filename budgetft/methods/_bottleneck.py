"""Bottleneck adapters, ours (the `adapters` library 1.3 pins transformers 4.57; we run 5.x).

An adapter is h + W_up·act(W_down·h) with a bottleneck of hidden_size / reduction_factor
units, inserted on a sublayer's output before the residual addition. W_up starts at zero, so
the model is unchanged at step 0 (Houlsby et al. use a near-zero init for the same reason).

Insertion is a forward hook on the sublayer's output projection, with the adapter registered
as that projection's child `bottleneck`: the base model's parameter names are untouched, the
adapter's are `<projection>.bottleneck.{down,up}.{weight,bias}`, and persist.py saves just
those.
"""

from __future__ import annotations

from typing import Any

from budgetft.methods.arch import freeze_all, make_head_trainable, transformer_blocks

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

# A block's attention output projection and feed-forward output projection, for the
# architectures we know: Llama/Mistral/Qwen, BERT/MiniLM/RoBERTa, OPT, GPT-2, GPT-NeoX.
ATTENTION_OUT = ("self_attn.o_proj", "attention.output.dense", "self_attn.out_proj", "attn.c_proj", "attention.dense")
FEED_FORWARD_OUT = ("mlp.down_proj", "output.dense", "fc2", "mlp.c_proj", "mlp.dense_4h_to_h")


def _bottleneck_class():
    import torch

    class Bottleneck(torch.nn.Module):
        def __init__(self, dim: int, size: int, like: torch.Tensor):
            super().__init__()
            kw = {"dtype": like.dtype, "device": like.device}
            self.down = torch.nn.Linear(dim, size, **kw)
            self.up = torch.nn.Linear(size, dim, **kw)
            self.act = torch.nn.GELU()
            torch.nn.init.normal_(self.down.weight, std=0.02)  # BERT-style init scale
            torch.nn.init.zeros_(self.down.bias)
            torch.nn.init.zeros_(self.up.weight)
            torch.nn.init.zeros_(self.up.bias)

        def forward(self, h):
            return h + self.up(self.act(self.down(h)))

    return Bottleneck


def _run_bottleneck(module, inputs, output):
    return module.bottleneck(output)


def _find(block: Any, candidates: tuple[str, ...]) -> Any:
    for path in candidates:
        try:
            return block.get_submodule(path)
        except AttributeError:
            continue
    raise ValueError(f"{type(block).__name__}: no sublayer among {', '.join(candidates)} to place an adapter after")


def _out_features(module: Any) -> int:
    # nn.Linear has out_features; GPT-2's Conv1D has nf.
    return int(getattr(module, "out_features", None) or module.nf)


def insert_adapters(model: Any, reduction_factor: int, after_attention: bool, build: Any = None) -> Any:
    """Add an adapter after every block's feed-forward output (Pfeiffer), and after its
    attention output too when after_attention (Houlsby). Only adapters (and an encoder's
    classification head) are trainable. `build(dim, size, like)` makes each adapter (default:
    one Bottleneck; AdaMix passes its mixture of bottlenecks)."""
    Bottleneck = build or _bottleneck_class()
    freeze_all(model)
    placements = (ATTENTION_OUT, FEED_FORWARD_OUT) if after_attention else (FEED_FORWARD_OUT,)
    for block in transformer_blocks(model):
        for candidates in placements:
            target = _find(block, candidates)
            if hasattr(target, "bottleneck"):
                raise ValueError("this model already has bottleneck adapters")
            dim = _out_features(target)
            target.bottleneck = Bottleneck(dim, max(1, dim // reduction_factor), target.weight)
            target.register_forward_hook(_run_bottleneck)
    make_head_trainable(model)
    return model
