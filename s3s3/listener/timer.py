"""One thread that runs callbacks at given monotonic times: the replicator's retry backoffs
and the breaker's probes. It only keeps time; what the callbacks do is their owner's."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("s3s3.listen")


class Timer:
    """Callbacks run in order of their time, one at a time, in the timer's own thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()  # ties run in the order they were set
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="s3s3-timer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` once ``time.monotonic()`` reaches ``when``."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._cond.notify()

    def stop(self) -> None:
        """Stop; callbacks not yet due never run."""
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
