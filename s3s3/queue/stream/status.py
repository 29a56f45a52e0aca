"""What the stream holds and who works on it, read from Redis in one go: its length, the
entries the group has not been given yet, what is pending and how old the oldest is, each
consumer, and the dead letters.

``s3s3listen status`` prints it (:mod:`s3s3.scripts.status`) and the listener's metrics
read it when scraped. It only reads: a missing stream or group is a state to report
(``exists`` False), not an error; Redis errors are raised as they come, for the caller to
say.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import redis

from s3s3.config import RedisConfig
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


__all__ = ["ConsumerStatus", "StreamStatus", "read_status"]
