"""PaSTA, special-token adaptation (Yang et al., 2023, "Parameter-Efficient Tuning with Special
Token Adaptation"): before every block, a trained vector is added to the hidden state of each
special token, and nothing else of the encoder trains (its classification head does). The
special tokens are where a BERT-style encoder gathers the sequence: [CLS] at the first position
(the head reads it) and the tokens that frame it ([SEP], BOS/EOS where a tokenizer has them).

Two vectors per block (one for the first position, one shared by the other special tokens):
on all-MiniLM-L6-v2, 6 blocks x 2 x 384 = 4,608 parameters besides the head. The cheapest
method here after the head alone, and its steps still run the whole backward pass.

Ours (no library ships it). Encoders only: a decoder's prompts carry no special token for its
answer to read (the verbalizer reads the last position), so it is refused up front.
"""

from __future__ import annotations

from budgetft.methods.arch import freeze_all, make_head_trainable, transformer_blocks
from budgetft.methods.base import ENCODER, Method

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

FIRST, OTHER_SPECIAL = 0, 1  # which vector a position gets; -1: none


def _vectors_class():
    import torch

    class SpecialTokenVectors(torch.nn.Module):
        def __init__(self, width: int, like):
            super().__init__()
            # Zero at step 0: the model is unchanged until training moves them.
            self.vectors = torch.nn.Parameter(torch.zeros(2, width, dtype=like.dtype, device=like.device))

    return SpecialTokenVectors


def apply(model, config, context):
    import torch

    Vectors = _vectors_class()
    freeze_all(model)
    tokenizer = context.tokenizer
    # The tokens that frame a sequence: [SEP] (and BOS/EOS, CLS where it recurs). Not [UNK] or
    # [MASK], which stand in for ordinary text, nor [PAD], which no one attends to.
    ids = (getattr(tokenizer, name, None) for name in ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id"))
    pad = getattr(tokenizer, "pad_token_id", None)
    special = sorted({int(i) for i in ids if i is not None and i != pad})
    state: dict = {"kinds": None}
    like = next(model.parameters())
    width = int(model.config.hidden_size)

    def note_rows(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            state["kinds"] = None
            return None
        kinds = torch.full(ids.shape, -1, dtype=torch.long, device=ids.device)
        if special:
            kinds[torch.isin(ids, torch.as_tensor(special, device=ids.device))] = OTHER_SPECIAL
        kinds[:, 0] = FIRST
        state["kinds"] = kinds
        return None

    def add_vectors(block, args, kwargs):
        kinds = state["kinds"]
        hidden = args[0] if args else kwargs["hidden_states"]
        if kinds is None or kinds.shape != hidden.shape[:2]:
            return None
        table = torch.cat([block.pasta.vectors, block.pasta.vectors.new_zeros(1, width)]).to(hidden.dtype)  # row 2: none
        hidden = hidden + table[torch.where(kinds < 0, 2, kinds)]
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    for block in transformer_blocks(model):
        if hasattr(block, "pasta"):
            raise ValueError("this model already has PaSTA vectors")
        block.pasta = Vectors(width, like)
        block.register_forward_pre_hook(add_vectors, with_kwargs=True)
    model.register_forward_pre_hook(note_rows, with_kwargs=True)
    make_head_trainable(model)
    return model


METHOD = Method(
    name="pasta",
    summary="special-token adaptation: a trained vector added to the special tokens' states before every block",
    # The paper trains PaSTA with learning rates far above full fine-tuning's (its vectors start
    # at zero and are few): 1e-3 as the centre, as for the other small-parameter methods here.
    defaults={"learning_rate": 1e-3},
    default_space={"learning_rate": {"loguniform": [3e-4, 1e-2]}},
    apply=apply,
    uses_peft=False,
    architectures=(ENCODER,),
    notes="encoders only: a decoder's prompt has no special token for the answer to read",
    aliases=("special_token_adaptation",),
)
