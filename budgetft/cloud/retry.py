"""Backing off and retrying a cloud call that failed for a passing reason (HTTP 429, 5xx,
rateLimitExceeded, a dropped connection).

Exponential backoff with full jitter, as Google's API guidance asks of clients: the n-th retry
waits a random time in [0, min(cap, first * 2**n)] seconds, so many clients throttled at once do
not come back in step. Only calls that are safe to repeat are retried: reads, and inserts and
deletes that carry a `requestId` (Compute Engine answers a repeated requestId with the first
call's operation instead of acting twice).

Pure: the clock (`sleep`) and the randomness (`rng`) are passed in, so tests run it instantly
and a multi-VM launcher can share one policy across its VMs.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass
class Backoff:
    first_s: float = 1.0
    cap_s: float = 32.0
    attempts: int = 6  # calls in all: 1 + 5 retries, ~30 s of waiting on average, ~62 s at most
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    waited_s: float = 0.0  # what this policy has slept so far (for the error message)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        return self.rng.uniform(0.0, min(self.cap_s, self.first_s * 2**retry))

    def run(self, call: Callable[[], T], is_transient: Callable[[BaseException], bool], on_retry: Callable[[BaseException, float], None] | None = None) -> T:
        """`call()`, repeated after a backoff while it raises an error `is_transient` accepts;
        the last error is raised when the attempts run out."""
        for attempt in range(self.attempts):
            try:
                return call()
            except Exception as exc:  # noqa: BLE001 - the caller's predicate decides
                if attempt == self.attempts - 1 or not is_transient(exc):
                    raise
                pause = self.delay(attempt)
                if on_retry is not None:
                    on_retry(exc, pause)
                self.sleep(pause)
                self.waited_s += pause
        raise AssertionError("unreachable")  # pragma: no cover
