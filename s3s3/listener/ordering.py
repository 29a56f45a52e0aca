"""Per-key ordering: at most one job per key runs at a time, and events for one key coalesce.

A :class:`Job` is the work for one key: the latest work item, the tickets of every event it
serves, and what has been done so far. :class:`KeyOrder` holds, for each key, the job that
runs (or will run) first and the one job that waits for it:

- an event for a key whose job has not started yet (queued, held for a destination, waiting
  to retry) joins that job: the job reads the source when it runs, so one copy serves both
  events (*coalesced*);
- an event arriving while the key's job runs waits for it, in the key's *next* job (where
  later events coalesce in turn): the running copy may have read the source before the
  change the event announces. The later state wins.

Events that carry a :attr:`~s3s3.model.WorkItem.sequence` (a store's push) may come twice and
out of order. :class:`Applied` remembers, for recently finished keys, the latest sequence a
finished job served; an event at or below it is *stale* (its change is already at the
destinations, or was overtaken by a later one that is) and is dropped without a request.
Only finished jobs count: a job reads the source when it runs, after every event it serves
was sent, so what it wrote is at least as new as each of them.

Plain state without a lock or a thread: the replicator calls it with its own lock held. It
knows nothing of endpoints, copies, or where work comes from.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from s3s3.model import CopyResult, WorkItem

if TYPE_CHECKING:
    from s3s3.listener.health import Health


class Job:
    """The work for one key, possibly serving several events."""

    __slots__ = (
        "key",
        "item",
        "tickets",
        "attempts",
        "force",
        "done",
        "results",
        "started",
        "running",
        "finished",
        "abandoned",
        "reporting",
        "probing",
        "resolved_op",
        "last_error",
        "sequence",
        "event_times",
    )

    def __init__(self, item: WorkItem, ticket: object, prior_attempts: int, *, force: bool) -> None:
        self.key = item.key
        self.item = item
        self.tickets = [ticket]
        self.attempts = prior_attempts
        # A first delivery copies without comparing; a redelivery (prior attempts) compares.
        self.force = force and prior_attempts == 0
        self.done: set[str] = set()  # destinations finished for the current item
        self.results: dict[str, CopyResult] = {}
        self.started: float | None = None
        self.running = False
        self.finished = False
        self.abandoned = False  # given up by drain(): its tickets went back to the intake
        self.reporting = False  # its result is being delivered: drain() waits for it
        self.probing: list[Health] = []  # endpoints this job is probing (see health)
        self.resolved_op: str | None = None  # a delete turns into a copy if the key is back
        self.last_error = ""
        self.sequence = item.sequence  # the latest sequence among the events it serves
        # When the events it serves happened, for the replication lag (those that say).
        self.event_times = [item.event_time] if item.event_time is not None else []

    def merge(self, item: WorkItem, ticket: object, prior_attempts: int) -> None:
        """Fold a newer event for the same key into this job, which has not started yet."""
        if item.op != self.item.op or self.done:
            # What was done so far answered an older state; check every destination again.
            self.done.clear()
            self.results.clear()
            self.force = False
            self.resolved_op = None
        self.item = item
        self.tickets.append(ticket)
        self.attempts = max(self.attempts, prior_attempts)
        if item.compare:
            self.force = False
        if item.sequence is not None:
            self.sequence = max(item.sequence, self.sequence or 0)
        if item.event_time is not None:
            self.event_times.append(item.event_time)


class KeyOrder:
    """The current and the next job of every key with work; see the module docstring."""

    def __init__(self) -> None:
        self._current: dict[str, Job] = {}  # key -> the job that runs (or will run) first
        self._next: dict[str, Job] = {}  # key -> the job waiting for the running one

    def add(
        self, item: WorkItem, ticket: object, prior_attempts: int = 0
    ) -> tuple[Job | None, bool]:
        """Place one event; return ``(job, coalesced)``.

        ``job`` is a new job to queue now (the key had none), else None; ``coalesced`` says
        the event joined a job that was already there.
        """
        job = self._current.get(item.key)
        if job is None:
            job = Job(item, ticket, prior_attempts, force=not item.compare)
            self._current[item.key] = job
            return job, False
        if not job.running:
            job.merge(item, ticket, prior_attempts)
            return None, True
        waiting = self._next.get(item.key)
        if waiting is None:
            self._next[item.key] = Job(item, ticket, prior_attempts, force=False)
            return None, False
        waiting.merge(item, ticket, prior_attempts)
        return None, True

    def release(self, job: Job) -> Job | None:
        """``job`` has finished: its key's next job, if any, becomes the current one and is
        returned, to be queued."""
        if self._current.get(job.key) is not job:
            return None
        waiting = self._next.pop(job.key, None)
        if waiting is not None:
            self._current[job.key] = waiting
        else:
            del self._current[job.key]
        return waiting

    def take_all(self) -> list[Job]:
        """Every job, current ones first, and forget them all (shutdown)."""
        jobs = [*self._current.values(), *self._next.values()]
        self._current.clear()
        self._next.clear()
        return jobs

    def __len__(self) -> int:
        """Jobs known: running, queued, held, waiting to retry, or waiting for their key."""
        return len(self._current) + len(self._next)


class Applied:
    """The latest sequence applied for up to ``limit`` recently finished keys (see the
    module docstring); the least recently finished are forgotten first."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._latest: OrderedDict[str, int] = OrderedDict()

    def stale(self, item: WorkItem) -> int | None:
        """The sequence already applied that makes ``item`` stale, or None if it is not."""
        if item.sequence is None:
            return None
        latest = self._latest.get(item.key)
        return latest if latest is not None and item.sequence <= latest else None

    def finished(self, job: Job) -> None:
        """``job`` brought its key in line with the source."""
        if job.sequence is None:
            return
        latest = self._latest.pop(job.key, None)
        self._latest[job.key] = job.sequence if latest is None else max(latest, job.sequence)
        while len(self._latest) > self.limit:
            self._latest.popitem(last=False)

    def __len__(self) -> int:
        return len(self._latest)
