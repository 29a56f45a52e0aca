"""The Replicator engine in-process, with a scripted copier instead of S3.

Ordering, coalescing, holding work for a destination that is down, retries and giving up
are timing-sensitive rules; a copier the test injects makes them observable exactly. The
per-key order and the breaker are plain state, tested here without threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from test_listener_support import wait_until

from s3s3.errors import (
    CorruptedOnTransfer,
    FatalEndpointError,
    ObjectTooLarge,
    ShortRead,
    TransientEndpointError,
)
from s3s3.listener.counters import Counters
from s3s3.listener.health import Breaker, is_outage
from s3s3.listener.ordering import KeyOrder
from s3s3.listener.replicator import Replicator, cannot_succeed
from s3s3.model import CopyResult, Outcome, WorkItem
from s3s3.retry import Policy


class FakeEndpoint:
    def __init__(self, name: str, keys: set[str] | None = None) -> None:
        self.name = name
        self.bucket = name
        self.keys = set(keys or ())
        self.deleted: list[str] = []

    def head(self, key):
        return object() if key in self.keys else None

    def delete(self, key):
        self.deleted.append(key)


class Script:
    """A copier: records calls and concurrency; behaviour set per test."""

    def __init__(self, source: FakeEndpoint) -> None:
        self.source = source
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, bool]] = []
        self.running: Counter = Counter()
        self.max_running: Counter = Counter()
        self.gate: dict[str, threading.Event] = {}
        self.fail: dict[str, Exception] = {}  # destination name -> error to raise
        self.fail_key: dict[str, Exception] = {}

    def __call__(self, src, dst, key, *, force=False, **_):
        with self.lock:
            self.calls.append((key, dst.name, force))
            self.running[key] += 1
            self.max_running[key] = max(self.max_running[key], self.running[key])
        try:
            if key in self.gate:
                self.gate[key].wait(10)
            error = self.fail.get(dst.name) or self.fail_key.get(key)
            if error is not None:
                raise error
            if key not in self.source.keys:
                return CopyResult(key, dst.name, Outcome.MISSING)
            return CopyResult(key, dst.name, Outcome.COPIED if force else Outcome.SKIPPED, size=4)
        finally:
            with self.lock:
                self.running[key] -= 1


@pytest.fixture
def rig():
    source = FakeEndpoint("source", {f"k{i}" for i in range(50)})
    dests = [FakeEndpoint("d1"), FakeEndpoint("d2")]
    script = Script(source)
    done: list = []
    done_lock = threading.Lock()

    def on_complete(tickets, outcome):
        with done_lock:
            done.append((list(tickets), outcome))

    made = []

    def make(**kw):
        rep = Replicator(
            source,
            dests,
            on_complete=on_complete,
            copier=script,
            **{"workers": 4, "retry": Policy(attempts=3, base_s=0.02, max_s=0.1), **kw},
        )
        rep.start()
        made.append(rep)
        return rep

    yield make, script, done, source, dests
    for rep in made:
        rep.drain(0)


def transient(endpoint: str) -> TransientEndpointError:
    """What a copy to ``endpoint`` raises when the endpoint refuses the connection (the copy
    tries once; the store maps the refusal)."""
    return TransientEndpointError(
        "refused", op="PutObject", endpoint=endpoint, bucket="b", key="k", code="connection"
    )


def test_events_for_one_key_never_copy_concurrently_and_later_state_wins(rig):
    make, script, done, *_ = rig
    rep = make()
    script.gate["k1"] = threading.Event()
    rep.submit(WorkItem("copy", "k1"), "t1")
    wait_until(lambda: script.running["k1"] == 1, 5)
    for i in range(2, 6):  # arrive while the first copy runs
        rep.submit(WorkItem("copy", "k1"), f"t{i}")
    time.sleep(0.1)
    assert script.max_running["k1"] == 1
    script.gate["k1"].set()
    wait_until(lambda: sum(len(t) for t, _ in done) == 5, 5)
    assert script.max_running["k1"] == 1
    # First run (forced) served t1; one more run (comparing first) served t2..t5.
    assert [(tickets, o.outcome) for tickets, o in done] == [
        (["t1"], Outcome.COPIED),
        (["t2", "t3", "t4", "t5"], Outcome.SKIPPED),
    ]
    assert [c for c in script.calls if c[1] == "d1"] == [("k1", "d1", True), ("k1", "d1", False)]
    assert rep.counters["coalesced"] == 3


def test_duplicates_of_a_queued_key_are_coalesced(rig):
    make, script, done, *_ = rig
    rep = make(workers=1)
    script.gate["k0"] = threading.Event()
    rep.submit(WorkItem("copy", "k0"), "a")
    wait_until(lambda: script.running["k0"] == 1, 5)
    for t in ("b1", "b2", "b3"):
        rep.submit(WorkItem("copy", "k2"), t)
    script.gate["k0"].set()
    wait_until(lambda: len(done) == 2, 5)
    assert done[1][0] == ["b1", "b2", "b3"] and done[1][1].outcome is Outcome.COPIED
    assert [c for c in script.calls if c[0] == "k2"] == [("k2", "d1", True), ("k2", "d2", True)]


def test_missing_source_key_is_reported_not_retried(rig):
    make, script, done, *_ = rig
    rep = make()
    rep.submit(WorkItem("copy", "gone"), "t")
    wait_until(lambda: done, 5)
    assert done[0][1].outcome is Outcome.MISSING
    assert len(script.calls) == 1
    assert rep.counters["missing"] == 1


def test_a_destination_that_is_down_holds_work_without_spinning(rig):
    make, script, done, *_ = rig
    rep = make()
    script.fail["d1"] = transient("d1")
    for i in range(20):
        rep.submit(WorkItem("copy", f"k{i}"), i)
    wait_until(lambda: len([c for c in script.calls if c[1] == "d2"]) == 20, 5)
    time.sleep(0.6)  # several backoff periods (base 0.02 s, cap 0.1 s)
    d1_calls = len([c for c in script.calls if c[1] == "d1"])
    assert done == []  # held, not dropped, not failed
    assert d1_calls < 25, f"{d1_calls} calls to a destination that is down: spinning"
    assert rep.held() == 20
    del script.fail["d1"]
    wait_until(lambda: len(done) == 20, 5)
    assert {o.outcome for _, o in done} == {Outcome.COPIED}
    assert rep.counters["failed"] == 0
    # d2 was not copied twice: each job remembered what was already done.
    assert len([c for c in script.calls if c[1] == "d2"]) == 20


def test_a_key_that_keeps_failing_is_given_up_after_max_attempts(rig):
    make, script, done, *_ = rig
    rep = make()
    script.fail_key["k3"] = FatalEndpointError(
        "denied", op="PutObject", endpoint="d1", bucket="d1", key="k3", code="AccessDenied"
    )
    rep.submit(WorkItem("copy", "k3"), "t", prior_attempts=1)
    wait_until(lambda: done, 5)
    ((tickets, outcome),) = done
    assert outcome.outcome is Outcome.FAILED and outcome.reason == "failed 3 times"
    assert "AccessDenied" in outcome.error or "denied" in outcome.error
    # prior_attempts=1 (a redelivery): compared first, and two more attempts here.
    assert [c[2] for c in script.calls if c[1] == "d1"] == [False, False]


def test_deletes_follow_the_delete_switch_and_the_later_state(rig):
    make, script, done, source, dests = rig
    rep = make(delete=True)
    rep.submit(WorkItem("delete", "absent"), "t1")
    rep.submit(WorkItem("delete", "k5"), "t2")  # exists at the source again
    wait_until(lambda: len(done) == 2, 5)
    outcomes = {o.key: o.outcome for _, o in done}
    assert outcomes == {"absent": Outcome.DELETED, "k5": Outcome.SKIPPED}
    assert dests[0].deleted == ["absent"] and dests[1].deleted == ["absent"]
    off = make(delete=False)
    off.submit(WorkItem("delete", "absent2"), "t3")
    wait_until(lambda: len(done) == 3, 5)
    assert done[2][1].outcome is Outcome.IGNORED and "absent2" not in dests[0].deleted


def test_drain_returns_unfinished_tickets(rig):
    make, script, done, *_ = rig
    rep = make(workers=1)
    script.fail["d1"] = transient("d1")
    for i in range(3):
        rep.submit(WorkItem("copy", f"k{i}"), i)
    wait_until(lambda: rep.held() == 3 and len(script.calls) >= 3, 5)
    assert sorted(rep.drain(0.2)) == [0, 1, 2]
    assert done == []


def test_room_bounds_intake(rig):
    make, script, done, *_ = rig
    rep = make(max_held=2)
    script.gate["k1"] = threading.Event()
    script.gate["k2"] = threading.Event()
    rep.submit(WorkItem("copy", "k1"), 1)
    rep.submit(WorkItem("copy", "k2"), 2)
    assert rep.room() == 0 and not rep.wait_for_room(0.05)
    script.gate["k1"].set()
    assert rep.wait_for_room(5)
    script.gate["k2"].set()


def test_is_outage():
    # What the error says decides: retryable and about the endpoint.
    assert is_outage(transient("d1"))
    assert is_outage(TransientEndpointError("x", op="GetObject", endpoint="s", bucket="b"))
    assert is_outage(ShortRead("source body ended early"))
    assert not is_outage(FatalEndpointError("x", op="PutObject", endpoint="d", bucket="b"))
    assert not is_outage(CorruptedOnTransfer("md5 differs", key="k", src="s", dst="d"))
    assert not is_outage(ValueError("x"))


def test_only_a_failure_of_the_key_itself_that_no_retry_fixes_fails_at_once():
    assert cannot_succeed(ObjectTooLarge("6 GiB", key="k", src="s", dst="d"))
    # Retried as a whole job (with backoff, up to the attempts): corruption, a denial, a bug.
    assert not cannot_succeed(CorruptedOnTransfer("md5 differs", key="k", src="s", dst="d"))
    assert not cannot_succeed(FatalEndpointError("x", op="PutObject", endpoint="d", bucket="b"))
    assert not cannot_succeed(ValueError("x"))


def test_an_object_too_large_fails_at_once(rig):
    make, script, done, *_ = rig
    rep = make()
    script.fail_key["k4"] = ObjectTooLarge("over 5 GiB", key="k4", src="source", dst="d1")
    rep.submit(WorkItem("copy", "k4"), "t")
    wait_until(lambda: done, 5)
    ((_, outcome),) = done
    assert outcome.outcome is Outcome.FAILED and outcome.reason == "cannot be copied"
    assert len([c for c in script.calls if c[1] == "d1"]) == 1


def test_counters_are_per_instance():
    a, b = Counters(), Counters()
    a.add(copied=2)
    assert a["copied"] == 2 and b["copied"] == 0
    assert set(a.snapshot()) == set(Counters.FIELDS)


# --------------------------------------------------------------------------- per-key order


def test_key_order_coalesces_before_the_start_and_queues_one_job_behind_a_running_one():
    order = KeyOrder()
    first, coalesced = order.add(WorkItem("copy", "k"), "t1")
    assert first is not None and not coalesced and first.force
    assert order.add(WorkItem("copy", "k"), "t2") == (None, True)  # not started: joins
    assert first.tickets == ["t1", "t2"]
    first.running = True
    assert order.add(WorkItem("copy", "k"), "t3") == (None, False)  # waits for the run
    assert order.add(WorkItem("copy", "k"), "t4") == (None, True)  # joins the waiting one
    assert len(order) == 2
    nxt = order.release(first)
    assert nxt is not None and nxt.tickets == ["t3", "t4"] and not nxt.force
    assert order.release(first) is None  # released once
    assert order.release(nxt) is None and len(order) == 0


def test_a_newer_event_of_another_kind_makes_the_job_check_every_destination_again():
    order = KeyOrder()
    job, _ = order.add(WorkItem("copy", "k"), "t1")
    assert job is not None
    job.done.add("d1")
    order.add(WorkItem("delete", "k"), "t2", prior_attempts=2)
    assert job.item.op == "delete" and not job.done and not job.force and job.attempts == 2


def test_key_order_take_all_returns_current_then_next_and_forgets_them():
    order = KeyOrder()
    a, _ = order.add(WorkItem("copy", "a"), 1)
    assert a is not None
    a.running = True
    order.add(WorkItem("copy", "a"), 2)
    order.add(WorkItem("copy", "b"), 3)
    assert [j.tickets for j in order.take_all()] == [[1], [3], [2]]
    assert len(order) == 0


# --------------------------------------------------------------------------- the breaker


def test_breaker_holds_work_for_an_endpoint_that_is_down_and_lets_one_probe_through():
    breaker = Breaker(["s", "d"], backoff=Policy(attempts=None, base_s=1.0, max_s=4.0))
    order = KeyOrder()
    jobs = [order.add(WorkItem("copy", k), k)[0] for k in ("a", "b", "c")]
    a, b, c = jobs
    assert a is not None and b is not None and c is not None
    d = breaker["d"]
    assert breaker.gate(a, (d,), now=0.0) is None  # up: everyone passes
    verdict = breaker.fail(a, d, now=10.0)
    assert verdict.looked_healthy and verdict.released == []
    assert 10.5 <= verdict.wake_at <= 11.0  # 50-100% of base after the first failure
    assert breaker.down() == [d]
    # Down: held until the backoff expires, then one probe at a time.
    assert breaker.gate(b, (d,), now=10.1) is d
    assert breaker.hold(b, d, now=10.1) and list(d.waiting) == [b]
    assert breaker.wake_one(d) is b and not d.waiting
    assert breaker.gate(b, (d,), now=11.0) is None and b.probing == [d] and d.probing
    assert breaker.gate(c, (d,), now=11.0) is d  # a probe is out
    assert breaker.hold(c, d, now=11.0)
    # A failed probe doubles the backoff and changes nothing else.
    failed = breaker.fail(b, d, now=12.0)
    assert not failed.looked_healthy and failed.wake_at is not None
    assert 13.0 <= failed.wake_at <= 14.0 and d.failures == 2 and not d.probing
    # A job that got through releases everything held for the endpoint.
    assert breaker.gate(b, (d,), now=14.0) is None
    assert breaker.recovered(b, (d,), now=14.5) == [c]
    assert breaker.down() == [] and b.probing == []


def test_breaker_lets_another_job_probe_when_the_probing_one_stops_for_another_reason():
    breaker = Breaker(["s", "d"], backoff=Policy(attempts=None, base_s=1.0, max_s=4.0))
    order = KeyOrder()
    a, _ = order.add(WorkItem("copy", "a"), "a")
    b, _ = order.add(WorkItem("copy", "b"), "b")
    assert a is not None and b is not None
    d = breaker["d"]
    breaker.fail(a, d, now=0.0)
    assert breaker.hold(b, d, now=0.1)
    assert breaker.gate(a, (d,), now=5.0) is None and a.probing == [d]
    assert breaker.release_probes(a) == [b] and not d.probing and a.probing == []
    # A retry time that passed with nobody waiting: the job runs at once, as the probe.
    assert not breaker.hold(a, d, now=5.0)


def test_breaker_pins_an_outage_on_the_endpoint_the_error_names():
    breaker = Breaker(["s", "d1", "d2"], backoff=Policy(attempts=None))
    both = (breaker["s"], breaker["d2"])
    assert breaker.culprit(transient("d1"), both, source="s") is breaker["d1"]
    assert breaker.culprit(ShortRead("cut"), both, source="s") is breaker["s"]
    assert breaker.culprit(transient("elsewhere"), both, source="s") is breaker["d2"]
