"""Frozen layers computed once: for a method whose trained parts all sit above a stack of frozen
blocks (last_k: the top k blocks, the final norm, an encoder's head), the hidden state that enters
the lowest trained block depends only on the row's tokens. It is computed the first time a row is
seen and reused by every later step, evaluation and trial of the run, so a step runs only the
trained blocks: on SmolLM2-135M with k=2, 2 of 30 blocks (benchmarks/frozen_prefix.py measures it).

How it plugs in, without touching the model's code or its saved weights:
- a pre-hook on the model's forward reads each row's tokens (input_ids up to its attention mask:
  scoring pads on the right), computes the rows not yet stored with the frozen blocks alone (no
  gradient, inference mode: their dropout is off, as for a feature extractor), and stores them;
- the frozen blocks' forward is overridden on the instance to hand its input straight on while
  the rows are served from the store (their parameters and state_dict names are untouched);
- a pre-hook on the lowest trained block replaces its input with the stored states.
`detach()` removes all of it: the model is then exactly the one the method produced.

States are kept in memory up to MEMORY_BYTES and, given a folder, written there as one file per
row (written to a temporary name, then renamed, so trials running at once can share the folder).
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from budgetft.methods.arch import final_norm, head_modules, transformer_blocks

MEMORY_BYTES = 1024**3  # states kept in this process, bytes (~3,000 BoolQ rows of SmolLM2 in fp32)
ATTRIBUTE = "_budgetft_frozen_prefix"  # where an attached FrozenPrefix is found on its model
MIN_FREE_DISK = 2 * 1024**3  # states are not written to a disk with less free space, bytes
MIN_FROZEN_SHARE = 0.25  # below a quarter of the blocks frozen, storing states saves too little


def summary(model: Any) -> dict | None:
    """What the FrozenPrefix attached to `model` did so far (None: none is attached)."""
    prefix = model.__dict__.get(ATTRIBUTE)
    return None if prefix is None else prefix.summary()


def first_trained_block(model: Any) -> int | None:
    """The index of the lowest block with a trainable parameter, when every trainable parameter
    sits in that block or above it (blocks, final norm, pooler, classification head) and at
    least MIN_FROZEN_SHARE of the blocks lie below; else None (nothing worth storing)."""
    blocks = transformer_blocks(model)
    trained = [i for i, block in enumerate(blocks) if any(p.requires_grad for p in block.parameters())]
    if not trained or trained[0] < max(1, MIN_FROZEN_SHARE * len(blocks)):
        return None
    j = trained[0]
    above = {id(p) for block in list(blocks)[j:] for p in block.parameters()}
    for module in [final_norm(model), *head_modules(model), _pooler(model)]:
        if module is not None:
            above.update(id(p) for p in module.parameters())
    from budgetft.scoring.verbalizer import BIAS_ATTRIBUTE

    # The verbalizer's class bias (a later phase finds it attached) adds to the scores at the top.
    if any(p.requires_grad and id(p) not in above for n, p in model.named_parameters() if n != BIAS_ATTRIBUTE):
        return None  # something below the blocks learns (a soft prompt, an embedding, a bias)
    if _drops_out(model, list(blocks)[:j]):
        return None  # stored states would train the top on inputs without the frozen blocks' dropout
    return j


def _drops_out(model: Any, frozen: list[Any]) -> bool:
    """Whether the frozen blocks apply dropout in training (a dropout module with p > 0, or a
    dropout probability in the model's config that a block's attention reads, e.g. BERT's and
    MiniLM's 0.1; Llama's and SmolLM2's are 0): then serving stored states would change training."""
    import torch

    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for block in frozen for m in block.modules()):
        return True
    config = getattr(model, "config", None)
    for name, value in (vars(config) if config is not None else {}).items():
        if ("dropout" in name or "pdrop" in name) and not name.startswith(("classifier", "summary")):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return True
    return False


def attach(model: Any, identity: str, folder: Path | None = None) -> "FrozenPrefix | None":
    """Serve `model`'s frozen blocks from stored states when the method left a frozen prefix;
    None when it did not. `identity` names the frozen weights and the precision (e.g. the model's
    path and the autocast dtype): states stored under one identity are never served to another."""
    j = first_trained_block(model)
    return None if j is None else FrozenPrefix(model, j, identity, folder)


class FrozenPrefix:
    def __init__(self, model: Any, first_trained: int, identity: str, folder: Path | None = None):
        self.model = model
        self.blocks = transformer_blocks(model)
        self.j = first_trained
        self.tag = hashlib.sha256(f"{identity}|block {first_trained}".encode()).hexdigest()[:16]
        self.folder = None if folder is None else Path(folder) / self.tag
        self.memory: dict[str, Any] = {}
        self.memory_bytes = 0
        self.computed = 0  # rows whose states this process computed (the rest came from the store)
        self.served = 0  # rows served from stored states
        self._batch: list[Any] | None = None  # the states of the rows in the forward under way
        self._filling = False
        self._out_len = 0  # a block returns the hidden states (0) or a tuple of this length
        self._forwards: list[Any] = []  # each frozen block's own instance `forward`, if it had one
        self._handles = [
            model.register_forward_pre_hook(self._before_model, with_kwargs=True),
            self.blocks[first_trained].register_forward_pre_hook(self._before_first_trained, with_kwargs=True),
            self.blocks[0].register_forward_hook(self._note_output_kind),
        ]
        self._probe()
        for block in list(self.blocks)[:first_trained]:
            self._forwards.append(block.__dict__.get("forward"))
            block.forward = self._skippable(block.forward)
        model.__dict__[ATTRIBUTE] = self  # for summary(model): a trial stopped by Tune never returns

    def summary(self) -> dict:
        return {"first_trained_block": self.j, "rows_computed": self.computed, "rows_reused": self.served}

    # -- hooks

    def _skippable(self, forward):
        def run(*args, **kwargs):
            if self._batch is None:
                return forward(*args, **kwargs)
            hidden = args[0] if args else kwargs["hidden_states"]
            if self._out_len:  # what the block returns, e.g. (hidden, attention weights)
                return (hidden,) + (None,) * (self._out_len - 1)
            return hidden  # the stored states replace it at the lowest trained block

        return run

    def _note_output_kind(self, module, args, output):
        self._out_len = len(output) if isinstance(output, tuple) else 0

    def _probe(self) -> None:
        """Run the frozen blocks once on two tokens to learn what a block returns, before any
        forward may be served from stored states (a later trial's first batch is)."""
        import torch

        device = next(self.model.parameters()).device
        self._compute([torch.ones(2, dtype=torch.long)], torch.ones(1, device=device))
        self.computed = 0

    def _before_model(self, module, args, kwargs):
        self._batch = None
        if self._filling:
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None or kwargs.get("inputs_embeds") is not None:
            return None
        mask = kwargs.get("attention_mask")
        rows = _rows(input_ids, mask)
        if rows is None:  # not right-padded: run the whole model
            return None
        keys = [self._key(r) for r in rows]
        states = [self._load(k) for k in keys]
        missing = [i for i, s in enumerate(states) if s is None]
        if missing:
            for i, state in zip(missing, self._compute([rows[i] for i in missing], input_ids)):
                states[i] = state
                self._store(keys[i], state)
        self.served += len(rows) - len(missing)
        self._batch = states
        return None

    def _before_first_trained(self, module, args, kwargs):
        if self._filling:
            raise _Captured(args[0] if args else kwargs["hidden_states"])
        if self._batch is None:
            return None
        states, self._batch = self._batch, None
        hidden = args[0] if args else kwargs["hidden_states"]
        stacked = hidden.new_zeros(hidden.shape)
        for b, state in enumerate(states):
            stacked[b, : state.shape[0]] = state.to(device=hidden.device, dtype=hidden.dtype)
        if args:
            return (stacked, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": stacked}

    # -- computing and storing states

    def _compute(self, rows: list[Any], like) -> list[Any]:
        """The input to the lowest trained block for `rows` (1-D token tensors), by running the
        model until it gets there: inference mode, no gradient, the caller's autocast."""
        import torch

        from budgetft.data.batching import pad_right

        input_ids, mask = pad_right([r.cpu().numpy() for r in rows], 0)
        was_training = self.model.training
        self._filling = True
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(input_ids=input_ids.to(like.device), attention_mask=mask.to(like.device))
            raise RuntimeError("the lowest trained block was never reached")  # pragma: no cover
        except _Captured as got:
            hidden = got.hidden
        finally:
            self._filling = False
            self.model.train(was_training)
        self.computed += len(rows)
        return [hidden[b, : len(r)].detach().to("cpu").clone() for b, r in enumerate(rows)]

    def _key(self, row) -> str:
        return hashlib.sha256(row.cpu().numpy().astype("int64").tobytes()).hexdigest()[:32]

    def _load(self, key: str):
        state = self.memory.get(key)
        if state is None and self.folder is not None:
            path = self.folder / f"{key}.pt"
            if path.is_file():
                import torch

                try:
                    state = torch.load(path, weights_only=True)
                except Exception:  # a torn file from a killed writer: compute it again
                    return None
                self._remember(key, state)
        return state

    def _store(self, key: str, state) -> None:
        self._remember(key, state)
        if self.folder is not None:
            import shutil

            import torch

            self.folder.mkdir(parents=True, exist_ok=True)
            if shutil.disk_usage(self.folder).free < MIN_FREE_DISK:
                return  # a full disk would fail the run; the states stay in this process
            tmp = self.folder / f".{key}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                torch.save(state, tmp)
                os.replace(tmp, self.folder / f"{key}.pt")
            except OSError:  # the disk filled after all: keep the state in this process only
                tmp.unlink(missing_ok=True)

    def _remember(self, key: str, state) -> None:
        size = state.numel() * state.element_size()
        if self.memory_bytes + size <= MEMORY_BYTES:
            self.memory[key] = state
            self.memory_bytes += size

    def detach(self) -> None:
        """Remove every hook and override: the model is again the method's own."""
        for handle in self._handles:
            handle.remove()
        for block, own in zip(list(self.blocks)[: self.j], self._forwards):
            if own is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = own
        self.model.__dict__.pop(ATTRIBUTE, None)
        self._batch = None


class _Captured(Exception):
    def __init__(self, hidden):
        super().__init__("captured")
        self.hidden = hidden


def _rows(input_ids, mask) -> list[Any] | None:
    """Each row's tokens (a right-padded batch), or None if some mask is not ones then zeros."""
    if mask is None:
        return list(input_ids)
    lengths = mask.sum(dim=1)
    out = []
    for b, n in enumerate(lengths.tolist()):
        if not bool(mask[b, :n].all()) or bool(mask[b, n:].any()):
            return None
        out.append(input_ids[b, :n])
    return out


def _pooler(model: Any) -> Any | None:
    from budgetft.models.architecture import base_of

    base = base_of(model)
    inner = getattr(base, getattr(base, "base_model_prefix", ""), None)
    return getattr(inner, "pooler", None)
