"""Frozen layers computed once: when a method's frozen blocks depend only on a row's tokens, what
they hand on is computed the first time a row is seen and reused by every later step, evaluation
and trial of the run. Two kinds, chosen by `attach` from what the method left trainable:

- FrozenPrefix (last_k, and any method whose trained parts all sit above a stack of frozen
  blocks: the top k blocks, the final norm, an encoder's head): one state per row, the hidden
  state that enters the lowest trained block. A step runs only the trained blocks: on
  SmolLM2-135M with k=2, 2 of 30 blocks (benchmarks/frozen_prefix.py measures it).
- LadderStates (lst): the side network reads every frozen block's output through its ladders,
  so each row's state is all of them, one [tokens, width] slice per frozen block. LST (k = 0):
  every block's output, and on a later visit no backbone block runs; k-LST: the outputs of the
  blocks below the top k, which then run on the last stored output as last_k's do.

How it plugs in, without touching the model's code or its saved weights:
- a pre-hook on the model's forward reads each row's tokens (input_ids up to its attention mask:
  scoring pads on the right), computes the rows not yet stored with the frozen blocks alone (no
  gradient, inference mode: their dropout is off, as for a feature extractor), and stores them;
- the frozen blocks' forward is overridden on the instance (their parameters and state_dict
  names are untouched) while a batch is served: FrozenPrefix's hand their input straight on and a
  pre-hook on the lowest trained block replaces its input with the stored states; LadderStates'
  return their own stored outputs, so every hook on a block (LST's ladders) sees what the block
  would have computed.
`detach()` removes all of it: the model is then exactly the one the method produced.

Served only when that changes nothing training sees: nothing trainable in or below the frozen
blocks (a soft prompt, an embedding, a bias; LST's side network only reads them), no dropout
active in them in training (MiniLM's and BERT's 0.1), at least MIN_FROZEN_SHARE of the blocks
frozen. States are kept in memory up to MEMORY_BYTES per store and, given a folder (the run's
frozen_states), written there as one file per row, under a temporary name then renamed (trials
running at once share the folder), up to DISK_BYTES in the folder and never on a disk left with
under MIN_FREE_DISK free. A row that fits
in neither is computed again on every visit, as without the store: never an error.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from budgetft.methods.arch import final_norm, head_modules, transformer_blocks

# States kept in memory by one store, bytes. FrozenPrefix: ~3,000 BoolQ rows of SmolLM2 in fp32.
# LadderStates holds every block's output: SmolLM2-135M, 30 blocks x 256 tokens x 576 wide is
# 8.8 MB a row in bf16 (17.7 MB in fp32), so ~120 such rows fit (~60 in fp32). Rows past the
# bound are read from the run's folder when there is one, else computed on every visit.
MEMORY_BYTES = 1024**3
ATTRIBUTE = "_budgetft_frozen_prefix"  # where an attached store is found on its model
MIN_FREE_DISK = 2 * 1024**3  # states are not written to a disk with less free space, bytes
# What a run's folder of states (one per identity and kind) may hold, bytes: LST's every-block states of SmolLM2 would
# otherwise take ~70 GB for a trial of 1,000 steps of 8 rows, filling a user's disk down to
# MIN_FREE_DISK. 8 GiB holds ~900 such rows, or every BoolQ row's last_k state (~3 GB in fp32).
DISK_BYTES = 8 * 1024**3
MIN_FROZEN_SHARE = 0.25  # below a quarter of the blocks frozen, storing states saves too little


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


def summary(model: Any) -> dict | None:
    """What the store attached to `model` did so far (None: none is attached)."""
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
    if _trains_outside(model, j, allowed=()):
        return None  # something below the blocks learns (a soft prompt, an embedding, a bias)
    if _drops_out(model, list(blocks)[:j]):
        return None  # stored states would train the top on inputs without the frozen blocks' dropout
    return j


def ladder_blocks(model: Any) -> int | None:
    """For a model with LST's side network: how many blocks, from the bottom, are frozen and may
    be served from stored outputs (every block for LST, all but the top k for k-LST), under the
    rules first_trained_block applies; None when the model has no side network or may not be
    served."""
    from budgetft.methods.lst import SIDE

    side = getattr(model, SIDE, None)
    if side is None:
        return None
    blocks = transformer_blocks(model)
    trained = [i for i, block in enumerate(blocks) if any(p.requires_grad for p in block.parameters())]
    n = trained[0] if trained else len(blocks)
    if n < max(1, MIN_FROZEN_SHARE * len(blocks)):
        return None
    if _trains_outside(model, n, allowed=(side,)):
        return None  # something below or between the blocks learns
    if _drops_out(model, list(blocks)[:n]):
        return None  # the side network would read outputs without the blocks' dropout
    return n


def _trains_outside(model: Any, j: int, allowed: tuple) -> bool:
    """Whether a trainable parameter sits anywhere but in blocks j and above, the final norm, the
    pooler, the classification head, the verbalizer's class bias (a later phase finds it
    attached; it adds to the scores at the top) or the `allowed` modules."""
    from budgetft.scoring.verbalizer import BIAS_ATTRIBUTE

    blocks = transformer_blocks(model)
    above = {id(p) for block in list(blocks)[j:] for p in block.parameters()}
    for module in [final_norm(model), *head_modules(model), _pooler(model), *allowed]:
        if module is not None:
            above.update(id(p) for p in module.parameters())
    return any(p.requires_grad and id(p) not in above for n, p in model.named_parameters() if n != BIAS_ATTRIBUTE)


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


def attach(model: Any, identity: str, folder: Path | None = None) -> "_RowStates | None":
    """Serve `model`'s frozen blocks from stored states when the method left them servable (a
    FrozenPrefix, or LadderStates for LST); None when it did not. `identity` names the frozen
    weights and the precision (e.g. the model's path and the autocast dtype): states stored under
    one identity are never served to another."""
    j = first_trained_block(model)
    if j is not None:
        return FrozenPrefix(model, j, identity, folder)
    n = ladder_blocks(model)
    return None if n is None else LadderStates(model, n, identity, folder)


class _RowStates:
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
        rows = _rows(input_ids, kwargs.get("attention_mask"))
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

        from budgetft.data.batching import pad_right

        input_ids, mask = pad_right([r.cpu().numpy() for r in rows], 0)
        was_training = self.model.training
        self._filling = True
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(input_ids=input_ids.to(like.device), attention_mask=mask.to(like.device))
            raise RuntimeError("the frozen blocks' states were never reached")  # pragma: no cover
        except _Captured as got:
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
            import shutil

            import torch

            self.folder.mkdir(parents=True, exist_ok=True)
            size = state.numel() * state.element_size()
            if self.disk_bytes + size > DISK_BYTES or shutil.disk_usage(self.folder).free - size < MIN_FREE_DISK:
                return  # a full disk would fail the run; the state stays in memory if it fits there
            tmp = self.folder / f".{key}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                torch.save(state, tmp)
                os.replace(tmp, self.folder / f"{key}.pt")
                self.disk_bytes += size
            except OSError:  # the disk filled after all: keep the state in this process only
                tmp.unlink(missing_ok=True)

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


class FrozenPrefix(_RowStates):
    """One state per row: the input of the lowest trained block j. The blocks below it hand their
    input on while a batch is served; a pre-hook on block j puts the stored states in its place."""

    def __init__(self, model: Any, first_trained: int, identity: str, folder: Path | None = None):
        super().__init__(model, first_trained, f"block {first_trained}", identity, folder, served=first_trained)
        self._handles += [
            self.blocks[first_trained].register_forward_pre_hook(self._before_first_trained, with_kwargs=True),
            self.blocks[0].register_forward_hook(self._note_output_kind),
        ]
        self._start()

    def _skippable(self, i: int, forward):
        def run(*args, **kwargs):
            if self._batch is None:
                return forward(*args, **kwargs)
            hidden = args[0] if args else kwargs["hidden_states"]
            return self._handed_on(hidden)  # the stored states replace it at the lowest trained block

        return run

    def _note_output_kind(self, module, args, output):
        self._out_len = len(output) if isinstance(output, tuple) else 0

    def _serve(self, states: list[Any], input_ids) -> None:
        self._batch = states

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

    def _split(self, hidden, rows: list[Any]) -> list[Any]:
        return [hidden[b, : len(r)].detach().to("cpu").clone() for b, r in enumerate(rows)]


class LadderStates(_RowStates):
    """LST's store: each row's state is the outputs of the bottom n blocks, stacked
    [n, tokens, width]. While a batch is served, block i returns its stored output (padded to the
    batch) without running: LST's ladder hooks read it, its last-block hook adds the side
    network's correction to it (k = 0), and the trained top k blocks of k-LST run on the output
    of block n - 1 as the model's loop hands it on.

    The model's pre-hook runs before LST's own (PREPEND): computing missing rows runs a partial
    forward (it stops after block n - 1) that leaves LST's list of ladder inputs half filled, and
    LST's pre-hook empties it for the forward that follows."""

    PREPEND = True

    def __init__(self, model: Any, n: int, identity: str, folder: Path | None = None):
        super().__init__(model, n, f"ladder {n}", identity, folder, served=n)
        self._captured: list[Any] = []  # block outputs of the partial forward under way
        self._start()

    def summary(self) -> dict:
        return {**super().summary(), "ladder_blocks": self.j}

    def _compute(self, rows: list[Any], like) -> list[Any]:
        self._captured = []  # nothing left over from a partial forward that failed (e.g. out of memory)
        return super()._compute(rows, like)

    def _skippable(self, i: int, forward):
        last = self.j - 1

        def run(*args, **kwargs):
            if self._filling:
                output = forward(*args, **kwargs)
                self._out_len = len(output) if isinstance(output, tuple) else 0
                self._captured.append(output[0] if isinstance(output, tuple) else output)
                if i == last:  # raised before this block's hooks: LST's sees no partial pass
                    import torch

                    taken, self._captured = self._captured, []
                    raise _Captured(torch.stack(taken))
                return output
            if self._batch is None:
                return forward(*args, **kwargs)
            hidden = args[0] if args else kwargs["hidden_states"]
            stored = self._batch[i]
            if i == last:
                self._batch = None
            if tuple(stored.shape[:2]) != tuple(hidden.shape[:2]):
                raise RuntimeError(f"LST's stored block outputs are {tuple(stored.shape[:2])} rows x tokens; the block got {tuple(hidden.shape[:2])}")
            return self._handed_on(stored)

        return run

    def _serve(self, states: list[Any], input_ids) -> None:
        """The batch's stored outputs, padded on the right with zeros (no real position attends
        to a padded one, and the side network works token by token), moved to the device in one
        copy: [n, rows, tokens, width]."""
        import torch

        rows, tokens = input_ids.shape
        n, _, width = states[0].shape
        batch = torch.zeros((n, rows, tokens, width), dtype=states[0].dtype)
        for b, state in enumerate(states):
            batch[:, b, : state.shape[1]] = state
        self._batch = batch.to(input_ids.device)

    def _split(self, stacked, rows: list[Any]) -> list[Any]:
        return [stacked[:, b, : len(r)].detach().to("cpu").clone() for b, r in enumerate(rows)]


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
