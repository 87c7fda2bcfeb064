"""Each row's state stored once, reused by every later visit: the store behind
budgetft.train.frozen_prefix (which says what a state is and when a model may be served).

A store keys a row by its tokens and finds its state in memory, then in the run's folder, else
computes it by running the model until the state is taken (inference mode, no gradient, the
caller's autocast). States are kept in memory up to MEMORY_BYTES per store and, given a folder
(the run's frozen_states), written there as one file per row, atomically (budgetft.files: trials
running at once share the folder), up to DISK_BYTES in the folder and never on a disk left with
under MIN_FREE_DISK free. A row that fits in neither is computed again on every visit, as
without the store: never an error.

torch is imported inside the methods that need it: importing this module must stay cheap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from budgetft.data.batching import pad_right
from budgetft.files import atomic_write
from budgetft.methods.arch import transformer_blocks

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

# States kept in memory by one store, bytes. FrozenPrefix: ~3,000 BoolQ rows of SmolLM2 in fp32.
# LadderStates holds every block's output: SmolLM2-135M, 30 blocks x 256 tokens x 576 wide is
# 8.8 MB a row in bf16 (17.7 MB in fp32), so ~120 such rows fit (~60 in fp32). Rows past the
# bound are read from the run's folder when there is one, else computed on every visit.
MEMORY_BYTES = 1024**3
ATTRIBUTE = "_budgetft_frozen_prefix"  # where an attached store is found on its model
MIN_FREE_DISK = 2 * 1024**3  # states are not written to a disk with less free space, bytes
# What a run's folder of states (one per identity and kind) may hold, bytes: LST's every-block
# states of SmolLM2 would otherwise take ~70 GB for a trial of 1,000 steps of 8 rows, filling a
# user's disk down to MIN_FREE_DISK. 8 GiB holds ~900 such rows, or every BoolQ row's last_k
# state (~3 GB in fp32).
DISK_BYTES = 8 * 1024**3


def _folder_bytes(folder: Path | None) -> int:
    """What the states already in `folder` take on disk, bytes (0: no folder yet)."""
    if folder is None or not folder.is_dir():
        return 0
    total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".pt"):
                try:
                    total += entry.stat().st_size
                except OSError:  # removed by another trial's cleanup meanwhile
                    pass
    return total


class RowStates:
    """What both kinds share: each row's state keyed by its tokens, found in memory, then in the
    folder, else computed by running the model up to where the state is taken; the bottom
    `served` blocks' forward made skippable. A subclass says what a state is and how it is served."""

    PREPEND = False  # whether the model's pre-hook runs before the method's own pre-hooks

    def __init__(self, model: Any, j: int, label: str, identity: str, folder: Path | None, served: int):
        self.model = model
        self.blocks = transformer_blocks(model)
        self.j = j  # the lowest block that still runs when a batch is served (len(blocks): none)
        self.tag = hashlib.sha256(f"{identity}|{label}".encode()).hexdigest()[:16]
        self.folder = None if folder is None else Path(folder) / self.tag
        self.memory: dict[str, Any] = {}
        self.memory_bytes = 0
        # The folder's states (this store's writes and every earlier store's of the same kind:
        # trials, rounds and sessions of a run all add to one folder), bytes.
        self.disk_bytes = _folder_bytes(self.folder)
        self.computed = 0  # rows whose states this process computed (the rest came from the store)
        self.served = 0  # rows served from stored states
        self._batch: Any = None  # the states of the rows in the forward under way
        self._filling = False
        self._out_len = 0  # a block returns the hidden states (0) or a tuple of this length
        self._served_blocks = served
        self._forwards: list[Any] = []  # each served block's own instance `forward`, if it had one
        self._handles = [model.register_forward_pre_hook(self._before_model, with_kwargs=True, prepend=self.PREPEND)]

    def _start(self) -> None:
        """Override the served blocks' forward and learn what a block returns; last in a
        subclass's __init__, once its own hooks are in place."""
        for i, block in enumerate(list(self.blocks)[: self._served_blocks]):
            self._forwards.append(block.__dict__.get("forward"))
            block.forward = self._skippable(i, block.forward)
        try:
            self._probe()
        except BaseException:
            self.detach()  # a model that cannot be probed is left as the method made it
            raise
        self.model.__dict__[ATTRIBUTE] = self  # for summary(model): a trial stopped by Tune never returns

    def summary(self) -> dict:
        return {"first_trained_block": self.j, "rows_computed": self.computed, "rows_reused": self.served}

    # -- what a subclass defines

    def _skippable(self, i: int, forward):  # pragma: no cover - abstract
        raise NotImplementedError

    def _serve(self, states: list[Any], input_ids) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _split(self, captured, rows: list[Any]) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the model's forward

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
        rows = rows_of(input_ids, kwargs.get("attention_mask"))
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
        self._serve(states, input_ids)
        return None

    def _compute(self, rows: list[Any], like) -> list[Any]:
        """The states of `rows` (1-D token tensors), by running the model until the subclass
        raises _Captured: inference mode, no gradient, the caller's autocast."""
        import torch

        input_ids, mask = pad_right([r.cpu().numpy() for r in rows], 0)
        was_training = self.model.training
        self._filling = True
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(input_ids=input_ids.to(like.device), attention_mask=mask.to(like.device))
            raise RuntimeError("the frozen blocks' states were never reached")  # pragma: no cover
        except Captured as got:
            captured = got.hidden
        finally:
            self._filling = False
            self.model.train(was_training)
        self.computed += len(rows)
        return self._split(captured, rows)

    def _handed_on(self, hidden):
        """What a skipped block returns: `hidden` in the shape the block's own output has (e.g.
        (hidden, attention weights) for GPT-Neo, whose loop reads outputs[0])."""
        return (hidden,) + (None,) * (self._out_len - 1) if self._out_len else hidden

    # -- storing states

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
            import torch

            self.folder.mkdir(parents=True, exist_ok=True)
            size = state.numel() * state.element_size()
            if self.disk_bytes + size > DISK_BYTES or shutil.disk_usage(self.folder).free - size < MIN_FREE_DISK:
                return  # a full disk would fail the run; the state stays in memory if it fits there
            try:  # a cache, computed again if lost: written whole, not fsynced
                atomic_write(self.folder / f"{key}.pt", lambda fh: torch.save(state, fh), durable=False)
                self.disk_bytes += size
            except OSError:  # the disk filled after all: keep the state in this process only
                pass

    def _remember(self, key: str, state) -> None:
        """Keep `state` in memory while the store stays within MEMORY_BYTES; past it, the row is
        read from the folder or computed again on its next visit."""
        size = state.numel() * state.element_size()
        if self.memory_bytes + size <= MEMORY_BYTES:
            self.memory[key] = state
            self.memory_bytes += size

    def detach(self) -> None:
        """Remove every hook and override: the model is again the method's own."""
        for handle in self._handles:
            handle.remove()
        for block, own in zip(list(self.blocks)[: self._served_blocks], self._forwards):
            if own is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = own
        self.model.__dict__.pop(ATTRIBUTE, None)
        self._batch = None


class Captured(Exception):
    """Raised by a subclass's hook when the state it takes is reached: ends the partial forward."""

    def __init__(self, hidden):
        super().__init__("captured")
        self.hidden = hidden


def rows_of(input_ids, mask) -> list[Any] | None:
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
