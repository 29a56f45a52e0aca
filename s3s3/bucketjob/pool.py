"""The worker threads of a bucket-job run, with back-pressure, and the run's stop signals.

At most ``2 x workers`` items are queued or running at once: :meth:`WorkPool.submit` waits
for a free slot, so the listing never runs more than that ahead of the copies and memory
stays flat over millions of keys. An item that raises a :class:`FatalEndpointError` stops
the run (``stop`` is set, the error kept in ``fatal``); items count their own failures, so
any other exception is a bug, logged with its traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from s3s3.errors import FatalEndpointError

log = logging.getLogger(__name__)


class WorkPool:
    """A thread pool with a bound on the items queued or running.

    ``stop`` is the run's: set from outside (SIGTERM, a lost lock) or by a fatal item.
    ``abandon`` is set once the work in flight is given up (the grace after a stop is over,
    Ctrl-C): copies stop at their next chunk or part and abort their multipart uploads.
    """

    def __init__(self, workers: int, *, stop: threading.Event, name: str = "s3s3-sync") -> None:
        self.workers = workers
        self.stop = stop
        self.abandon = threading.Event()
        self.fatal: FatalEndpointError | None = None
        self._slots = threading.BoundedSemaphore(workers * 2)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``, waiting while ``2 x workers`` items are queued or running."""
        self._slots.acquire()
        try:
            self._executor.submit(self._guarded, fn, args)
        except BaseException:
            self._slots.release()
            raise

    def run_aside(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on a worker without taking a slot (a task beside the listing, not an
        item of it); ``fn`` catches its own exceptions, which would go unseen."""
        self._executor.submit(fn)

    def wait(self) -> None:
        """Wait until every queued item is done (all slots free again)."""
        held = 0
        try:
            for _ in range(self.workers * 2):
                self._slots.acquire()
                held += 1
        finally:
            for _ in range(held):
                self._slots.release()

    def shutdown(self, *, cancel_queued: bool) -> None:
        """Wait for the threads to end; ``cancel_queued`` drops the items not yet started."""
        self._executor.shutdown(wait=True, cancel_futures=cancel_queued)

    def _guarded(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Worker thread: run one item; an endpoint-wide fatal error stops the run."""
        try:
            fn(*args)
        except FatalEndpointError as exc:
            if self.fatal is None:
                self.fatal = exc
                log.error("stopping: %s", exc)
            self.stop.set()
        except Exception:  # a bug in the counting itself: the items count their own failures
            log.exception("unexpected error in %s%r", getattr(fn, "__name__", fn), args[:1])
        finally:
            self._slots.release()
