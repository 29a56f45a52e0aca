"""Holding back repeated log lines: a line repeated under the same key within an interval is
counted, not logged again, and the next one logged says how many like it were held back.

A sender retrying in a tight loop (an RGW persistent topic pushes about 500 times a second
to an endpoint that refuses) would flood the log otherwise; the HTTP intake logs its
refusals through this. Thread-safe; it keeps at most about a thousand keys.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class LogThrottle:
    """Logs to ``logger`` a line keyed by ``key`` at most once per ``interval_s``."""

    def __init__(self, interval_s: float, logger: logging.Logger) -> None:
        self.interval_s = interval_s
        self.logger = logger
        self.lock = threading.Lock()
        self.seen: dict[tuple[Any, ...], tuple[float, int]] = {}

    def check(self, key: tuple[Any, ...]) -> tuple[bool, int]:
        """Whether a line keyed by ``key`` should be logged now, and how many like it were
        held back since the last one (counting this one when it is held back too)."""
        now = time.monotonic()
        with self.lock:
            last, held = self.seen.get(key, (None, 0))
            if last is not None and now - last < self.interval_s:
                self.seen[key] = (last, held + 1)
                return False, held + 1
            if len(self.seen) > 1000:  # many clients or reasons: forget, do not grow
                self.seen.clear()
            self.seen[key] = (now, 0)
            return True, held

    def log(
        self,
        key: tuple[Any, ...],
        fmt: str,
        *args: Any,
        exc_info: bool = False,
        level: int = logging.WARNING,
    ) -> None:
        """Log ``fmt % args`` unless a line keyed by ``key`` was logged within the
        interval; after held-back ones, say how many."""
        now, held = self.check(key)
        if not now:
            return
        if held:
            fmt += " (%d more like it since the last such line)"
            args = (*args, held)
        self.logger.log(level, fmt, *args, exc_info=exc_info)


__all__ = ["LogThrottle"]
