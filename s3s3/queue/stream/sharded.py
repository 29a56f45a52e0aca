"""Consuming sharded streams: one :class:`~.consumer.StreamSource` per stream, behind the one
interface the intake knows.

With ``[pubsub] shards = N`` a listener is a consumer of the group on every shard's stream,
and on the unsharded stream it drains (:func:`s3s3.queue.shards.stream_configs`). Each
stream has its own source: its own reads, pending entries, reclaims, renewals, upkeep and
acknowledgement writer, each reading in a thread of its own. On a Redis Cluster the streams
are on different slots, and XREADGROUP over several streams is a multi-key command that a
cluster refuses across slots, hence one reader per stream rather than one read of all.

:class:`ShardedSource` hands every source the one replicator (which is thread-safe), and
sends each finished entry's acknowledgement back through the source that read it. Each
reader reads at most its batch when the replicator has room, so together they may hold up to
one batch per stream beyond the replicator's bound: still bounded. They share one
:class:`~s3s3.queue.link.RedisLink`, so an outage of one cluster node is reported as Redis
down until that reader reconnects. Nothing here reads Redis itself or copies objects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from s3s3.config import RedisConfig
from s3s3.queue.contract import Feed, Finished, Mode
from s3s3.queue.link import RedisLink
from s3s3.queue.runs import range_stream
from s3s3.queue.shards import stream_configs
from s3s3.queue.stream.consumer import StreamSource

__all__ = ["ShardedSource", "open_stream_source"]


class _Writers:
    """The acknowledgement writers of every source, as the intake sets their crash handler."""

    def __init__(self, sources: Sequence[StreamSource]) -> None:
        self._sources = sources
        self._on_crash: Callable[[str, BaseException], None] | None = None

    @property
    def on_crash(self) -> Callable[[str, BaseException], None] | None:
        return self._on_crash

    @on_crash.setter
    def on_crash(self, handler: Callable[[str, BaseException], None] | None) -> None:
        self._on_crash = handler
        for source in self._sources:
            source.writer.on_crash = handler


class ShardedSource:
    """Every stream of a sharded layout, read by one :class:`StreamSource` each."""

    mode = Mode.STREAM

    def __init__(self, sources: Sequence[StreamSource]) -> None:
        if not sources:
            raise ValueError("ShardedSource needs at least one source")
        self.sources = tuple(sources)
        self.link = self.sources[0].link  # one Redis: every source shares the link
        self.writer = _Writers(self.sources)

    @property
    def fatal(self) -> BaseException | None:
        return next((s.fatal for s in self.sources if s.fatal is not None), None)

    def describe(self) -> str:
        first, last = self.sources[0].cfg, self.sources[-1].cfg
        return (
            f"{len(self.sources)} streams {first.stream} ... {last.stream} (group "
            f"{first.group!r}, consumer {first.consumer!r}, each with its dead letters)"
        )

    def start(self) -> None:
        for source in self.sources:
            source.start()

    def run(self, replicator: Feed, stop: threading.Event) -> None:
        """Read every stream until ``stop`` is set: the first in this thread, the others in
        threads of their own. A reader that dies is reported like a thread of the intake."""
        threads = [
            threading.Thread(
                target=self._run_one,
                args=(source, replicator, stop),
                name=f"s3s3-stream-{i}",
                daemon=True,
            )
            for i, source in enumerate(self.sources[1:], start=1)
        ]
        for thread in threads:
            thread.start()
        try:
            self.sources[0].run(replicator, stop)
        finally:
            # The others stop on ``stop`` too (a crash handler sets it); a read blocks at
            # most ``block_ms``.
            for thread in threads:
                thread.join(timeout=10.0)

    def _run_one(self, source: StreamSource, replicator: Feed, stop: threading.Event) -> None:
        try:
            source.run(replicator, stop)
        except BaseException as exc:  # whatever it is, this reader is gone: say so
            handler = self.writer.on_crash
            if handler is None:
                raise
            handler(threading.current_thread().name, exc)

    def complete(self, tickets: Sequence, result: Finished) -> None:
        """Acknowledge through the source each ticket came from; the marker key once."""
        groups = _by_owner(tickets)
        if not groups:
            self.sources[0].complete((), result)
            return
        for i, (owner, group) in enumerate(groups):
            owner.complete(group, result, marker=i == 0)

    def hand_back(self, tickets: Sequence) -> int:
        return sum(owner.hand_back(group) for owner, group in _by_owner(tickets))

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for source in self.sources:
            source.close(max(0.1, deadline - time.monotonic()))


def _by_owner(tickets: Sequence) -> list[tuple[StreamSource, list]]:
    groups: dict[int, tuple[StreamSource, list]] = {}
    for ticket in tickets:
        owner = ticket.owner
        groups.setdefault(id(owner), (owner, []))[1].append(ticket)
    return list(groups.values())


def open_stream_source(
    client: redis.Redis,
    cfg: RedisConfig,
    *,
    link: RedisLink,
    **options: Any,
) -> StreamSource | ShardedSource:
    """The consumer for ``cfg``: one :class:`StreamSource` when unsharded, else a
    :class:`ShardedSource` over every shard and the unsharded stream it drains.
    ``options`` are :class:`StreamSource`'s."""
    configs = stream_configs(cfg)
    if len(configs) == 1:
        return StreamSource(client, cfg, link=link, **options)
    target = range_stream(cfg)
    return ShardedSource(
        [StreamSource(client, c, link=link, range_target=target, **options) for c in configs]
    )
