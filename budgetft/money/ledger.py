"""The run's money record: an append-only JSON-lines file, `<run_dir>/ledger.jsonl`.

One line per charge, written, flushed and fsynced before `charge()` returns, so the caller starts
the work it paid for only once the payment is on disk. A crash therefore loses no charge; at worst
it leaves a torn last line (a write the kernel never finished), which reopening ignores and cuts
off. Reopening recovers the exact spend: the sum of the complete lines, which must agree with their
running totals.

The cap is enforced here, not by callers: a charge that would take the total past the cap is
refused with `BudgetExceeded` and nothing is written. Every write happens under an exclusive
`flock` after re-reading what other processes appended, so several processes sharing one ledger
(e.g. Ray workers) cannot jointly overspend either.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterator

from budgetft.clock import utc_now
from budgetft.disk import as_disk_full, fault_seam
from budgetft.money.usd import round_up, usd

LEDGER_FILENAME = "ledger.jsonl"

# What money is spent on; reports total by these. A typo is an error that lists them.
CATEGORIES = (
    "baselines",
    "boot",
    "calibration",
    "evaluation",
    "minimum",  # the unused part of a machine start's one-minute billing minimum, charged as it closes
    "overhead",
    "report",
    "teardown",
    "training",
    "upload",
)


class LedgerError(RuntimeError):
    """The ledger file cannot be trusted (a corrupt line that is not the torn last one)."""


class BudgetExceeded(RuntimeError):
    """A charge was refused because it would take the total spend past the cap."""

    def __init__(self, cap: Decimal, spent: Decimal, requested: Decimal, what: str = ""):
        self.cap, self.spent, self.requested = cap, spent, requested
        self.remaining = max(cap - spent, Decimal(0))
        super().__init__(
            f"budget cap ${cap} would be exceeded: ${spent} spent, ${requested} requested"
            f"{f' for {what}' if what else ''}, ${self.remaining} remaining; nothing was charged"
        )


@dataclass(frozen=True)
class Charge:
    """One ledger line. Amounts are USD; `total` is the running total including this charge."""

    seq: int
    ts: str  # UTC, ISO 8601
    category: str
    description: str
    amount: Decimal
    total: Decimal
    cap: Decimal  # the cap in force when the charge was made (audit trail)
    trial: str | None = None
    key: str | None = None  # idempotency key: a unit of work is charged at most once
    node: str | None = None  # on a cluster: the node whose time this pays for (None: the run's one machine)

    def to_json(self) -> str:
        # A single machine's lines stay as they were: "node" only where there is one.
        return json.dumps(
            {
                "seq": self.seq,
                "ts": self.ts,
                "category": self.category,
                "description": self.description,
                "trial": self.trial,
                "key": self.key,
                "amount_usd": str(self.amount),
                "total_usd": str(self.total),
                "cap_usd": str(self.cap),
                **({"node": self.node} if self.node is not None else {}),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> Charge:
        d = json.loads(line)
        return cls(
            seq=int(d["seq"]),
            ts=str(d["ts"]),
            category=str(d["category"]),
            description=str(d["description"]),
            amount=usd(d["amount_usd"]),
            total=usd(d["total_usd"]),
            cap=usd(d["cap_usd"]),
            trial=d.get("trial"),
            key=d.get("key"),
            node=d.get("node"),
        )


def _split_complete(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (each ended by a newline) and the unterminated tail after them."""
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), data[end:]


def read_charges(path: str | Path) -> list[Charge]:
    """Read a ledger without opening it for writing (reports, inspection). A torn last line is
    skipped but left in place; `Ledger` repairs it when it next opens the file."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    return parse_charges(data, str(path))


def parse_charges(data: bytes | str, where: str = "ledger") -> list[Charge]:
    """The charges of a ledger's text (a copy not yet on disk, e.g. a VM's), checked as
    read_charges checks a file: a torn last line is skipped, a broken chain is a LedgerError."""
    lines, _tail = _split_complete(data.encode("utf-8") if isinstance(data, str) else data)
    charges, _bad_last = _parse_lines(lines, where)
    return charges


def _parse_lines(lines: list[bytes], where: str, first_seq: int = 1, total: Decimal = Decimal(0)):
    """Parse and check complete lines. An unparseable LAST line is reported (returned as True) so
    the caller can treat it as torn; an unparseable or inconsistent line before it is an error."""
    charges: list[Charge] = []
    for i, raw in enumerate(lines):
        try:
            charge = Charge.from_json(raw.decode("utf-8"))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            if i == len(lines) - 1:
                return charges, True
            raise LedgerError(f"{where}: line {first_seq + i} is not a valid charge: {exc}") from exc
        expected_seq = first_seq + len(charges)
        if charge.seq != expected_seq or charge.total != total + charge.amount or charge.amount < 0:
            raise LedgerError(
                f"{where}: line {first_seq + i} breaks the chain (seq {charge.seq}, expected "
                f"{expected_seq}; total {charge.total}, expected {total + charge.amount})"
            )
        total = charge.total
        charges.append(charge)
    return charges, False


class Ledger:
    """Append-only record of a run's spending, capped at `cap` USD.

    `spent`, `remaining`, `records` reflect this process's last read (every `charge()` and
    `refresh()` re-reads what others appended); `charge()` is the only way money is recorded.
    """

    def __init__(self, run_dir: str | Path, cap: Decimal | int | float | str):
        self.cap = round_up(usd(cap))
        if self.cap < 0:
            raise ValueError(f"budget cap must be >= 0, got {cap!r}")
        self.path = Path(run_dir) / LEDGER_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        # O_APPEND: every write lands at the current end, whoever else has the file open.
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if created:  # make the new directory entry itself durable
            _fsync_dir(self.path.parent)
        self._thread_lock = threading.RLock()
        self._records: list[Charge] = []
        self._by_key: dict[str, Charge] = {}
        self._offset = 0  # bytes of the file already parsed (always at a line boundary)
        self.spent = Decimal(0)
        self.repaired_bytes = 0  # how many bytes of torn tail were cut off, for logs
        with self._locked():
            self._catch_up()

    # -- reading

    @property
    def remaining(self) -> Decimal:
        return max(self.cap - self.spent, Decimal(0))

    @property
    def records(self) -> tuple[Charge, ...]:
        return tuple(self._records)

    def find(self, key: str) -> Charge | None:
        return self._by_key.get(key)

    def can_afford(self, amount: Decimal | int | float | str) -> bool:
        return self.spent + round_up(usd(amount)) <= self.cap

    def by_category(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        for charge in self._records:
            totals[charge.category] = totals.get(charge.category, Decimal(0)) + charge.amount
        return totals

    def by_trial(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        for charge in self._records:
            if charge.trial is not None:
                totals[charge.trial] = totals.get(charge.trial, Decimal(0)) + charge.amount
        return totals

    def refresh(self) -> None:
        """Pick up charges other processes appended since our last read."""
        with self._locked():
            self._catch_up()

    # -- writing

    def charge(
        self,
        amount: Decimal | int | float | str,
        category: str,
        description: str,
        *,
        trial: str | None = None,
        key: str | None = None,
        node: str | None = None,
    ) -> Charge:
        """Record a charge durably, then return it; raise BudgetExceeded (writing nothing) if it
        would pass the cap. With `key`, a charge already recorded under that key is returned
        as it is and nothing new is charged (a resumed run never pays twice for one unit)."""
        return self.charge_once(amount, category, description, trial=trial, key=key, node=node)[0]

    def charge_once(
        self,
        amount: Decimal | int | float | str,
        category: str,
        description: str,
        *,
        trial: str | None = None,
        key: str | None = None,
        node: str | None = None,
    ) -> tuple[Charge, bool]:
        """`charge()`, also saying whether a new charge was written (False: `key` was already
        in the ledger, possibly written by another process a moment ago)."""
        value = round_up(usd(amount))  # rounded up: the ledger never under-counts
        if value < 0:
            raise ValueError(f"a charge cannot be negative (no refunds), got {amount!r}")
        if category not in CATEGORIES:
            raise ValueError(f"unknown charge category {category!r}; valid: {', '.join(CATEGORIES)}")
        with self._locked():
            self._catch_up()
            if key is not None and key in self._by_key:
                return self._by_key[key], False
            if self.spent + value > self.cap:
                raise BudgetExceeded(self.cap, self.spent, value, f"{category}: {description}")
            record = Charge(
                seq=len(self._records) + 1,
                ts=utc_now("microseconds"),
                category=category,
                description=description,
                amount=value,
                total=self.spent + value,
                cap=self.cap,
                trial=trial,
                key=key,
                node=node,
            )
            data = (record.to_json() + "\n").encode("utf-8")
            try:
                fault_seam(self.path)
                _write_all(self._fd, data)
                os.fsync(self._fd)  # on disk before the caller starts the work it paid for
            except BaseException as exc:
                # Leave no partial line behind us (best effort; reopening would cut it anyway).
                # The charge is not recorded, so the work it would pay for does not start.
                os.ftruncate(self._fd, self._offset)
                if isinstance(exc, OSError):
                    raise as_disk_full(exc, self.path.parent, "the ledger") from None
                raise
            self._offset += len(data)
            self._add(record)
            return record, True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive use of the file: against other processes (flock), and against other threads
        of this one (flock is held per open file, so two threads sharing this Ledger would
        both hold it at once and write the same sequence number)."""
        with self._thread_lock:
            if self._fd < 0:
                raise LedgerError(f"{self.path} is closed")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _catch_up(self) -> None:
        """Parse bytes appended since `_offset`; cut off a torn tail. Call with the lock held:
        every writer holds it while writing, so an unterminated tail now is a dead writer's."""
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size - self._offset, self._offset) if size > self._offset else b""
        lines, tail = _split_complete(data)
        charges, bad_last = _parse_lines(lines, str(self.path), len(self._records) + 1, self.spent)
        good = sum(len(line) + 1 for line in lines[: len(charges)])
        if bad_last or tail:
            self.repaired_bytes += len(data) - good
            os.ftruncate(self._fd, self._offset + good)
            os.fsync(self._fd)
        self._offset += good
        for charge in charges:
            self._add(charge)

    def _add(self, charge: Charge) -> None:
        self._records.append(charge)
        self.spent = charge.total
        if charge.key is not None:
            self._by_key[charge.key] = charge


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
