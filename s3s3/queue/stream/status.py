"""What the stream holds and who works on it, read from Redis in one go: its length, the
entries the group has not been given yet, what is pending and how old the oldest is, each
consumer, and the dead letters.

``s3s3listen status`` prints it (:mod:`s3s3.scripts.status`) and the listener's metrics
read it when scraped. It only reads: a missing stream or group is a state to report
(``exists`` False), not an error; Redis errors are raised as they come, for the caller to
say.

With sharded streams (``[pubsub] shards``) :func:`read_sharded_status` reads every shard's
stream and the unsharded one that listeners drain, and sums them into one total (ages: the
oldest; consumers: the distinct names). :func:`orphaned_streams` finds the streams of shards
that a smaller ``shards`` setting no longer reads.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass

import redis

from s3s3.config import MAX_SHARDS, RedisConfig
from s3s3.queue.shards import retired_configs, shard_configs, shard_stream_names
from s3s3.queue.stream.entries import id_after, parse_id
from s3s3.queue.stream.entries import text as _text


@dataclass(frozen=True)
class ConsumerStatus:
    """One consumer of the group (one ``s3s3listen``, usually)."""

    name: str
    pending: int
    idle_s: float


@dataclass(frozen=True)
class StreamStatus:
    """The stream and its group at one moment."""

    stream: str
    group: str
    dead_letter_stream: str
    exists: bool
    group_exists: bool
    length: int
    #: Entries not given to any consumer yet (Redis 7's group ``lag``); None when Redis
    #: cannot tell (older servers, or after entries were deleted from the middle).
    undelivered: int | None
    pending: int
    oldest_pending_age_s: float | None
    #: Age of the oldest entry no consumer was given yet: a backlog no listener reads.
    oldest_undelivered_age_s: float | None
    last_delivered_id: str | None
    consumers: tuple[ConsumerStatus, ...]
    dead_letters: int

    def to_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)

    @property
    def oldest_unfinished_age_s(self) -> float | None:
        """Age of the oldest entry not acknowledged yet, pending or not delivered."""
        ages = [
            a for a in (self.oldest_pending_age_s, self.oldest_undelivered_age_s) if a is not None
        ]
        return max(ages) if ages else None


def read_status(client: redis.Redis, cfg: RedisConfig, *, now: float | None = None) -> StreamStatus:
    """The status of ``cfg.stream`` and ``cfg.group``; ``now`` (epoch seconds) ages the
    oldest pending entry, whose id carries the time it was added."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.exists(cfg.stream)
    pipe.xlen(cfg.stream)
    pipe.xlen(cfg.dead_letter_stream)
    exists, length, dead = pipe.execute()
    empty = StreamStatus(
        stream=cfg.stream,
        group=cfg.group,
        dead_letter_stream=cfg.dead_letter_stream,
        exists=bool(exists),
        group_exists=False,
        length=int(length),
        undelivered=None,
        pending=0,
        oldest_pending_age_s=None,
        oldest_undelivered_age_s=None,
        last_delivered_id=None,
        consumers=(),
        dead_letters=int(dead),
    )
    if not exists:
        return empty
    # A key of another type made the XLEN above raise WRONGTYPE: a mistake in the config
    # (or another program's key) for the caller to report, not a state of the stream.
    groups = client.xinfo_groups(cfg.stream)
    group = next((g for g in groups if _text(g["name"]) == cfg.group), None)
    if group is None:
        return empty
    summary = client.xpending(cfg.stream, cfg.group)
    oldest = None
    if summary["pending"] and summary["min"] is not None:
        ms, _ = parse_id(summary["min"])
        oldest = max(0.0, now - ms / 1000.0)
    consumers = tuple(
        ConsumerStatus(
            name=_text(c["name"]), pending=int(c["pending"]), idle_s=int(c["idle"]) / 1000.0
        )
        for c in client.xinfo_consumers(cfg.stream, cfg.group)
    )
    lag = group.get("lag")
    waiting = None
    if lag is None or int(lag) > 0:
        first = client.xrange(cfg.stream, min=id_after(group["last-delivered-id"]), count=1)
        if first:
            ms, _ = parse_id(first[0][0])
            waiting = max(0.0, now - ms / 1000.0)
    return StreamStatus(
        stream=cfg.stream,
        group=cfg.group,
        dead_letter_stream=cfg.dead_letter_stream,
        exists=True,
        group_exists=True,
        length=int(length),
        undelivered=int(lag) if lag is not None else None,
        pending=int(summary["pending"]),
        oldest_pending_age_s=oldest,
        oldest_undelivered_age_s=waiting,
        last_delivered_id=_text(group["last-delivered-id"]),
        consumers=consumers,
        dead_letters=int(dead),
    )


@dataclass(frozen=True)
class ShardedStatus:
    """Every stream a listener with this configuration reads, and their total."""

    total: StreamStatus
    #: One per shard, in shard order (one in all when unsharded).
    shards: tuple[StreamStatus, ...]
    #: The unsharded stream that sharded listeners drain (none when unsharded).
    retired: tuple[StreamStatus, ...] = ()

    @property
    def sharded(self) -> bool:
        return len(self.shards) > 1

    def to_dict(self) -> dict:
        """JSON-ready: the total's fields, then each stream's."""
        return {
            **self.total.to_dict(),
            "shards": [s.to_dict() for s in self.shards],
            "retired": [s.to_dict() for s in self.retired],
        }


def read_sharded_status(
    client: redis.Redis, cfg: RedisConfig, *, now: float | None = None
) -> ShardedStatus:
    """The status of every stream of ``cfg`` (see :class:`ShardedStatus`)."""
    now = time.time() if now is None else now
    shards = tuple(read_status(client, c, now=now) for c in shard_configs(cfg))
    if len(shards) == 1:
        return ShardedStatus(total=shards[0], shards=shards)
    retired = tuple(read_status(client, c, now=now) for c in retired_configs(cfg))
    return ShardedStatus(total=_total(cfg, shards + retired), shards=shards, retired=retired)


def _total(cfg: RedisConfig, parts: tuple[StreamStatus, ...]) -> StreamStatus:
    def oldest(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    consumers: dict[str, ConsumerStatus] = {}
    for part in parts:
        for c in part.consumers:
            seen = consumers.get(c.name)
            consumers[c.name] = ConsumerStatus(
                name=c.name,
                pending=c.pending + (seen.pending if seen else 0),
                idle_s=min(c.idle_s, seen.idle_s) if seen else c.idle_s,
            )
    undelivered = [p.undelivered for p in parts if p.group_exists]
    return StreamStatus(
        stream=f"{cfg.shards} shards",
        group=cfg.group,
        dead_letter_stream=f"{len(parts)} dead-letter streams",
        exists=any(p.exists for p in parts),
        group_exists=any(p.group_exists for p in parts),
        length=sum(p.length for p in parts),
        undelivered=None if None in undelivered else sum(u or 0 for u in undelivered),
        pending=sum(p.pending for p in parts),
        oldest_pending_age_s=oldest([p.oldest_pending_age_s for p in parts]),
        oldest_undelivered_age_s=oldest([p.oldest_undelivered_age_s for p in parts]),
        last_delivered_id=None,
        consumers=tuple(consumers.values()),
        dead_letters=sum(p.dead_letters for p in parts),
    )


def orphaned_streams(client: redis.Redis, cfg: RedisConfig) -> dict[str, int]:
    """Streams of shards that ``cfg`` does not read (left by a larger ``shards`` setting,
    or by a sharded one when ``cfg`` is unsharded) that still hold unfinished entries, with
    how many. No listener reads them: see the README on changing ``shards``."""
    first = cfg.shards if cfg.shards > 1 else 0
    names = [shard_stream_names(cfg.channel, i)[0] for i in range(first, MAX_SHARDS)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(name)
    present = [n for n, e in zip(names, pipe.execute(), strict=True) if e]
    out = {}
    for name in present:
        status = read_status(client, dataclasses.replace(cfg, stream=name, shards=1))
        left = status.length
        if status.group_exists and status.undelivered is not None:
            # Acknowledged entries not trimmed yet are no loss: only what is unfinished.
            left = status.undelivered + status.pending
        if left:
            out[name] = left
    return out


__all__ = [
    "ConsumerStatus",
    "ShardedStatus",
    "StreamStatus",
    "orphaned_streams",
    "read_sharded_status",
    "read_status",
]
