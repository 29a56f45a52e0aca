"""Turning work items into verified copies at every destination: the listener's engine.

:class:`Replicator` takes work items (``copy`` or ``delete`` of one key) with an opaque
ticket each, runs them on a bounded pool of worker threads, and reports each finished job
with its tickets and a :class:`JobResult` to ``on_complete``; the intake acknowledges a
ticket only then. A job's copies to every destination that is up share one read of the
source (``s3s3.fanout.copy_to_all``); a copier a test gives copies destination by
destination instead. It knows nothing of message formats or Redis, and does not
retry inside a copy: a job is retried as a whole, on the replicator's timer.

Rules, and why:

- **Per-key ordering** (:mod:`.ordering`): at most one job per key runs at a time; events for
  a key whose job has not started join it (*coalesced*), events arriving while it runs wait
  for it and run next. The later state wins.
- **HEAD before copy.** A first delivery copies without looking at the destination
  (``force=True``): the event says the key just changed, so a HEAD would almost never save
  the copy and would add a third request to the GET and PUT — a third more work for the
  small objects that dominate event traffic. Duplicates are handled where they are likely:
  a job that follows a running job for the same key, a redelivered stream entry and a job
  merged after a partial run compare first (HEAD both sides, skip when identical).
- **Stale events are dropped.** A store's push redelivers and reorders; an event whose
  sequence is at or below the latest one a finished job for its key served is acknowledged
  at once as ``skipped`` (counted as ``stale``), without a request. Pushed events also
  compare before copying (``WorkItem.compare``), so a duplicate that arrives while the
  first is still queued or running costs HEADs, not a copy.
- **Deletes** are applied only with ``[listen] delete = true``. The source is checked first:
  a key that exists again (re-created since the delete) is copied instead.
- **A key missing at the source** (deleted since it was announced) finishes as ``missing``:
  acknowledged and counted, never retried.
- **Outages** (retryable failures of endpoint scope: throttling, 5xx, timeouts, refused
  connections) hold the job on the endpoint that failed (:mod:`.health`, the breaker)
  until a probe gets through. An outage counts against the job itself only when its
  endpoint looked healthy (other keys were getting through), so a long outage dead-letters
  nothing.
- **A failure that no retry can fix for this key** (not retryable, of key scope:
  ``ObjectTooLarge``) fails the job at once.
- **Other failures** (access denied, corruption detected and cleaned up, an error s3s3 did
  not expect) are retried as a whole job with the backoff of the retry policy; after its
  ``attempts`` (``[pubsub] max_deliveries``, stream redeliveries included) the job is
  reported ``failed`` (the stream intake dead-letters it).
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from s3s3.errors import CopyCancelled, Scope, is_retryable, scope_of
from s3s3.fanout import Result, copy_to_all, one_by_one
from s3s3.listener.counters import Counters
from s3s3.listener.health import Breaker, Health, is_outage
from s3s3.listener.observer import NoObserver, Observer
from s3s3.listener.ordering import Applied, Job, KeyOrder
from s3s3.listener.threads import guarded, log_crash
from s3s3.listener.timer import Timer
from s3s3.model import COPY, DELETE, CopyResult, Outcome, WorkItem
from s3s3.replay import reconcile_to_all
from s3s3.retry import Policy
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import copy_object

log = logging.getLogger("s3s3.listen")

#: The retry policy when none is given: that of ``[pubsub] max_deliveries`` and ``[listen]
#: retry_base`` / ``retry_max`` at their defaults.
DEFAULT_RETRY = Policy(attempts=5, base_s=0.5, max_s=30.0)

#: The counter each job outcome adds one to.
_COUNTER = {
    Outcome.COPIED: "copied",
    Outcome.SKIPPED: "skipped",
    Outcome.MISSING: "missing",
    Outcome.DELETED: "deleted",
    Outcome.IGNORED: "deletes_ignored",
    Outcome.FAILED: "failed",
}


class Copier(Protocol):
    """What the replicator copies one key with: :func:`s3s3.transfer.copy_object`'s shape."""

    def __call__(
        self,
        src: Endpoint,
        dst: Endpoint,
        key: str,
        *,
        force: bool = False,
        cancel: threading.Event | None = None,
    ) -> CopyResult: ...


class FanOut(Protocol):
    """What copies one key to several destinations: :func:`s3s3.fanout.copy_to_all`'s shape,
    one result (a CopyResult or the exception raised) per destination."""

    def __call__(
        self,
        src: Endpoint,
        dsts: Sequence[Endpoint],
        key: str,
        *,
        force: bool = False,
        cancel: threading.Event | None = None,
    ) -> list[Result]: ...


@dataclass(frozen=True)
class JobResult:
    """What became of one job (one key, possibly several coalesced events)."""

    key: str
    op: str
    outcome: Outcome
    size: int = 0
    destinations: tuple[str, ...] = ()
    duration_s: float = 0.0
    attempts: int = 0
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ReplicatorState:
    """A replicator's state at one moment (see :meth:`Replicator.state`)."""

    held: int  # tickets submitted and not yet reported
    jobs: int  # keys with work: running, queued, held, waiting to retry or for their key
    running: int  # copier calls running now
    down: dict[str, tuple[float, int]]  # endpoint name -> (seconds down, jobs held for it)
    # endpoint name -> requests it allows in flight now (halved on SlowDown, store.pacing)
    request_limits: dict[str, int] = field(default_factory=dict)


def cannot_succeed(exc: BaseException) -> bool:
    """Whether no retry can copy this key: the failure is the key's own and not retryable
    (an object too large for the destination's settings)."""
    return not is_retryable(exc) and scope_of(exc) is Scope.KEY


class Replicator:
    """A bounded pool replicating work items to every destination; see the module docstring.

    ``on_complete(tickets, result)`` is called from a worker thread once per finished job,
    with the tickets of every event the job served; it must be quick and must not raise.
    ``retry`` is the policy of whole-job retries (its ``attempts``, base and cap) and of the
    breaker's probes (its delays only). A worker thread that dies of an unexpected exception
    (a bug: job failures never kill one) is logged with its traceback, kept in ``crashed``
    and passed to ``on_crash(thread_name, exc)``; the listener then stops and hands back its
    work.
    """

    def __init__(
        self,
        source: Endpoint,
        destinations: Sequence[Endpoint],
        *,
        on_complete: Callable[[list, JobResult], None],
        copier: Copier = copy_object,
        workers: int = 32,
        delete: bool = False,
        versions: bool = False,
        delete_markers: bool = False,
        retry: Policy = DEFAULT_RETRY,
        max_held: int | None = None,
        counters: Counters | None = None,
        on_crash: Callable[[str, BaseException], None] | None = None,
        observer: Observer | None = None,
    ) -> None:
        if not destinations:
            raise ValueError("at least one destination is needed")
        self.source = source
        self.destinations = tuple(destinations)
        self.on_complete = on_complete
        self.copier = copier
        # One read of the source for every destination; a copier a test gives copies
        # destination by destination, so it sees every copy.
        self.fan_out: FanOut = (
            copy_to_all if copier is copy_object else functools.partial(one_by_one, copier)
        )
        self.workers = workers
        self.delete = delete
        # A versioned source: every event's work is its key's history (s3s3.replay).
        self.versions = versions
        self.delete_markers = delete_markers
        self.retry = retry
        self.max_held = max_held or max(256, workers * 16)
        self.counters = counters or Counters()
        self.observer: Observer = observer or NoObserver()
        self.on_crash = on_crash
        self.crashed: BaseException | None = None
        self._cond = threading.Condition()  # guards the order, the breaker and all below
        self._order = KeyOrder()
        self._applied = Applied()
        self._ready: collections.deque[Job] = collections.deque()
        self._held = 0
        self._reporting = 0
        self._stopping = False
        self._breaker = Breaker((ep.name for ep in (source, *destinations)), backoff=retry)
        self._timer = Timer()
        self._last_summary = (time.monotonic(), 0)
        # Set by drain() when it gives up on the copies in flight: they stop at their next
        # chunk or part and abort their multipart uploads.
        self._abandon = threading.Event()
        self._copying = 0  # copier calls running now

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

    def submit(self, item: WorkItem, ticket: object, *, prior_attempts: int = 0) -> None:
        """Queue ``item``; ``ticket`` comes back through ``on_complete`` when it is done.

        ``prior_attempts`` counts attempts already spent elsewhere (stream redeliveries).
        """
        with self._cond:
            if self._stopping:
                # Intake outlived the grace period; the source still owns the ticket (a
                # stream entry stays pending and is reclaimed later).
                log.debug("not accepting %r: stopping", item.key)
                return
            applied = self._applied.stale(item)
            if applied is None:
                self._held += 1
                job, coalesced = self._order.add(item, ticket, prior_attempts)
                if job is not None:
                    self._ready.append(job)
                    self._cond.notify()
        if applied is not None:
            self._drop_stale(item, ticket, applied)
            return
        self.counters.add(received=1, coalesced=1 if coalesced else 0)

    def _drop_stale(self, item: WorkItem, ticket: object, applied: int) -> None:
        self.counters.add(received=1, stale=1, skipped=1)
        log.info(
            "skipped key=%r event=%s (stale: sequence %d, and %d is already applied)",
            item.key,
            item.event or item.op,
            item.sequence,
            applied,
            extra={"key": item.key, "op": item.op, "outcome": "skipped", "reason": "stale event"},
        )
        result = JobResult(key=item.key, op=item.op, outcome=Outcome.SKIPPED, reason="stale event")
        try:
            self.observer.finished(result, ())
            self.on_complete([ticket], result)
        except Exception:
            log.exception("reporting the outcome for %r failed", item.key)

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
            while (len(self._order) or self._reporting) and not (
                cancel is not None and cancel.is_set()
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(0.1, left))
            unfinished: list = []
            for job in self._order.take_all():
                if job.reporting:
                    continue  # finished; its report is being delivered
                job.abandoned = True
                unfinished.extend(job.tickets)
            self._ready.clear()
            self._breaker.forget_waiting()
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

    def state(self) -> ReplicatorState:
        """What is in hand now, for gauges and readiness: read when scraped."""
        now = time.monotonic()
        with self._cond:
            return ReplicatorState(
                held=self._held,
                jobs=len(self._order),
                running=self._copying,
                down={h.name: (now - h.down_since, len(h.waiting)) for h in self._breaker.down()},
                request_limits={
                    ep.name: ep.concurrency_limit() for ep in (self.source, *self.destinations)
                },
            )

    def summary_line(self) -> str:
        """One line for the log: totals, what is in flight and held, the recent rate."""
        snap = self.counters.snapshot()
        now = time.monotonic()
        then, done_then = self._last_summary
        done = snap["copied"] + snap["skipped"] + snap["deleted"] + snap["missing"]
        self._last_summary = (now, done)
        rate = (done - done_then) / (now - then) if now > then else 0.0
        with self._cond:
            in_flight = len(self._order)
            held = [
                f"{h.name} down {now - h.down_since:.0f}s, {len(h.waiting)} jobs held"
                for h in self._breaker.down()
            ]
        return (
            f"summary: {snap['copied']} copied ({snap['bytes']} bytes written), "
            f"{snap['skipped']} already there, {snap['missing']} missing at source, "
            f"{snap['deleted']} deleted, "
            f"{snap['deletes_ignored']} deletes ignored, {snap['failed']} failed, "
            f"{snap['bad_messages']} bad messages, {snap['ignored_events']} events skipped, "
            f"{snap['coalesced']} coalesced, {snap['stale']} stale, "
            f"{snap['dead_lettered']} dead-lettered; "
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

    def _run(self, job: Job) -> None:
        if job.started is None:
            job.started = time.monotonic()
        item = job.item
        if item.op == DELETE and not self.delete and not self.versions:
            self._finish(job, Outcome.IGNORED)
            return
        src = self._breaker[self.source.name]
        # With versions, a delete's marker is part of the key's history, replayed (or not,
        # by delete_markers) with the rest.
        op = COPY if self.versions else item.op
        if op == DELETE:
            if job.resolved_op is None:
                blocked = self._gate(job, (src,))
                if blocked is not None:
                    self._park(job, blocked)
                    return
                try:
                    info = self.source.head(job.key)
                except Exception as exc:
                    self.observer.failed(self.source.name, exc)
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
        blocked_on: Health | None = None
        failure: BaseException | None = None
        ready: list[tuple[Endpoint, tuple[Health, ...]]] = []
        for dst in self.destinations:
            if dst.name in job.done:
                continue
            health = self._breaker[dst.name]
            involved: tuple[Health, ...] = (src, health) if op == COPY else (health,)
            blocked = self._gate(job, involved)
            if blocked is None:
                ready.append((dst, involved))
                continue
            if blocked is src:
                self._park(job, src)  # nothing can be copied while the source is down
                return
            blocked_on = blocked_on or blocked  # the other destinations go ahead meanwhile
        if ready:
            outcomes: list[Result | None]
            if op == COPY:
                # One read of the source for every destination that is up (s3s3.fanout).
                outcomes = list(self._copy(job, [dst for dst, _ in ready]))
            else:
                outcomes = [self._delete(dst, job.key) for dst, _ in ready]
            source_down = False
            for (dst, involved), outcome in zip(ready, outcomes, strict=True):
                if isinstance(outcome, CopyCancelled):
                    return  # abandoned by drain(): its tickets were handed back
                if isinstance(outcome, BaseException):
                    self.observer.failed(dst.name, outcome)
                    if not is_outage(outcome):
                        with self._cond:
                            self._release(self._breaker.release_probes(job))
                        failure = failure or outcome
                        continue
                    if source_down:
                        continue  # the shared read's failure, counted once
                    blocked = self._failed(job, outcome, involved)
                    if blocked is None:
                        return  # given up
                    source_down = blocked is src
                    blocked_on = blocked_on or blocked
                    continue
                self._healthy(job, involved)
                if outcome is not None:
                    if outcome.outcome is Outcome.MISSING:
                        self._finish(job, Outcome.MISSING)
                        return
                    job.results[dst.name] = outcome
                    self.observer.copied(dst.name, outcome)
                else:
                    self.observer.deleted(dst.name)
                job.done.add(dst.name)
            if source_down:
                self._park(job, src)  # nothing can be copied while the source is down
                return
        if failure is not None:
            self._job_failed(job, failure)
        elif blocked_on is not None:
            self._park(job, blocked_on)
        elif op == COPY:
            copied = any(r.outcome is Outcome.COPIED for r in job.results.values())
            self._finish(job, Outcome.COPIED if copied else Outcome.SKIPPED)
        else:
            self._finish(job, Outcome.DELETED)

    def _copy(self, job: Job, dsts: Sequence[Endpoint]) -> list[Result]:
        """One copy of the job's key to ``dsts`` (one read of the source for them all),
        counted so that drain() can wait for cancelled ones."""
        with self._cond:
            self._copying += 1
        try:
            if self.versions:
                return reconcile_to_all(
                    self.source,
                    dsts,
                    job.key,
                    delete_markers=self.delete_markers,
                    version_id=job.item.version_id,
                    cancel=self._abandon,
                )
            return self.fan_out(self.source, dsts, job.key, force=job.force, cancel=self._abandon)
        finally:
            with self._cond:
                self._copying -= 1
                if self._stopping and not self._copying:
                    self._cond.notify_all()  # only then: idle workers wait on this condition

    @staticmethod
    def _delete(dst: Endpoint, key: str) -> BaseException | None:
        try:
            dst.delete(key)
        except Exception as exc:
            return exc
        return None

    # ------------------------------------------------------------------ endpoint health

    def _release(self, jobs: Sequence[Job]) -> None:
        """Called with the lock held: queue the jobs the breaker let go."""
        if jobs:
            self._ready.extend(jobs)
            self._cond.notify(len(jobs))

    def _gate(self, job: Job, healths: Sequence[Health]) -> Health | None:
        now = time.monotonic()
        with self._cond:
            return self._breaker.gate(job, healths, now)

    def _park(self, job: Job, health: Health) -> None:
        """Hold ``job`` until ``health`` answers again (or a probe slot opens)."""
        with self._cond:
            job.running = False
            if job.abandoned:
                return
            if not self._breaker.hold(job, health, time.monotonic()):
                self._release((job,))

    def _healthy(self, job: Job, healths: Sequence[Health]) -> None:
        with self._cond:
            self._release(self._breaker.recovered(job, healths, time.monotonic()))

    def _wake_one(self, health: Health) -> None:
        """Timer: release one held job to probe ``health`` (the others wait for its result)."""
        with self._cond:
            job = self._breaker.wake_one(health)
            if job is not None:
                self._release((job,))

    def _failed(self, job: Job, exc: BaseException, healths: Sequence[Health]) -> Health | None:
        """``job`` failed calling ``healths``: hold it on the endpoint of an outage and
        return that endpoint, or None when the job was retried or given up."""
        job.last_error = f"{type(exc).__name__}: {exc}"
        if not is_outage(exc):
            with self._cond:
                self._release(self._breaker.release_probes(job))
            self._job_failed(job, exc)
            return None
        culprit = self._breaker.culprit(exc, healths, source=self.source.name)
        with self._cond:
            verdict = self._breaker.fail(job, culprit, time.monotonic())
            self._release(verdict.released)
            if verdict.wake_at is not None:
                self._timer.at(verdict.wake_at, functools.partial(self._wake_one, culprit))
            if verdict.looked_healthy:
                # Others were getting through: this failure may be the key's own.
                job.attempts += 1
        if verdict.looked_healthy:
            log.warning(
                "[%s] failed (%s); holding its work and retrying with backoff up to %gs",
                culprit.name,
                job.last_error,
                self.retry.max_s,
                extra={
                    "key": job.key,
                    "endpoint": culprit.name,
                    "attempts": job.attempts,
                    "error": job.last_error,
                },
            )
            if self.retry.attempts is not None and job.attempts >= self.retry.attempts:
                self._give_up(job, f"failed {job.attempts} times")
                return None
        self.counters.add(retried=1)
        return culprit

    # ------------------------------------------------------------------ retries

    def _job_failed(self, job: Job, exc: BaseException) -> None:
        """Retry ``job`` as a whole after the policy's backoff, or give it up."""
        job.last_error = f"{type(exc).__name__}: {exc}"
        job.attempts += 1
        if cannot_succeed(exc):
            self._give_up(job, "cannot be copied")
            return
        now = time.monotonic()
        delay = self.retry.next_delay_s(job.attempts, now - (job.started or now))
        if delay is None:
            self._give_up(job, f"failed {job.attempts} times")
            return
        log.warning(
            "%r: %s (attempt %d%s); retrying in %.1fs",
            job.key,
            job.last_error,
            job.attempts,
            "" if self.retry.attempts is None else f" of {self.retry.attempts}",
            delay,
            extra={
                "key": job.key,
                "outcome": "retrying",
                "attempts": job.attempts,
                "error": job.last_error,
                "retry_in_s": round(delay, 3),
            },
        )
        self.counters.add(retried=1)
        with self._cond:
            job.running = False
        self._timer.at(now + delay, functools.partial(self._requeue, job))

    def _requeue(self, job: Job) -> None:
        with self._cond:
            if not job.abandoned and not job.running:
                self._ready.append(job)
                self._cond.notify()

    def _give_up(self, job: Job, reason: str) -> None:
        self._finish(job, Outcome.FAILED, error=job.last_error, reason=reason)

    # ------------------------------------------------------------------ completion

    def _finish(
        self, job: Job, outcome: Outcome, *, error: str | None = None, reason: str | None = None
    ) -> None:
        duration = time.monotonic() - (job.started or time.monotonic())
        with self._cond:
            if job.abandoned:
                return
            job.reporting = True  # drain() waits for this report rather than abandon it
            self._reporting += 1
            if outcome is not Outcome.FAILED:
                # Before the outcome is logged or acknowledged: whoever hears of it and
                # sends the same event again finds it stale.
                self._applied.finished(job)
        sizes = [r.size for r in job.results.values()]
        result = JobResult(
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
            self.observer.finished(result, job.event_times)
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
                waiting = self._order.release(job)
                if waiting is not None:
                    self._ready.append(waiting)
                self._cond.notify_all()

    def _count_and_log(self, job: Job, result: JobResult) -> None:
        copied_bytes = sum(r.size for r in job.results.values() if r.outcome is Outcome.COPIED)
        self.counters.add(**{_COUNTER[result.outcome]: 1}, bytes=copied_bytes)
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
        # The same facts as fields, for [logging] format = json (text lines ignore them).
        fields: dict[str, object] = {
            "key": job.key,
            "op": result.op,
            "outcome": result.outcome.value,
            # Where it was applied; a job that failed or found no key: all it was for.
            "destination": ",".join(
                result.destinations or tuple(d.name for d in self.destinations)
            ),
            "bytes": copied_bytes,
            "size": result.size,
            "duration_s": round(result.duration_s, 6),
            "events": len(job.tickets),
        }
        if job.results:
            fields["results"] = {
                name: {
                    "outcome": r.outcome.value,
                    "bytes": r.size if r.outcome is Outcome.COPIED else 0,
                    "duration_s": round(r.duration_s, 6),
                }
                for name, r in job.results.items()
            }
        if result.outcome is Outcome.FAILED:
            fields.update(attempts=result.attempts, reason=result.reason, error=result.error)
            log.error(
                "%s attempts=%d reason=%r error=%s",
                line,
                result.attempts,
                result.reason,
                result.error,
                extra=fields,
            )
        elif result.outcome is Outcome.MISSING:
            log.info(
                "%s (no such key at the source: deleted since it was announced?)",
                line,
                extra=fields,
            )
        elif result.outcome is Outcome.IGNORED:
            log.info("%s (delete propagation is off: [listen] delete = false)", line, extra=fields)
        else:
            log.info("%s", line, extra=fields)


__all__ = ["Copier", "JobResult", "Replicator", "ReplicatorState", "cannot_succeed"]
