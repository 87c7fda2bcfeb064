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

from pathlib import Path
from typing import Any

from budgetft.methods.arch import final_norm, head_modules, transformer_blocks
from budgetft.methods.lst import SIDE
from budgetft.models.architecture import base_of
from budgetft.scoring.verbalizer import BIAS_ATTRIBUTE
from budgetft.train.row_states import ATTRIBUTE, Captured, RowStates

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

MIN_FROZEN_SHARE = 0.25  # below a quarter of the blocks frozen, storing states saves too little


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


def attach(model: Any, identity: str, folder: Path | None = None) -> "RowStates | None":
    """Serve `model`'s frozen blocks from stored states when the method left them servable (a
    FrozenPrefix, or LadderStates for LST); None when it did not. `identity` names the frozen
    weights and the precision (e.g. the model's path and the autocast dtype): states stored under
    one identity are never served to another."""
    j = first_trained_block(model)
    if j is not None:
        return FrozenPrefix(model, j, identity, folder)
    n = ladder_blocks(model)
    return None if n is None else LadderStates(model, n, identity, folder)


class FrozenPrefix(RowStates):
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
            raise Captured(args[0] if args else kwargs["hidden_states"])
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


class LadderStates(RowStates):
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
                    raise Captured(torch.stack(taken))
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


def _pooler(model: Any) -> Any | None:
    base = base_of(model)
    inner = getattr(base, getattr(base, "base_model_prefix", ""), None)
    return getattr(inner, "pooler", None)
