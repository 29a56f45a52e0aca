"""Pushed events come twice and out of order: the replicator drops stale ones and compares
before copying pushed ones (issue 12's "order and duplicates"), with a scripted copier.

The per-key memory (:class:`~s3s3.listener.ordering.Applied`) is plain state, tested alone;
the replicator's use of it is tested with the engine's test rig.
"""

from __future__ import annotations

import threading

from test_listener_engine import rig  # noqa: F401 (the fixture)
from test_listener_support import wait_until

from s3s3.listener.ordering import Applied, Job
from s3s3.model import Outcome, WorkItem


def pushed(key: str, seq: int, op: str = "copy") -> WorkItem:
    return WorkItem(op, key, event="ObjectCreated:Put", sequence=seq, compare=True)


def test_applied_remembers_the_latest_sequence_a_finished_job_served():
    applied = Applied(limit=2)
    assert applied.stale(pushed("a", 5)) is None  # nothing finished yet
    job = Job(pushed("a", 5), "t1", 0, force=False)
    job.merge(pushed("a", 3), "t2", 0)  # an older event merged in: the job serves both
    assert job.sequence == 5
    applied.finished(job)
    assert applied.stale(pushed("a", 5)) == 5  # the same event again
    assert applied.stale(pushed("a", 4)) == 5  # an older one
    assert applied.stale(pushed("a", 6)) is None  # a later one
    assert applied.stale(WorkItem("copy", "a")) is None  # no sequence: never stale
    for key in ("b", "c"):  # the least recently finished key is forgotten past the limit
        applied.finished(Job(pushed(key, 1), "t", 0, force=False))
    assert len(applied) == 2
    assert applied.stale(pushed("a", 1)) is None


def test_a_job_without_sequences_records_nothing():
    applied = Applied()
    applied.finished(Job(WorkItem("copy", "a"), "t", 0, force=True))
    assert len(applied) == 0


def test_pushed_events_compare_and_stale_ones_are_dropped_without_a_copy(rig):  # noqa: F811
    make, script, done, *_ = rig
    rep = make()
    rep.submit(pushed("k1", 10), "t1")
    wait_until(lambda: len(done) == 1, 5)
    # Pushed: compared first (force False), so an identical destination is skipped.
    assert script.calls == [("k1", "d1", False), ("k1", "d2", False)]
    assert done[0][1].outcome is Outcome.SKIPPED
    for ticket, seq in (("t2", 10), ("t3", 7)):  # a duplicate, then an older event
        rep.submit(pushed("k1", seq), ticket)
    wait_until(lambda: len(done) == 3, 5)
    assert [(t, r.outcome, r.reason) for t, r in done[1:]] == [
        (["t2"], Outcome.SKIPPED, "stale event"),
        (["t3"], Outcome.SKIPPED, "stale event"),
    ]
    assert len(script.calls) == 2  # no request for either
    assert rep.counters["stale"] == 2
    rep.submit(pushed("k1", 11), "t4")  # a later event runs
    wait_until(lambda: len(done) == 4, 5)
    assert done[3][0] == ["t4"] and done[3][1].reason is None
    assert len(script.calls) == 4


def test_a_failed_job_leaves_its_events_to_be_retried(rig):  # noqa: F811
    make, script, done, *_ = rig
    rep = make()
    script.fail_key["k2"] = PermissionError("denied")  # an unexpected error: retried, then failed
    rep.submit(pushed("k2", 5), "t1")
    wait_until(lambda: len(done) == 1, 10)
    assert done[0][1].outcome is Outcome.FAILED
    del script.fail_key["k2"]
    calls = len(script.calls)
    rep.submit(pushed("k2", 5), "t2")  # the same event redelivered: not stale, work is owed
    wait_until(lambda: len(done) == 2, 5)
    assert done[1][1].reason is None and len(script.calls) > calls


def test_an_event_arriving_while_its_key_runs_waits_and_compares(rig):  # noqa: F811
    make, script, done, *_ = rig
    rep = make()
    script.gate["k3"] = threading.Event()
    rep.submit(pushed("k3", 1), "t1")
    wait_until(lambda: script.running["k3"] == 1, 5)
    rep.submit(pushed("k3", 1), "t2")  # a duplicate while the first runs
    script.gate["k3"].set()
    wait_until(lambda: len(done) == 2, 5)
    # The duplicate came before the first finished, so it was not yet stale: it ran after,
    # comparing (HEADs), and found the destination identical.
    assert [r.outcome for _, r in done] == [Outcome.SKIPPED, Outcome.SKIPPED]
    assert all(force is False for _, _, force in script.calls)


def test_unsequenced_first_deliveries_still_copy_without_comparing(rig):  # noqa: F811
    make, script, done, *_ = rig
    rep = make()
    rep.submit(WorkItem("copy", "k4"), "t1")
    wait_until(lambda: len(done) == 1, 5)
    assert done[0][1].outcome is Outcome.COPIED
    assert all(force for _, _, force in script.calls)
