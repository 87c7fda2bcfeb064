"""The outbox: a caller never waits for a tracker, and whatever a tracker fails to take is
dropped and written down, never retried. No timing: slow calls are calls blocked on an event
that the test releases."""

import threading

from budgetft.track.outbox import Outbox


def test_a_put_returns_while_the_backend_is_blocked_and_calls_keep_their_order():
    release, made = threading.Event(), []
    box = Outbox("fake")
    box.put(release.wait, what="a blocked call")
    for i in range(5):
        assert box.put(made.append, i, what=f"call {i}")  # queued at once: the first call still blocks
    assert made == []
    release.set()
    assert box.wait_idle(30)
    assert made == [0, 1, 2, 3, 4] and not box.notes.any()


def test_a_failing_call_is_noted_and_the_next_one_is_made():
    made = []

    def broken():
        raise ConnectionError("server said no\nsecond line")

    box = Outbox("fake")
    box.put(broken, what="sending metrics")
    box.put(made.append, "after", what="the next call")
    assert box.close(30)
    assert made == ["after"]
    assert box.notes.failed == 1 and box.notes.dropped == 0
    assert "fake: sending metrics failed: ConnectionError: server said no" in box.notes.messages[0]


def test_a_call_past_its_timeout_is_given_up_and_what_waits_behind_it_is_dropped():
    stuck, entered, made = threading.Event(), threading.Event(), []

    def hang():
        entered.set()
        stuck.wait()

    box = Outbox("fake")
    box.put(made.append, "before", what="a quick call")
    box.put(hang, what="a hanging upload", timeout_s=0.01)
    assert entered.wait(30)
    # The outbox gives up on the hanging call; until it returns, every new call is dropped.
    for _ in range(2000):
        if box.notes.timed_out:
            break
        threading.Event().wait(0.01)
    assert box.notes.timed_out == 1 and "a hanging upload took more than 0 s: given up on" in box.notes.messages[0]
    assert not box.put(made.append, "while stalled", what="metrics")
    assert box.notes.dropped >= 1 and any("an earlier call has run past its" in m for m in box.notes.messages)
    stuck.set()  # the call returns at last: the outbox takes calls again
    for _ in range(2000):
        if box.put(made.append, "after", what="metrics"):
            break
        threading.Event().wait(0.01)
    assert box.close(30)
    assert made == ["before", "after"]


def test_a_full_queue_drops_the_new_call():
    release = threading.Event()
    box = Outbox("fake", capacity=2)
    box.put(release.wait, what="a blocked call")
    while box._items:  # the blocked call has left the queue for its thread
        threading.Event().wait(0.01)
    assert box.put(lambda: None, what="one") and box.put(lambda: None, what="two")
    assert not box.put(lambda: None, what="three")
    assert box.notes.dropped == 1 and "three dropped: 2 calls were already waiting" in box.notes.messages[0]
    release.set()
    assert box.close(30)


def test_calls_still_queued_when_the_wait_ends_are_dropped_and_noted():
    release = threading.Event()
    box = Outbox("fake")
    box.put(release.wait, what="a blocked call")
    while box._items:  # the blocked call has left the queue for its thread
        threading.Event().wait(0.01)
    box.put(lambda: None, what="one")
    box.put(lambda: None, what="two")
    assert not box.close(0)
    assert box.notes.dropped == 2 and "2 queued calls (one, two) dropped: the run stopped waiting for tracking" in box.notes.messages[0]
    assert not box.put(lambda: None, what="late")  # closed: nothing more is taken
    release.set()


def test_consecutive_metric_calls_for_one_run_are_sent_as_one_batch():
    release, batches = threading.Event(), []
    box = Outbox("fake")
    box.put(release.wait, what="a blocked call")
    for step in range(1, 4):
        box.put(lambda points, run: batches.append((run, list(points))), [step], "t1", what="metrics", merge=("log", "t1"))
    box.put(lambda points, run: batches.append((run, list(points))), [9], "t2", what="metrics", merge=("log", "t2"))
    release.set()
    assert box.close(30)
    assert batches == [("t1", [1, 2, 3]), ("t2", [9])]
