"""The Swift middleware's side of Redis: whether Redis takes announcements
(:class:`RedisHealth`, an outage logged and counted once), and the bounded queue in memory
with the one writer that drains it while the proxy goes on serving (:class:`Backlog`).

Swift's proxy runs under eventlet: the writer is a green thread that waits on a condition or
an event, never in ``time.sleep``. Like the middleware, this imports redis and the ground
floor, never boto3 or botocore.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
from typing import Any

import redis

from s3s3.config import RedisConfig
from s3s3.errors import BacklogFull
from s3s3.queue.announce import sort_failure
from s3s3.queue.outage import Outage
from s3s3.queue.producer import add_entries
from s3s3.queue.tally import Tally

#: Names the middleware in its entries and its counts.
VIA = "swift"
#: Entries per XADD round trip of the writer.
WRITE_BATCH = 100
#: The writer's first wait after a failure; it doubles up to ``retry_max``.
RETRY_BASE_S = 0.1


class RedisHealth:
    """Whether Redis takes announcements, as the writer and the requests find it: logs the
    first failure of an outage and the recovery, once each, and counts outages."""

    def __init__(self, cfg: RedisConfig, *, log: Any, tally: Tally, consequence: str) -> None:
        self.cfg = cfg
        self.log = log
        self.tally = tally
        self.consequence = consequence
        self._outage = Outage()

    def describe(self, exc: BaseException) -> str:
        return str(sort_failure(self.cfg, exc, detail=True))

    def down(self, exc: BaseException) -> None:
        if self._outage.failed() == 1:
            self.tally.add("outages", intake=VIA)
            self.log.warning(
                "s3s3: Redis at %s cannot take announcements (%s); %s",
                self.cfg.safe_url,
                self.describe(exc),
                self.consequence,
            )

    def up(self) -> None:
        ended = self._outage.recovered()
        if ended is not None and ended.failures:
            self.log.warning(
                "s3s3: Redis at %s takes announcements again, after %.1fs and %d failed tries",
                self.cfg.safe_url,
                ended.lasted_s,
                ended.failures,
            )


#: What a write to Redis may raise that is Redis being away or full, not a bug here.
UNAVAILABLE = (redis.RedisError, OSError, BacklogFull)


class Backlog:
    """Announcements waiting for Redis: a bounded queue in memory and the one writer that
    drains it, in order, in batches.

    An entry leaves the queue only once it is in the stream, so at most ``size`` wait,
    whatever the writer is doing. :meth:`offer` never blocks: on a full queue it drops the
    announcement, counts it and logs the first of a run of drops. The writer starts with
    the first offer (in the process serving requests: Swift may load the pipeline before
    forking its workers) and retries with a capped, doubling wait while Redis is away.
    """

    def __init__(
        self,
        client: redis.Redis,
        cfg: RedisConfig,
        *,
        size: int,
        health: RedisHealth,
        tally: Tally,
        log: Any,
        retry_max_s: float,
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.size = size
        self.health = health
        self.tally = tally
        self.log = log
        self.retry_max_s = retry_max_s
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._setup()

    def _setup(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._entries: collections.deque[dict[str, str]] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropping = 0  # announcements dropped since the queue last had room

    def offer(self, fields: dict[str, str]) -> bool:
        """Queue one entry for the writer; False (counted, logged) when the queue is full."""
        self._start()
        with self._cond:
            if len(self._entries) >= self.size:
                self._dropping += 1
                first = self._dropping == 1
            else:
                self._entries.append(fields)
                self._cond.notify()
                return True
        self.tally.add("records", outcome="dropped", intake=VIA)
        if first:
            self.log.warning(
                "s3s3: the queue of announcements waiting for Redis is full (%d): dropping "
                "announcements until it has room, the first for key %r in %s; the bucket "
                "job repairs what is dropped",
                self.size,
                fields.get("key"),
                fields.get("bucket"),
            )
        return False

    def pending(self) -> int:
        """Announcements waiting for Redis now."""
        with self._cond:
            return len(self._entries)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the writer (what still waits is lost); for tests and shutdown."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _start(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._start_lock:
            if self._pid == pid:
                return
            if self._pid is not None:
                self._setup()  # a forked child: the parent's writer did not come along
            self._thread = threading.Thread(
                target=self._run, name="s3s3-swift-announcer", daemon=True
            )
            self._thread.start()
            self._pid = pid

    def _next_batch(self) -> list[dict[str, str]]:
        with self._cond:
            while not self._entries and not self._stop.is_set():
                self._cond.wait()
            return list(itertools.islice(self._entries, WRITE_BATCH))

    def _remove(self, count: int) -> None:
        if count <= 0:
            return
        with self._cond:
            for _ in range(min(count, len(self._entries))):
                self._entries.popleft()
            dropped, self._dropping = self._dropping, 0
        self.tally.add("records", count, outcome="queued", intake=VIA)
        if dropped:
            self.log.warning(
                "s3s3: the queue of announcements has room again; %d were dropped while it "
                "was full",
                dropped,
            )

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                add_entries(self.client, self.cfg, batch, wait_s=0.0)
            except BacklogFull as exc:
                self._remove(exc.added)
                failure: BaseException | None = exc
            except UNAVAILABLE as exc:
                failure = exc
            except Exception:
                # A bug, not an outage: these entries would fail the same way forever.
                self.log.exception("s3s3: %d announcements could not be written", len(batch))
                with self._cond:
                    for _ in range(min(len(batch), len(self._entries))):
                        self._entries.popleft()
                self.tally.add("records", len(batch), outcome="dropped", intake=VIA)
                continue
            else:
                self._remove(len(batch))
                failure = None
            if failure is None:
                failures = 0
                self.health.up()
                continue
            failures += 1
            self.health.down(failure)
            window = min(self.retry_max_s, RETRY_BASE_S * 2.0 ** min(failures - 1, 60))
            # Event.wait is green under eventlet; time.sleep would stall the proxy.
            self._stop.wait(window)


__all__ = ["Backlog", "RedisHealth"]
