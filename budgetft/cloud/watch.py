"""Watching a cloud run from the launching machine: the VM's state from the cloud, and the run's
spend and best accuracy from what the VM uploads. Ends when the VM is done, gone, silent, past
its deadline, or the user presses Ctrl-C; deciding what to do then is the launcher's job."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from rich.console import Console

from budgetft.cloud.estimate import SHUTDOWN_SECONDS, duration_text, money
from budgetft.cloud.provider import STOPPED_STATES, VM, Provider
from budgetft.cloud.storage import Bucket

POLL_SECONDS = 20.0  # one instance GET, one listing and a few small object reads per poll (side_costs.LAUNCHER_POLL_S)
QUIET_LOG_SECONDS = 60.0  # without a terminal, print a progress line at least this often
# A VM whose start-up script has not reported a phase after this many times the boot estimate is
# presumed broken (wrong image, service account cannot write the bucket): we delete it.
SILENT_FACTOR = 3.0
DEADLINE_GRACE_SECONDS = 300  # Compute Engine should have deleted it by then; we do it ourselves
# Polls that may fail in a row (network blips, API hiccups) before we call the VM lost.
MAX_POLL_FAILURES = 15


@dataclass(frozen=True)
class Progress:
    status: str
    phase: str | None
    spent: Decimal | None
    best_accuracy: float | None
    best_trial: str | None
    trials: int
    elapsed_s: float

    def line(self, cap: Decimal) -> str:
        spent = f"${self.spent:.4f} of ${money(cap)}" if self.spent is not None else f"$? of ${money(cap)}"
        best = f"best accuracy {self.best_accuracy:.3f} ({self.best_trial})" if self.best_accuracy is not None else "no evaluation yet"
        phase = f", {self.phase}" if self.phase else ""
        return f"VM {self.status}{phase} · {duration_text(int(self.elapsed_s))} · {spent} · {self.trials} trial(s), {best}"


@dataclass(frozen=True)
class Outcome:
    kind: str  # finished | failed | stopped | gone | silent | deadline | interrupted | lost
    exit_code: int | None
    last_vm: VM | None  # the last state seen while the VM existed
    gone_at: datetime | None  # when we first saw it gone
    progress: Progress | None


class Watcher:
    def __init__(
        self,
        provider: Provider,
        bucket: Bucket,
        prefix: str,
        zone: str,
        name: str,
        *,
        cap: Decimal,
        max_run_seconds: int,
        boot_estimate_s: float,
        console: Console,
        poll_s: float | None = None,
    ):
        self.provider, self.bucket, self.prefix = provider, bucket, prefix
        self.zone, self.name = zone, name
        self.cap = cap
        self.max_run_seconds = max_run_seconds
        self.boot_estimate_s = boot_estimate_s
        self.console = console
        self.poll_s = POLL_SECONDS if poll_s is None else poll_s
        # trial.json name -> ((size, updated), best accuracy, trial id): a trial is read again
        # only when the listing says it changed (Cloud Storage bills every read).
        self._trials: dict[str, tuple[tuple, float | None, str | None]] = {}

    # -- what the VM uploaded

    def read_progress(self, vm: VM | None, started: float) -> Progress:
        phase = (self.bucket.read_text(f"{self.prefix}/vm/phase") or "").strip() or None
        spent = None
        ledger = self.bucket.read_text(f"{self.prefix}/run/ledger.jsonl") or ""
        for line in reversed(ledger.splitlines()):
            try:
                spent = Decimal(json.loads(line)["total_usd"])
                break
            except (ValueError, KeyError, TypeError, ArithmeticError):
                continue  # a torn last line: look at the one before
        best, best_id, trials = None, None, 0
        for blob in self.bucket.list(f"{self.prefix}/run/trials"):
            if not blob.name.endswith("/trial.json"):
                continue
            trials += 1
            stamp = (blob.size, blob.updated)
            cached = self._trials.get(blob.name)
            if cached is None or cached[0] != stamp:
                cached = (stamp, *_best_eval(self.bucket.read_text(blob.name)))
                self._trials[blob.name] = cached
            _, acc, trial_id = cached
            if acc is not None and (best is None or acc > best):
                best, best_id = acc, trial_id
        status = vm.status if vm else "GONE"
        return Progress(status, phase, spent, best, best_id, trials, time.monotonic() - started)

    def exit_code(self) -> int | None:
        text = self.bucket.read_text(f"{self.prefix}/vm/exit_code")
        if text is None:
            return None
        try:
            return int(text.strip())
        except ValueError:
            return -1

    # -- the loop

    def watch(self) -> Outcome:
        started = time.monotonic()
        last_vm: VM | None = None
        progress: Progress | None = None
        done_seen_at: float | None = None
        ever_reported = False
        status_ctx = self.console.status("waiting for the VM…") if self.console.is_terminal else None
        last_print, last_text = 0.0, ""
        failures = 0
        try:
            if status_ctx:
                status_ctx.__enter__()
            while True:
                try:
                    vm = self.provider.get(self.zone, self.name)
                    progress = self.read_progress(vm, started)
                    code = self.exit_code()
                    failures = 0
                except Exception as exc:  # the network or an API, not the VM: keep watching a while
                    failures += 1
                    self.console.print(f"[yellow]poll failed ({failures}/{MAX_POLL_FAILURES}): {exc}[/]", highlight=False)
                    if failures >= MAX_POLL_FAILURES:
                        return Outcome("lost", None, last_vm, None, progress)
                    time.sleep(self.poll_s)
                    continue
                ever_reported = ever_reported or progress.phase is not None
                text = progress.line(self.cap)
                if status_ctx:
                    status_ctx.update(text)
                elif text.split(" · ")[0] != last_text.split(" · ")[0] or time.monotonic() - last_print >= QUIET_LOG_SECONDS:
                    self.console.print(text, highlight=False)
                    last_print, last_text = time.monotonic(), text
                if vm is None:
                    kind = "finished" if code == 0 else ("failed" if code is not None else "gone")
                    return Outcome(kind, code, last_vm, datetime.now(timezone.utc), progress)
                last_vm = vm
                if vm.status in STOPPED_STATES:
                    kind = "finished" if code == 0 else ("failed" if code is not None else "stopped")
                    return Outcome(kind, code, vm, None, progress)
                if code is not None:
                    # The job is over and uploaded; the VM is powering itself off. Give it the
                    # shutdown allowance, then the launcher deletes it either way.
                    done_seen_at = done_seen_at or time.monotonic()
                    if time.monotonic() - done_seen_at >= SHUTDOWN_SECONDS:
                        return Outcome("finished" if code == 0 else "failed", code, vm, None, progress)
                age = vm.billed_seconds()
                if not ever_reported and age > SILENT_FACTOR * self.boot_estimate_s:
                    return Outcome("silent", None, vm, None, progress)
                if age > self.max_run_seconds + DEADLINE_GRACE_SECONDS:
                    return Outcome("deadline", code, vm, None, progress)
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            return Outcome("interrupted", None, last_vm, None, progress)
        finally:
            if status_ctx:
                status_ctx.__exit__(None, None, None)


def _best_eval(text: str | None) -> tuple[float | None, str | None]:
    """(best accuracy, trial id) of a trial.json's text; (None, None) when unreadable."""
    try:
        trial = json.loads(text or "{}")
    except ValueError:
        return None, None
    best = None
    for ev in trial.get("evals") or []:
        acc = ev.get("accuracy")
        if isinstance(acc, (int, float)) and (best is None or acc > best):
            best = float(acc)
    return best, trial.get("trial_id")
