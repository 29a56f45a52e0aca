"""The listener's share of a ranged reconcile: running range work beside the replication of
keys.

:class:`RangeWorker` takes :class:`~s3s3.model.RangeWork` items (one range of a run each)
from the range intake, and runs each through the reconcile it is given (the bucket job's
own, restricted to the range: ``s3s3.bucketjob.ranged``, injected by ``s3s3listen``), on
``slots`` threads of its own, so that keys announced in real time keep the replicator's
workers. ``room()`` is its free slots: the intake reads a range only when one is free.

A reconcile that raises is retried after the retry policy's backoff, up to its
``attempts`` (``[pubsub] max_deliveries``, earlier deliveries included), then reported
``failed`` (the intake dead-letters it). A reconcile cut short by the listener's stop is
not reported: its ticket is handed back at shutdown, and whoever takes the range again
redoes it (what was copied is skipped then). It knows nothing of Redis or message formats.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from s3s3.model import Outcome, RangeWork
from s3s3.retry import Policy

log = logging.getLogger("s3s3.listen")

#: Retries of a range when none are given: ``[pubsub] max_deliveries`` and ``[listen]``'s
#: backoff at their defaults.
DEFAULT_RETRY = Policy(attempts=5, base_s=0.5, max_s=30.0)


class RangeReconciler(Protocol):
    """Reconciles one range: returns its summary (plain JSON data; ``stopped`` true when
    ``stop`` cut it short), or raises when it could not be done."""

    def __call__(self, work: RangeWork, *, stop: threading.Event) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class RangeResult:
    """What became of one range: what the intake records and acknowledges."""

    key: str
    run_id: str
    index: int
    outcome: Outcome  # COPIED (reconciled) or FAILED
    summary: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 0
    error: str | None = None
    reason: str | None = None


class RangeWorker:
    """Runs range work on ``slots`` threads; see the module docstring.

    ``on_complete(tickets, result)`` is called from a worker thread once per range done or
    given up, with the range's ticket; ``on_crash(thread_name, exc)`` if a thread dies of
    a bug.
    """

    def __init__(
        self,
        reconcile: RangeReconciler,
        *,
        on_complete: Callable[[list, RangeResult], None],
        slots: int = 1,
        retry: Policy = DEFAULT_RETRY,
        on_crash: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.reconcile = reconcile
        self.on_complete = on_complete
        self.slots = slots
        self.retry = retry
        self.on_crash = on_crash
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[Any, object, int]] = collections.deque()
        self._held: list[object] = []  # tickets submitted and not reported
        self._stop = threading.Event()  # drain(): the reconciles in flight wind down
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ the Feed

    def submit(self, item: Any, ticket: object, *, prior_attempts: int = 0) -> None:
        with self._cond:
            if self._stop.is_set():
                return  # the intake still owns it: it stays pending, and is reclaimed
            self._held.append(ticket)
            self._queue.append((item, ticket, prior_attempts))
            self._cond.notify()

    def room(self) -> int:
        with self._cond:
            return self.slots - len(self._held)

    def wait_for_room(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: len(self._held) < self.slots or self._stop.is_set(), timeout_s
            )

    def held(self) -> int:
        with self._cond:
            return len(self._held)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for i in range(self.slots):
            thread = threading.Thread(target=self._work, name=f"s3s3-range-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Take no more ranges; tell the reconciles in flight to wind down."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def drain(self, timeout_s: float, *, cancel: threading.Event | None = None) -> list:
        """Stop the reconciles in flight (they finish their copies within the bucket
        job's ``grace``), wait up to ``timeout_s``; return the tickets left unreported."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + max(0.0, timeout_s)
        for thread in self._threads:
            while thread.is_alive() and time.monotonic() < deadline:
                if cancel is not None and cancel.is_set():
                    break
                thread.join(timeout=0.1)
        with self._cond:
            left, self._held = self._held, []
            self._queue.clear()
        return left

    # ------------------------------------------------------------------ work

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stop.is_set():
                        self._cond.wait()
                    if self._stop.is_set():
                        return
                    item, ticket, prior = self._queue.popleft()
                self._run(item, ticket, prior)
        except Exception as exc:  # a bug: say so, so that the listener stops and hands back
            log.exception("range worker crashed")
            if self.on_crash is not None:
                self.on_crash(threading.current_thread().name, exc)

    def _run(self, item: Any, ticket: object, prior: int) -> None:
        if not isinstance(item, RangeWork):
            self._report(
                ticket,
                RangeResult(
                    key=str(getattr(item, "key", "?")),
                    run_id="",
                    index=-1,
                    outcome=Outcome.FAILED,
                    error="a key on the range stream: keys go to the stream of keys",
                    reason="bad message",
                ),
            )
            return
        attempts = prior
        started = time.monotonic()
        log.info(
            "reconciling %s: keys in (%r, %r] under %r",
            item.key,
            item.start_after,
            item.end,
            item.prefix,
        )
        while True:
            attempts += 1
            try:
                summary = self.reconcile(item, stop=self._stop)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                delay = self.retry.next_delay_s(attempts, time.monotonic() - started)
                if delay is None or self._stop.is_set():
                    if self._stop.is_set():
                        return  # handed back at shutdown, for another try elsewhere
                    log.error("%s failed %d times, giving up: %s", item.key, attempts, error)
                    self._report(
                        ticket,
                        _result(
                            item,
                            Outcome.FAILED,
                            attempts=attempts,
                            error=error,
                            reason=f"failed {attempts} times",
                        ),
                    )
                    return
                log.warning(
                    "%s failed (attempt %d): %s; retrying in %.1fs",
                    item.key,
                    attempts,
                    error,
                    delay,
                )
                if self._stop.wait(delay):
                    return
                continue
            if summary.get("stopped"):
                log.warning("%s was stopped before its end: handed back", item.key)
                return
            log.info("%s reconciled in %.1fs", item.key, time.monotonic() - started)
            self._report(ticket, _result(item, Outcome.COPIED, summary=summary, attempts=attempts))
            return

    def _report(self, ticket: object, result: RangeResult) -> None:
        try:
            self.on_complete([ticket], result)
        except Exception:
            log.exception("reporting %s failed", result.key)
        finally:
            with self._cond:
                if ticket in self._held:
                    self._held.remove(ticket)
                self._cond.notify_all()


__all__ = ["RangeReconciler", "RangeResult", "RangeWorker"]


def _result(item: RangeWork, outcome: Outcome, **fields: Any) -> RangeResult:
    """The report of ``item``'s range: its run and index, with ``fields``."""
    return RangeResult(
        key=item.key, run_id=item.run_id, index=item.index, outcome=outcome, **fields
    )
