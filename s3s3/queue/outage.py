"""One server's outages as one caller sees them: when the first failure was, how many tries
failed after it, and when a success ended it, so that an outage makes two log lines however
many tries fail in it.

The daemon's :class:`~s3s3.queue.link.RedisLink`, the intakes'
:class:`~s3s3.queue.announce.Announcer` and the Swift middleware's writer each keep one.
Nothing here logs, waits or talks to a server: the tracker says when there is something to
say (the first failure, the recovery), and the caller says it in its own words, to its own
logger. Thread-safe; it never blocks beyond its own lock, so it serves in a request too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Spell:
    """An outage going on, or the one a success just ended: its failed tries, the seconds
    since the first of them, and what the last one was (as the caller described it)."""

    failures: int
    lasted_s: float
    error: str = ""


class Outage:
    """Records failed tries and successes of one server.

    :meth:`failed` returns 1 for the first failure of an outage (the one to log; the later
    ones are only counted) and :meth:`recovered` returns the outage a success ended (the one
    line to log about it). The very first success ends a spell of no failures
    (``Spell(0, 0.0)``), so that a caller can say when it reached the server at all.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0
        self._error = ""
        self._ever_up = False

    @property
    def ever_up(self) -> bool:
        """Whether a try has succeeded yet: a first failure after one is a lost server, not
        one that cannot be reached."""
        return self._ever_up

    def failed(self, error: str = "") -> int:
        """Count a failed try (``error`` says what it was); return how many the outage has
        had, 1 for its first."""
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
            self._failures += 1
            self._error = error
            return self._failures

    def recovered(self) -> Spell | None:
        """Count a success: the outage it ended, ``Spell(0, 0.0)`` for the first success of
        all, or None when there is nothing to say (the common case, which takes no lock)."""
        if self._ever_up and self._since is None:
            return None
        with self._lock:
            first, self._ever_up = not self._ever_up, True
            since, self._since = self._since, None
            failures, self._failures = self._failures, 0
            error, self._error = self._error, ""
        if since is not None:
            return Spell(failures, time.monotonic() - since, error)
        return Spell(0, 0.0) if first else None

    def current(self) -> Spell | None:
        """The outage going on now, or None."""
        with self._lock:
            if self._since is None:
                return None
            return Spell(self._failures, time.monotonic() - self._since, self._error)


__all__ = ["Outage", "Spell"]
