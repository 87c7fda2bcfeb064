"""ray.init puts its own SIGTERM handler (a bare sys.exit) over the driver's, and its core worker
a C++ crash handler: during tune.fit, SIGTERM then raised inside Ray's code and the driver
aborted with exit 134 and no report (issue 27). Our handlers are put back after ray.init."""

import signal

import pytest

from budgetft.tune import ray_session

pytestmark = pytest.mark.slow  # starts a local Ray instance (~10-20 s)


def test_the_drivers_signal_handlers_survive_ray_init():
    def ours(signum, frame):
        pass

    kept = {s: signal.signal(s, ours) for s in ray_session.KEPT_SIGNALS}
    try:
        assert ray_session.start(1)
        try:
            assert all(signal.getsignal(s) is ours for s in ray_session.KEPT_SIGNALS)
        finally:
            ray_session.stop()
    finally:
        for s, handler in kept.items():
            signal.signal(s, handler)
