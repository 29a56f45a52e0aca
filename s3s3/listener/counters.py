"""The listener's totals: one thread-safe :class:`Counters` object per listener, passed in to
whoever counts (the replicator, the intakes), so embedders and tests read their own and
several listeners in one process stay apart. Never a module global."""

from __future__ import annotations

import threading


class Counters:
    """Thread-safe totals for one listener."""

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
        "stale",
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
