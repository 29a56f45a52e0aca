"""Counts kept by the push intakes (HTTP, AMQP, the Swift middleware): named totals with
labels, thread-safe, one object per intake process and passed in, never a module global.

The names and labels are those the metrics endpoint exposes (``requests`` by ``status``,
``records`` by ``outcome``), so that a registry can read them without a table of its own.
"""

from __future__ import annotations

import threading

Labels = tuple[tuple[str, str], ...]


class Tally:
    """Thread-safe totals, each a name and a set of labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, Labels], int] = {}

    def add(self, name: str, amount: int = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def get(self, name: str, **labels: str) -> int:
        """The total for ``name`` with exactly ``labels``; with none, the sum over them all."""
        with self._lock:
            if labels:
                return self._values.get((name, tuple(sorted(labels.items()))), 0)
            return sum(v for (n, _), v in self._values.items() if n == name)

    def snapshot(self) -> dict[tuple[str, Labels], int]:
        with self._lock:
            return dict(self._values)


__all__ = ["Labels", "Tally"]
