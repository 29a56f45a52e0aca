"""Turning work items into verified copies at every destination: the listener's engine.

:class:`Replicator` takes work items (``copy`` or ``delete`` of one key) with an opaque
ticket each, runs them on a bounded pool of worker threads, and reports each finished job
with its tickets to ``on_complete``; the source acknowledges a ticket only then. It knows
nothing of message formats or Redis. :class:`Listener` (and :func:`run_listener`) wire a
source, a replicator and the process lifecycle together: that is ``s3s3listen``.

Rules, and why:

- **Per-key ordering.** At most one job per key runs at a time. An event for a key whose
  job has not started yet (queued, held for a destination, waiting to retry) joins that job:
  the job reads the source when it runs, so one copy serves both events (*coalesced*). An
  event arriving while the key's job is running waits for it and runs next: the running
  copy may have read the source before the change it announces. The later state wins.
- **HEAD before copy.** A first delivery copies without looking at the destination
  (``force=True``): the event says the key just changed, so a HEAD would almost never save
  the copy and would add a third request to the GET and PUT — a third more work for the
  small objects that dominate event traffic. Duplicates are handled where they are likely:
  a job that follows a running job for the same key, a redelivered stream entry and a job
  merged after a partial run compare first (HEAD both sides, skip when identical).
- **Deletes** are applied only with ``[listen] delete = true``. The source is checked first:
  a key that exists again (re-created since the delete) is copied instead.
- **A key missing at the source** (deleted since it was announced) finishes as ``missing``:
  acknowledged and counted, never retried.
- **Transient failures** (throttling, 5xx, timeouts, refused connections) are pinned on
  the endpoint that failed. That endpoint is *down*: the job, and every later job needing
  it, is held — not retried in a loop, not dropped — and one job probes it again after a
  capped, jittered backoff. A success releases everything held for it. A transient failure
  counts against the job itself only when its endpoint looked healthy (other keys were
  getting through), so a long outage dead-letters nothing.
- **Other failures** (access denied, corruption detected and cleaned up) are retried with
  backoff; after ``max_attempts`` attempts in all — stream redeliveries included — the job
  is reported ``failed`` (the stream source dead-letters it). ``ObjectTooLarge`` fails at once.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from s3s3.config import Settings
from s3s3.errors import (
    CopyCancelled,
    EndpointError,
    FatalEndpointError,
    ObjectTooLarge,
    ShortRead,
    TransferError,
    TransientEndpointError,
)
from s3s3.model import COPY, DELETE, CopyResult, WorkItem
from s3s3.queue.link import RedisLink, daemon_client
from s3s3.queue.minio_list import ListMover
from s3s3.queue.pubsub import PubSubSource
from s3s3.queue.stream import StreamSource
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import copy_object, sweep_uploads

log = logging.getLogger("s3s3.listen")

EXIT_OK = 0
EXIT_FATAL = 2
#: A thread of the listener died of an unexpected exception (a bug): the process stops, after
#: handing back what it holds, so that its supervisor restarts it rather than it living on
#: without intake or workers.
EXIT_CRASH = 3

#: Errors worth retrying after a pause (the endpoint may answer later).
_TRANSIENT = (TransientEndpointError, ShortRead, ConnectionError, TimeoutError)
#: Errors no retry can fix.
_HOPELESS = (ObjectTooLarge,)


# --------------------------------------------------------------------------- counters


class Counters:
    """Thread-safe totals for one listener; passed in so embedders and tests can read them."""

    FIELDS = (
        "received",
        "copied",
        "skipped",
        "missing",
        "deleted",
        "deletes_ignored",
        "failed",
        "bytes",
        "coalesced",
        "retried",
        "bad_messages",
        "ignored_events",
        "dead_lettered",
        "handed_back",
        "dropped",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.FIELDS, 0)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._values[name] += amount

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


@dataclass(frozen=True)
class Outcome:
    """What became of one job (one key, possibly several coalesced events)."""

    key: str
    op: str
    outcome: str  # copied | skipped | missing | deleted | ignored | failed
    size: int = 0
    destinations: tuple[str, ...] = ()
    duration_s: float = 0.0
    attempts: int = 0
    error: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


# --------------------------------------------------------------------------- internals


class _Health:
    """Reachability of one endpoint, shared by every job that needs it."""

    __slots__ = ("name", "failures", "retry_at", "probing", "waiting", "down_since", "last_error")

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0
        self.retry_at = 0.0
        self.probing = False
        self.waiting: collections.deque[_Job] = collections.deque()
        self.down_since = 0.0
        self.last_error = ""


class _Job:
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
    )

    def __init__(self, item: WorkItem, ticket, prior_attempts: int, *, force: bool) -> None:
        self.key = item.key
        self.item = item
        self.tickets = [ticket]
        self.attempts = prior_attempts
        self.force = force and prior_attempts == 0
        self.done: set[str] = set()
        self.results: dict[str, CopyResult] = {}
        self.started: float | None = None
        self.running = False
        self.finished = False
        self.abandoned = False
        self.reporting = False
        self.probing: list[_Health] = []
        self.resolved_op: str | None = None
        self.last_error = ""

    def merge(self, item: WorkItem, ticket, prior_attempts: int) -> None:
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


class _Timer:
    """One thread running callbacks at given monotonic times (backoffs, retries)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list = []
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="s3s3-timer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(None if not self._heap else self._heap[0][0] - now)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # a timer callback must not kill the timer
                log.exception("timer callback failed")


def log_crash(name: str, exc: BaseException) -> None:
    """The one log line (with the traceback) for a thread that died of ``exc``."""
    log.error(
        "thread %s crashed: %s: %s; s3s3listen stops (exit code %d) so that its "
        "supervisor restarts it",
        name,
        type(exc).__name__,
        exc,
        EXIT_CRASH,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def guarded(fn: Callable[..., None], on_crash: Callable[[str, BaseException], None]):
    """``fn`` as a thread target whose death is reported to ``on_crash``, never silent."""

    def run(*args) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # whatever it is, the thread is gone: say so
            on_crash(threading.current_thread().name, exc)

    return run


def backoff_s(attempt: int, *, base_s: float, max_s: float) -> float:
    """Capped exponential backoff with full jitter in [50%, 100%]."""
    return min(max_s, base_s * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether the failure says "try later" (and not "this copy was wrong")."""
    if isinstance(exc, (FatalEndpointError, *_HOPELESS)):
        return False
    if isinstance(exc, TransferError) and type(exc) is not TransferError:
        return False  # CorruptedOnTransfer: the server answered, with the wrong bytes
    return any(isinstance(e, _TRANSIENT) for e in _causes(exc))


# --------------------------------------------------------------------------- replicator


class Replicator:
    """A bounded pool replicating work items to every destination; see the module docstring.

    ``on_complete(tickets, outcome)`` is called from a worker thread once per finished job,
    with the tickets of every event the job served; it must be quick and must not raise.
    A worker thread that dies of an unexpected exception (a bug: job failures never kill
    one) is logged with its traceback, kept in ``crashed`` and passed to
    ``on_crash(thread_name, exc)``; the listener then stops and hands back its work.
    """

    def __init__(
        self,
        source: Endpoint,
        destinations: Sequence[Endpoint],
        *,
        on_complete: Callable[[list, Outcome], None],
        workers: int = 32,
        delete: bool = False,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        max_attempts: int = 5,
        max_held: int | None = None,
        counters: Counters | None = None,
        on_crash: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        if not destinations:
            raise ValueError("at least one destination is needed")
        self.source = source
        self.destinations = tuple(destinations)
        self.on_complete = on_complete
        self.workers = workers
        self.delete = delete
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.max_attempts = max(1, max_attempts)
        self.max_held = max_held or max(256, workers * 16)
        self.counters = counters or Counters()
        self.on_crash = on_crash
        self.crashed: BaseException | None = None
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}  # key -> the job that runs (or will run) first
        self._next: dict[str, _Job] = {}  # key -> the job waiting for the running one
        self._ready: collections.deque[_Job] = collections.deque()
        self._held = 0
        self._reporting = 0
        self._stopping = False
        self._health = {ep.name: _Health(ep.name) for ep in (source, *destinations)}
        self._timer = _Timer()
        self._threads: list[threading.Thread] = []
        self._last_summary = (time.monotonic(), 0)
        # Set by drain() when it gives up on the copies in flight: they stop at their next
        # chunk or part and abort their multipart uploads.
        self._abandon = threading.Event()
        self._copying = 0  # copy_object calls running now

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        self._timer.start()
        for i in range(self.workers):
            thread = threading.Thread(
                target=guarded(self._work, self._worker_crashed),
                name=f"s3s3-worker-{i}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def submit(self, item: WorkItem, ticket, *, prior_attempts: int = 0) -> None:
        """Queue ``item``; ``ticket`` comes back through ``on_complete`` when it is done.

        ``prior_attempts`` counts attempts already spent elsewhere (stream redeliveries).
        """
        coalesced = False
        with self._cond:
            if self._stopping:
                # Intake outlived the grace period; the source still owns the ticket (a
                # stream entry stays pending and is reclaimed later).
                log.debug("not accepting %r: stopping", item.key)
                return
            self._held += 1
            job = self._jobs.get(item.key)
            if job is None:
                job = _Job(item, ticket, prior_attempts, force=True)
                self._jobs[item.key] = job
                self._ready.append(job)
                self._cond.notify()
            elif not job.running:
                job.merge(item, ticket, prior_attempts)
                coalesced = True
            else:
                waiting = self._next.get(item.key)
                if waiting is None:
                    self._next[item.key] = _Job(item, ticket, prior_attempts, force=False)
                else:
                    waiting.merge(item, ticket, prior_attempts)
                    coalesced = True
        self.counters.add(received=1, coalesced=1 if coalesced else 0)

    def held(self) -> int:
        """Tickets submitted and not yet reported."""
        with self._cond:
            return self._held

    def room(self) -> int:
        """How many more tickets may be submitted before intake should pause."""
        with self._cond:
            return self.max_held - self._held

    def wait_for_room(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: self._held < self.max_held or self._stopping, timeout_s
            )

    def in_flight(self) -> int:
        """Keys with a job queued, running, held or waiting to retry."""
        with self._cond:
            return len(self._jobs)

    def drain(
        self, timeout_s: float, *, cancel: threading.Event | None = None, abort_wait_s: float = 5.0
    ) -> list:
        """Finish what is held within ``timeout_s``; return the tickets left unfinished.

        Submitting must have stopped. ``cancel`` set ends the wait early (a second signal).
        Jobs still running when time is up are abandoned: their tickets are returned (for
        the source to hand back) and never reported, and their copies are cancelled, which
        aborts their multipart uploads; drain waits up to ``abort_wait_s`` for that, since
        the workers are daemon threads that the process's exit would cut short.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while (self._jobs or self._reporting) and not (cancel is not None and cancel.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(0.1, left))
            unfinished: list = []
            for job in itertools.chain(self._jobs.values(), self._next.values()):
                if job.reporting:
                    continue  # finished; its report is being delivered
                job.abandoned = True
                unfinished.extend(job.tickets)
            self._jobs.clear()
            self._next.clear()
            self._ready.clear()
            for health in self._health.values():
                health.waiting.clear()
            self._held = 0
            self._stopping = True
            self._abandon.set()
            self._cond.notify_all()
            if self._copying:
                log.info(
                    "cancelling %d copies in flight; waiting up to %gs for them to abort "
                    "their multipart uploads",
                    self._copying,
                    abort_wait_s,
                )
                if not self._cond.wait_for(lambda: not self._copying, abort_wait_s):
                    log.warning(
                        "%d copies did not stop within %gs; an upload they leave is "
                        "aborted by a later start-up (abort_uploads_after)",
                        self._copying,
                        abort_wait_s,
                    )
        self._timer.stop()
        return unfinished

    def summary_line(self) -> str:
        """One line for the log: totals, what is in flight and held, the recent rate."""
        snap = self.counters.snapshot()
        now = time.monotonic()
        then, done_then = self._last_summary
        done = snap["copied"] + snap["skipped"] + snap["deleted"] + snap["missing"]
        self._last_summary = (now, done)
        rate = (done - done_then) / (now - then) if now > then else 0.0
        with self._cond:
            in_flight = len(self._jobs) + len(self._next)
            held = [
                f"{h.name} down {now - h.down_since:.0f}s, {len(h.waiting)} jobs held"
                for h in self._health.values()
                if h.failures
            ]
        return (
            f"summary: {snap['copied']} copied ({snap['bytes']} bytes written), "
            f"{snap['skipped']} already there, {snap['missing']} missing at source, "
            f"{snap['deleted']} deleted, "
            f"{snap['deletes_ignored']} deletes ignored, {snap['failed']} failed, "
            f"{snap['bad_messages']} bad messages, {snap['ignored_events']} events skipped, "
            f"{snap['coalesced']} coalesced, {snap['dead_lettered']} dead-lettered; "
            f"{in_flight} in flight; {rate:.1f} objects/s since the last summary"
            + (f"; {'; '.join(held)}" if held else "")
        )

    # ------------------------------------------------------------------ workers

    def _worker_crashed(self, name: str, exc: BaseException) -> None:
        log_crash(name, exc)
        if self.crashed is None:
            self.crashed = exc
        if self.on_crash is not None:
            self.on_crash(name, exc)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._ready.popleft()
                if job.running or job.finished or job.abandoned:
                    continue  # defensive: a job is never run twice at once, or once more
                job.running = True
            try:
                self._run(job)
            except Exception as exc:  # a bug must not kill the worker or lose the job
                log.exception("unexpected error replicating %r", job.key)
                self._job_failed(job, exc)

    def _run(self, job: _Job) -> None:
        if job.started is None:
            job.started = time.monotonic()
        item = job.item
        if item.op == DELETE and not self.delete:
            self._finish(job, "ignored")
            return
        src = self._health[self.source.name]
        op = item.op
        if op == DELETE:
            if job.resolved_op is None:
                blocked = self._gate(job, (src,))
                if blocked is not None:
                    self._park(job, blocked)
                    return
                try:
                    info = self.source.head(job.key)
                except Exception as exc:
                    verdict = self._failed(job, exc, (src,))
                    if verdict is not None:
                        self._park(job, verdict)
                    return
                self._healthy(job, (src,))
                # The key exists again: a later write wins over this delete.
                job.resolved_op = COPY if info is not None else DELETE
                if info is not None:
                    job.force = False
            op = job.resolved_op
        blocked_on: _Health | None = None
        failure: BaseException | None = None
        for dst in self.destinations:
            if dst.name in job.done:
                continue
            health = self._health[dst.name]
            involved = (src, health) if op == COPY else (health,)
            blocked = self._gate(job, involved)
            if blocked is None:
                try:
                    if op == COPY:
                        result = self._copy(job, dst)
                    else:
                        dst.delete(job.key)
                        result = None
                except CopyCancelled:
                    return  # abandoned by drain(): its tickets were handed back
                except Exception as exc:
                    if not is_transient(exc):
                        with self._cond:
                            self._release_probes(job)
                        failure = failure or exc
                        continue
                    blocked = self._failed(job, exc, involved)
                    if blocked is None:
                        return  # given up
                else:
                    self._healthy(job, involved)
                    if result is not None:
                        if result.outcome == "missing":
                            self._finish(job, "missing")
                            return
                        job.results[dst.name] = result
                    job.done.add(dst.name)
                    continue
            if blocked is src:
                self._park(job, src)  # nothing can be copied while the source is down
                return
            blocked_on = blocked_on or blocked  # the other destinations go ahead meanwhile
        if failure is not None:
            self._job_failed(job, failure)
        elif blocked_on is not None:
            self._park(job, blocked_on)
        elif op == COPY:
            copied = any(r.outcome == "copied" for r in job.results.values())
            self._finish(job, "copied" if copied else "skipped")
        else:
            self._finish(job, "deleted")

    def _copy(self, job: _Job, dst: Endpoint) -> CopyResult:
        """One copy_object call, counted so that drain() can wait for cancelled ones."""
        with self._cond:
            self._copying += 1
        try:
            return copy_object(self.source, dst, job.key, force=job.force, cancel=self._abandon)
        finally:
            with self._cond:
                self._copying -= 1
                if self._stopping and not self._copying:
                    self._cond.notify_all()  # only then: idle workers wait on this condition

    # ------------------------------------------------------------------ endpoint health

    def _gate(self, job: _Job, healths: Sequence[_Health]) -> _Health | None:
        """None if ``job`` may call these endpoints now, else the endpoint that is down.

        An endpoint that is down lets one job through (a probe) once its backoff expires.
        """
        now = time.monotonic()
        with self._cond:
            probes = []
            for health in healths:
                if not health.failures:
                    continue
                if not health.probing and now >= health.retry_at:
                    probes.append(health)
                else:
                    return health
            for health in probes:
                health.probing = True
            job.probing = probes
            return None

    def _park(self, job: _Job, health: _Health) -> None:
        """Hold ``job`` until ``health`` answers again (or a probe slot opens)."""
        with self._cond:
            job.running = False
            if job.abandoned:
                return
            if health.failures and (health.probing or time.monotonic() < health.retry_at):
                # A probe is out, or a timer is set for retry_at: either releases this job.
                health.waiting.append(job)
            else:
                # It answered meanwhile, or its retry time passed with nobody waiting to
                # probe it (the timer found no one): run now, as the probe if need be.
                self._ready.append(job)
                self._cond.notify()

    def _healthy(self, job: _Job, healths: Sequence[_Health]) -> None:
        with self._cond:
            for health in healths:
                if health.failures:
                    log.warning(
                        "[%s] answers again after %.1fs; %d held jobs resume",
                        health.name,
                        time.monotonic() - health.down_since,
                        len(health.waiting),
                    )
                    health.failures = 0
                    health.probing = False
                    self._ready.extend(health.waiting)
                    health.waiting.clear()
                    self._cond.notify_all()
            job.probing = []

    def _wake_one(self, health: _Health) -> None:
        """Release one held job to probe ``health`` (the others wait for its result)."""
        with self._cond:
            if health.failures and not health.probing and health.waiting:
                self._ready.append(health.waiting.popleft())
                self._cond.notify()

    def _culprit(self, exc: BaseException, healths: Sequence[_Health]) -> _Health:
        for cause in _causes(exc):
            if isinstance(cause, EndpointError) and cause.endpoint in self._health:
                return self._health[cause.endpoint]
            if isinstance(cause, ShortRead):
                return self._health[self.source.name]
        return healths[-1]

    def _failed(self, job: _Job, exc: BaseException, healths: Sequence[_Health]) -> _Health | None:
        """A transient failure: mark its endpoint down; return it, or None if the job gave up."""
        job.last_error = f"{type(exc).__name__}: {exc}"
        if not is_transient(exc):
            with self._cond:
                self._release_probes(job)
            self._job_failed(job, exc)
            return None
        culprit = self._culprit(exc, healths)
        now = time.monotonic()
        with self._cond:
            probed = culprit in job.probing
            if probed:
                job.probing.remove(culprit)
            self._release_probes(job)
            looked_healthy = not culprit.failures
            if looked_healthy or probed:
                culprit.failures += 1
                culprit.last_error = job.last_error
                culprit.retry_at = now + backoff_s(
                    culprit.failures, base_s=self.retry_base_s, max_s=self.retry_max_s
                )
                if looked_healthy:
                    culprit.down_since = now
                self._timer.at(culprit.retry_at, lambda h=culprit: self._wake_one(h))
            culprit.probing = False
            if looked_healthy:
                # Others were getting through: this failure may be the key's own.
                job.attempts += 1
        if looked_healthy:
            log.warning(
                "[%s] failed (%s); holding its work and retrying with backoff up to %gs",
                culprit.name,
                job.last_error,
                self.retry_max_s,
            )
        if job.attempts >= self.max_attempts and looked_healthy:
            self._give_up(job, f"failed {job.attempts} times")
            return None
        self.counters.add(retried=1)
        return culprit

    def _release_probes(self, job: _Job) -> None:
        """Called with the lock held: let someone else probe what this job was probing."""
        for health in job.probing:
            health.probing = False
            if health.waiting:
                self._ready.append(health.waiting.popleft())
                self._cond.notify()
        job.probing = []

    def _job_failed(self, job: _Job, exc: BaseException) -> None:
        job.last_error = f"{type(exc).__name__}: {exc}"
        job.attempts += 1
        if isinstance(exc, _HOPELESS) or job.attempts >= self.max_attempts:
            self._give_up(
                job,
                f"failed {job.attempts} times"
                if not isinstance(exc, _HOPELESS)
                else "cannot be copied",
            )
            return
        delay = backoff_s(job.attempts, base_s=self.retry_base_s, max_s=self.retry_max_s)
        log.warning(
            "%r: %s (attempt %d of %d); retrying in %.1fs",
            job.key,
            job.last_error,
            job.attempts,
            self.max_attempts,
            delay,
        )
        self.counters.add(retried=1)
        with self._cond:
            job.running = False
        self._timer.at(time.monotonic() + delay, lambda: self._requeue(job))

    def _requeue(self, job: _Job) -> None:
        with self._cond:
            if not job.abandoned and not job.running:
                self._ready.append(job)
                self._cond.notify()

    def _give_up(self, job: _Job, reason: str) -> None:
        self._finish(job, "failed", error=job.last_error, reason=reason)

    # ------------------------------------------------------------------ completion

    def _finish(
        self, job: _Job, outcome: str, *, error: str | None = None, reason: str | None = None
    ) -> None:
        duration = time.monotonic() - (job.started or time.monotonic())
        with self._cond:
            if job.abandoned:
                return
            job.reporting = True  # drain() waits for this report rather than abandon it
            self._reporting += 1
        sizes = [r.size for r in job.results.values()]
        result = Outcome(
            key=job.key,
            op=job.item.op,
            outcome=outcome,
            size=max(sizes) if sizes else 0,
            destinations=tuple(d.name for d in self.destinations if d.name in job.done),
            duration_s=duration,
            attempts=job.attempts,
            error=error,
            reason=reason,
        )
        try:
            self._count_and_log(job, result)
            # Reported before the key is released, so that once drain() sees no jobs, every
            # acknowledgement has reached the source.
            self.on_complete(job.tickets, result)
        except Exception:
            log.exception("reporting the outcome for %r failed", job.key)
        finally:
            with self._cond:
                self._reporting -= 1
                job.running = False
                job.finished = True
                self._held -= len(job.tickets)
                if self._jobs.get(job.key) is job:
                    waiting = self._next.pop(job.key, None)
                    if waiting is not None:
                        self._jobs[job.key] = waiting
                        self._ready.append(waiting)
                    else:
                        del self._jobs[job.key]
                self._cond.notify_all()

    def _count_and_log(self, job: _Job, result: Outcome) -> None:
        counts = {
            "copied": "copied",
            "skipped": "skipped",
            "missing": "missing",
            "deleted": "deleted",
            "ignored": "deletes_ignored",
            "failed": "failed",
        }
        copied_bytes = sum(r.size for r in job.results.values() if r.outcome == "copied")
        self.counters.add(**{counts[result.outcome]: 1}, bytes=copied_bytes)
        kinds = {r.outcome for r in job.results.values()}
        if len(kinds) > 1:
            where = ",".join(f"{name}:{r.outcome}" for name, r in job.results.items())
        else:
            where = ",".join(result.destinations) or "-"
        line = (
            f"{result.outcome} key={job.key!r} size={result.size} destinations={where} "
            f"duration={result.duration_s:.3f}s"
        )
        if len(job.tickets) > 1:
            line += f" events={len(job.tickets)}"
        if result.outcome == "failed":
            log.error(
                "%s attempts=%d reason=%r error=%s",
                line,
                result.attempts,
                result.reason,
                result.error,
            )
        elif result.outcome == "missing":
            log.info("%s (no such key at the source: deleted since it was announced?)", line)
        elif result.outcome == "ignored":
            log.info("%s (delete propagation is off: [listen] delete = false)", line)
        else:
            log.info("%s", line)


# --------------------------------------------------------------------------- the daemon


class Listener:
    """``s3s3listen`` as an object: a source, a :class:`Replicator`, and their lifecycle.

    Embed it with ``Listener(settings).run(stop=event)``; set the event to stop. Nothing
    happens in the constructor: connections are made, threads started and (in the main
    thread) SIGTERM/SIGINT handlers installed by :meth:`run`, which restores them on return.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        counters: Counters | None = None,
        redis_client: redis.Redis | None = None,
        source: Endpoint | None = None,
        destinations: Sequence[Endpoint] | None = None,
    ) -> None:
        self.settings = settings
        self.counters = counters or Counters()
        self._redis = redis_client
        self._source = source
        self._destinations = destinations

    def run(
        self, *, stop: threading.Event | None = None, install_signals: bool | None = None
    ) -> int:
        """Listen until ``stop`` is set (or SIGTERM/SIGINT); return the exit code.

        0 after a clean stop; 2 on a fatal error (bad credentials, missing bucket, Redis
        refusing the password); 3 (:data:`EXIT_CRASH`) when a thread (intake, list mover,
        worker) died of an unexpected exception: intake stops, in-flight work gets the
        grace period, the rest is handed back, so a supervisor's restart loses nothing in
        stream mode. A second signal stops waiting for in-flight work.
        """
        stop = stop or threading.Event()
        hurry = threading.Event()
        received: list[str] = []
        if install_signals is None:
            install_signals = threading.current_thread() is threading.main_thread()
        restore = _install_signals(stop, hurry, received) if install_signals else None
        try:
            return self._run(stop, hurry, received)
        finally:
            if restore is not None:
                restore()

    def _run(self, stop: threading.Event, hurry: threading.Event, received: list[str]) -> int:
        settings = self.settings
        rcfg, lcfg = settings.redis, settings.listen
        source_ep = self._source or Endpoint(settings.source)
        dest_eps = list(self._destinations or [Endpoint(d) for d in settings.destinations])
        if not _check_endpoints([source_ep, *dest_eps]):
            return EXIT_FATAL
        # Uploads an earlier run left open (kill -9, a copy stuck past the grace); in the
        # background, so that replication starts at once.
        threading.Thread(
            target=_sweep_uploads, args=(dest_eps,), name="s3s3-upload-sweep", daemon=True
        ).start()
        client = self._redis or daemon_client(rcfg)
        link = RedisLink(
            rcfg.safe_url, retry_base_s=lcfg.retry_base_s, retry_max_s=lcfg.retry_max_s
        )
        common = dict(
            link=link,
            counters=self.counters,
            source_bucket=settings.source.bucket,
            key_encoding=lcfg.event_key_encoding,
        )
        # Small reads share a burst between listeners on several hosts; the replicator's
        # max_held still lets one listener read ahead while its workers are busy.
        source = (
            StreamSource(client, rcfg, batch=max(16, min(256, 2 * lcfg.workers)), **common)
            if rcfg.mode == "stream"
            else PubSubSource(client, rcfg, **common)
        )
        replicator = Replicator(
            source_ep,
            dest_eps,
            on_complete=source.complete,
            workers=lcfg.workers,
            delete=lcfg.delete,
            retry_base_s=lcfg.retry_base_s,
            retry_max_s=lcfg.retry_max_s,
            max_attempts=rcfg.max_deliveries,
            counters=self.counters,
        )
        intake_stop = threading.Event()
        crashes: list[str] = []

        def crashed(name: str, exc: BaseException, *, logged: bool = False) -> None:
            # A thread is gone: stop the rest, hand back, and exit for a restart.
            if not logged:
                log_crash(name, exc)
            crashes.append(name)
            intake_stop.set()

        replicator.on_crash = lambda name, exc: crashed(name, exc, logged=True)
        # A dead writer would leave every copy unacknowledged: it counts as a crash too.
        source.writer.on_crash = crashed
        source.start()
        replicator.start()
        threads = [
            threading.Thread(
                target=guarded(source.run, crashed),
                args=(replicator, intake_stop),
                name="s3s3-intake",
                daemon=True,
            )
        ]
        mover = None
        if rcfg.mode == "stream" and rcfg.list_key:
            mover = ListMover(client, rcfg, link=link)
            threads.append(
                threading.Thread(
                    target=guarded(mover.run, crashed),
                    args=(intake_stop,),
                    name="s3s3-list-mover",
                    daemon=True,
                )
            )
        for thread in threads:
            thread.start()
        log.info(
            "s3s3listen started: %s; source %s; destinations %s; %d workers; delete propagation %s",
            source.describe(),
            settings.source.describe(),
            ", ".join(d.describe() for d in settings.destinations),
            lcfg.workers,
            "on" if lcfg.delete else "off",
        )
        next_summary = time.monotonic() + lcfg.summary_interval_s
        while not stop.is_set() and not intake_stop.is_set():
            stop.wait(max(0.0, min(1.0, next_summary - time.monotonic())))
            if time.monotonic() >= next_summary:
                next_summary = time.monotonic() + lcfg.summary_interval_s
                log.info("%s", replicator.summary_line())
        if received:
            log.info(
                "%s received: stopping intake, finishing in-flight work within %gs",
                received[0],
                lcfg.grace_s,
            )
        intake_stop.set()
        for thread in threads:
            thread.join(timeout=10.0)
        unfinished = replicator.drain(lcfg.grace_s, cancel=hurry)
        if unfinished:
            source.hand_back(unfinished)
        source.close(timeout_s=5.0)
        log.info("%s", replicator.summary_line())
        fatal = source.fatal or (mover.fatal if mover else None)
        if crashes:
            log.error(
                "s3s3listen stopped after thread %s crashed (exit code %d)", crashes[0], EXIT_CRASH
            )
            return EXIT_CRASH
        log.info("s3s3listen stopped%s", f" after a fatal error: {fatal}" if fatal else "")
        return EXIT_FATAL if fatal else EXIT_OK


def _sweep_uploads(destinations: Sequence[Endpoint]) -> None:
    """Thread: abort s3s3's stale multipart uploads at every destination (errors are
    logged: a sweep that fails must not stop replication)."""
    try:
        sweep_uploads(destinations)
    except Exception:
        log.exception("aborting stale multipart uploads failed")


def _check_endpoints(endpoints: Sequence[Endpoint]) -> bool:
    """Refuse to start on bad credentials or a missing bucket; tolerate an endpoint that is down."""
    for endpoint in endpoints:
        try:
            endpoint.check_bucket()
        except FatalEndpointError as exc:
            log.error("fatal: %s", exc)
            return False
        except EndpointError as exc:
            log.warning(
                "%s does not answer yet (%s); its work will be held until it does",
                endpoint.cfg.describe(),
                exc,
            )
    return True


def _install_signals(stop: threading.Event, hurry: threading.Event, received: list[str]):
    """SIGTERM/SIGINT: the first stops intake, a second stops waiting. Returns a restorer."""

    def handler(signum, _frame) -> None:
        # Only set events here: logging from a signal handler can deadlock on its own lock.
        received.append(signal.Signals(signum).name)
        if stop.is_set():
            hurry.set()
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def run_listener(settings: Settings, *, stop: threading.Event | None = None) -> int:
    """Run ``s3s3listen`` with ``settings`` until ``stop`` is set or a signal arrives.

    Returns the exit code (0 clean stop, 2 fatal, 3 a thread crashed). Signal handlers are
    installed only when called from the main thread.
    """
    return Listener(settings).run(stop=stop)


__all__ = ["Counters", "Listener", "Outcome", "Replicator", "is_transient", "run_listener"]
