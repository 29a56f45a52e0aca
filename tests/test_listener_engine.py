"""The Replicator engine in-process, with a scripted copy function instead of S3.

Ordering, coalescing, holding work for a destination that is down, retries and giving up
are timing-sensitive rules; a fake ``copy_object`` makes them observable exactly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from test_listener_support import wait_until

import s3s3.listener.replicator as replicator_module
from s3s3.errors import FatalEndpointError, TransferError, TransientEndpointError
from s3s3.listener.replicator import Counters, Replicator, is_transient
from s3s3.model import CopyResult, WorkItem


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
    """A fake copy_object: records calls and concurrency; behaviour set per test."""

    def __init__(self, source: FakeEndpoint) -> None:
        self.source = source
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, bool]] = []
        self.running: Counter = Counter()
        self.max_running: Counter = Counter()
        self.gate: dict[str, threading.Event] = {}
        self.fail: dict[str, Exception] = {}  # destination name -> error to raise
        self.fail_key: dict[str, Exception] = {}

    def __call__(self, src, dst, key, *, force=False, attempts=3, **_):
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
                return CopyResult(key, dst.name, "missing")
            return CopyResult(key, dst.name, "copied" if force else "skipped", size=4)
        finally:
            with self.lock:
                self.running[key] -= 1


@pytest.fixture
def rig(monkeypatch):
    source = FakeEndpoint("source", {f"k{i}" for i in range(50)})
    dests = [FakeEndpoint("d1"), FakeEndpoint("d2")]
    script = Script(source)
    monkeypatch.setattr(replicator_module, "copy_object", script)
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
            **{"workers": 4, "retry_base_s": 0.02, "retry_max_s": 0.1, "max_attempts": 3, **kw},
        )
        rep.start()
        made.append(rep)
        return rep

    yield make, script, done, source, dests
    for rep in made:
        rep.drain(0)


def transient(endpoint: str) -> TransferError:
    try:
        raise TransientEndpointError(
            "refused", op="PutObject", endpoint=endpoint, bucket="b", key="k", code="connection"
        )
    except TransientEndpointError as exc:
        try:
            raise TransferError(
                f"gave up after 1 attempts: {exc}", key="k", src="source", dst=endpoint
            ) from exc
        except TransferError as wrapped:
            return wrapped


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
        (["t1"], "copied"),
        (["t2", "t3", "t4", "t5"], "skipped"),
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
    assert done[1][0] == ["b1", "b2", "b3"] and done[1][1].outcome == "copied"
    assert [c for c in script.calls if c[0] == "k2"] == [("k2", "d1", True), ("k2", "d2", True)]


def test_missing_source_key_is_reported_not_retried(rig):
    make, script, done, *_ = rig
    rep = make()
    rep.submit(WorkItem("copy", "gone"), "t")
    wait_until(lambda: done, 5)
    assert done[0][1].outcome == "missing"
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
    assert {o.outcome for _, o in done} == {"copied"}
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
    assert outcome.outcome == "failed" and outcome.reason == "failed 3 times"
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
    assert outcomes == {"absent": "deleted", "k5": "skipped"}
    assert dests[0].deleted == ["absent"] and dests[1].deleted == ["absent"]
    off = make(delete=False)
    off.submit(WorkItem("delete", "absent2"), "t3")
    wait_until(lambda: len(done) == 3, 5)
    assert done[2][1].outcome == "ignored" and "absent2" not in dests[0].deleted


def test_drain_returns_unfinished_tickets(rig):
    make, script, done, *_ = rig
    rep = make(workers=1)
    script.fail["d1"] = transient("d1")
    for i in range(3):
        rep.submit(WorkItem("copy", f"k{i}"), i)
    wait_until(lambda: rep.in_flight() == 3 and len(script.calls) >= 3, 5)
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


def test_is_transient():
    assert is_transient(transient("d1"))
    assert is_transient(TransientEndpointError("x", op="GetObject", endpoint="s", bucket="b"))
    assert not is_transient(FatalEndpointError("x", op="PutObject", endpoint="d", bucket="b"))
    assert not is_transient(ValueError("x"))


def test_counters_are_per_instance():
    a, b = Counters(), Counters()
    a.add(copied=2)
    assert a["copied"] == 2 and b["copied"] == 0
    assert set(a.snapshot()) == set(Counters.FIELDS)
