"""Opening the listener's intake over Redis: from ``[pubsub]`` settings to the one object the
daemon reads work from and reports to.

:func:`open_intake` makes the Redis client (unless it is given one), the
:class:`~s3s3.queue.link.RedisLink` that every loop of the process shares, the stream
consumer or the pub/sub subscriber (each with its acknowledgement writer) and, in stream
mode with ``[pubsub] list``, the MinIO list mover; :class:`RedisIntake` runs them behind the
interface the daemon knows (``s3s3.listener.daemon.Intake``: start, run, complete,
hand_back, close, describe, fatal). The listener passes this factory in; it never imports
redis or this room.

Wiring only: reading, parsing and acknowledging belong to the modules wired here. Nothing
here copies objects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import redis

from s3s3.config import Settings
from s3s3.queue.contract import Counters, Feed, Finished, Mode
from s3s3.queue.link import RedisLink, daemon_client
from s3s3.queue.minio_list import ListMover
from s3s3.queue.pubsub import PubSubSource
from s3s3.queue.stream import StreamSource
from s3s3.queue.stream.ranges import RangeSource
from s3s3.queue.stream.sharded import ShardedSource, open_stream_source

log = logging.getLogger("s3s3.listen")

#: How long the intake waits for the list mover to stop, once told to.
MOVER_JOIN_S = 10.0


class RedisIntake:
    """One source of work (the stream consumer or the pub/sub subscriber) and, beside it,
    the MinIO list mover feeding the stream."""

    def __init__(
        self,
        source: StreamSource | ShardedSource | PubSubSource,
        *,
        mover: ListMover | None = None,
        ranges: RangeSource | None = None,
    ) -> None:
        self.source = source
        self.mover = mover
        self.ranges = ranges  # the range stream's consumer (stream mode), run on demand
        self._ranges_started = False
        self._on_crash: Callable[[str, BaseException], None] | None = None
        self._mover_thread: threading.Thread | None = None

    @property
    def fatal(self) -> BaseException | None:
        """The error retrying cannot fix that stopped a loop (Redis refused s3s3), if any."""
        fatal = self.source.fatal or (self.mover.fatal if self.mover is not None else None)
        return fatal or (self.ranges.fatal if self.ranges is not None else None)

    def describe(self) -> str:
        return self.source.describe()

    def redis_state(self) -> tuple[bool, str]:
        """Whether Redis answers now, and why not (see ``RedisLink.state``)."""
        return self.source.link.state()

    def start(self, *, on_crash: Callable[[str, BaseException], None]) -> None:
        """Start the acknowledgement writer; a thread of the intake that dies (the writer,
        the list mover) is reported to ``on_crash(thread_name, exc)``."""
        self._on_crash = on_crash
        self.source.writer.on_crash = on_crash
        self.source.start()

    def run(self, replicator: Feed, stop: threading.Event) -> None:
        """Read work into ``replicator`` until ``stop`` is set (the mover, if any, moves the
        MinIO list into the stream meanwhile, in a thread of its own)."""
        if self.mover is not None:
            self._mover_thread = threading.Thread(
                target=self._move, args=(self.mover, stop), name="s3s3-list-mover", daemon=True
            )
            self._mover_thread.start()
        # An exception leaves at once, without waiting for the mover: the crash handler
        # is what sets ``stop``, which ends the mover too.
        self.source.run(replicator, stop)
        self._join_mover()

    def run_ranges(self, worker: Feed, stop: threading.Event) -> None:
        """Read range entries into ``worker`` (the listener's range worker) until ``stop``
        is set; returns at once in pub/sub mode, which has no ranges."""
        if self.ranges is None:
            return
        if not self._ranges_started:
            self.ranges.writer.on_crash = self._on_crash
            self.ranges.start()
            self._ranges_started = True
        self.ranges.run(worker, stop)

    def complete_range(self, tickets: Sequence, result: Finished) -> None:
        assert self.ranges is not None
        self.ranges.complete(tickets, result)  # type: ignore[arg-type]

    def hand_back_ranges(self, tickets: Sequence) -> int:
        return self.ranges.hand_back(tickets) if self.ranges is not None else 0

    def _move(self, mover: ListMover, stop: threading.Event) -> None:
        try:
            mover.run(stop)
        except BaseException as exc:  # whatever it is, the thread is gone: say so
            if self._on_crash is None:
                raise
            self._on_crash(threading.current_thread().name, exc)

    def _join_mover(self) -> None:
        if self._mover_thread is not None:
            self._mover_thread.join(timeout=MOVER_JOIN_S)

    def complete(self, tickets: Sequence, result: Finished) -> None:
        self.source.complete(tickets, result)

    def hand_back(self, tickets: Sequence) -> int:
        return self.source.hand_back(tickets)

    def close(self, timeout_s: float) -> None:
        """Write what is queued within ``timeout_s`` (after the mover has stopped)."""
        self._join_mover()
        self.source.close(timeout_s)
        if self.ranges is not None and self._ranges_started:
            self.ranges.close(timeout_s)


def open_intake(
    settings: Settings, *, counters: Counters, client: redis.Redis | None = None
) -> RedisIntake:
    """The intake ``settings`` describe, counting into ``counters``; ``client`` replaces
    the Redis client made from ``[pubsub]`` (tests give one). Nothing is read yet."""
    rcfg, lcfg = settings.redis, settings.listen
    client = client if client is not None else daemon_client(rcfg)
    link = RedisLink(rcfg.safe_url, retry_base_s=lcfg.retry_base_s, retry_max_s=lcfg.retry_max_s)
    if rcfg.mode != Mode.STREAM:
        return RedisIntake(
            PubSubSource(
                client,
                rcfg,
                link=link,
                counters=counters,
                source_bucket=settings.source.bucket,
                key_encoding=lcfg.event_key_encoding,
            )
        )
    source = open_stream_source(
        client,
        rcfg,
        link=link,
        counters=counters,
        source_bucket=settings.source.bucket,
        key_encoding=lcfg.event_key_encoding,
        # Small reads share a burst between listeners on several hosts; the replicator's
        # max_held still lets one listener read ahead while its workers are busy.
        batch=max(16, min(256, 2 * lcfg.workers)),
    )
    mover = ListMover(client, rcfg, link=link) if rcfg.list_key else None
    ranges = RangeSource(
        client,
        rcfg,
        link=link,
        counters=counters,
        source_bucket=settings.source.bucket,
        key_encoding=lcfg.event_key_encoding,
        batch=1,  # the range worker's room() bounds each read further
    )
    return RedisIntake(source, mover=mover, ranges=ranges)


__all__ = ["RedisIntake", "open_intake"]
