"""The dead-letter stream: entries given up on, and the admin that lists, requeues and purges
them (``s3s3listen dead-letters``).

An entry delivered more than ``max_deliveries`` times, failed that many times, or not
understood becomes a dead letter: its own fields plus :data:`DEAD_FIELDS` saying why, where
and when. The consumer writes it (with the XACK of the original, in one MULTI/EXEC); this
module only builds it and administers the stream. No group reads the dead-letter stream, so
it is capped with ``MAXLEN ~ maxlen``: past that, the oldest dead letters are dropped.

With sharded streams (``[pubsub] shards``) each shard has its own dead-letter stream, and
the admin below covers them all, and the unsharded one a sharded listener drains, stream by
stream in shard order; each dead letter is requeued into its own stream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

from s3s3.config import RedisConfig
from s3s3.queue.messages import preview
from s3s3.queue.producer import ADD_BATCH, wait_for_room
from s3s3.queue.shards import stream_configs
from s3s3.queue.stream.entries import ATTEMPTS_FIELD, id_after, text

log = logging.getLogger("s3s3.listen")

#: Fields a dead letter adds to the original entry's fields.
DEAD_FIELDS = ("reason", "error", "original_id", "consumer", "failed_at")


@dataclass(frozen=True)
class DeadLetter:
    """One entry of the dead-letter stream."""

    id: str
    original_id: str
    reason: str
    error: str
    consumer: str
    failed_at: str
    fields: dict[str, str] = field(default_factory=dict)  # the original entry's fields
    #: The dead-letter stream it is in, when there are several (sharded streams).
    stream: str | None = None

    @classmethod
    def from_entry(
        cls, entry_id: object, fields: Mapping, *, stream: str | None = None
    ) -> DeadLetter:
        values = {text(k): text(v) for k, v in fields.items()}
        return cls(
            id=text(entry_id),
            original_id=values.get("original_id", ""),
            reason=values.get("reason", ""),
            error=values.get("error", ""),
            consumer=values.get("consumer", ""),
            failed_at=values.get("failed_at", ""),
            fields={
                k: v for k, v in values.items() if k not in DEAD_FIELDS and k != ATTEMPTS_FIELD
            },
            stream=stream,
        )

    def describe(self) -> str:
        what = (
            f"key={self.fields['key']!r}"
            if "key" in self.fields
            else f"message={preview(self.fields.get('message', ''))}"
        )
        op = self.fields.get("op")
        return (
            f"{self.id} (was {self.original_id}) {what}"
            + (f" op={op}" if op else "")
            + f" reason={self.reason!r} error={self.error!r} at {self.failed_at}"
            + (f" by {self.consumer}" if self.consumer else "")
            + (f" in {self.stream}" if self.stream else "")
        )


def dead_letter_fields(
    fields: Mapping, *, entry_id: object, reason: str, error: str, consumer: str
) -> dict:
    """The dead letter for an entry: its own fields, plus why and where it failed."""
    out = {k: v for k, v in fields.items() if text(k) not in DEAD_FIELDS}
    out.update(
        {
            "reason": reason,
            "error": error[:4000],
            "original_id": text(entry_id),
            "consumer": consumer,
            "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    return out


def dead_letter_counts(client: redis.Redis, cfg: RedisConfig) -> dict[str, int]:
    """How many dead letters each dead-letter stream of ``cfg`` holds, by its name."""
    names = [c.dead_letter_stream for c in stream_configs(cfg)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.xlen(name)
    return {name: int(n) for name, n in zip(names, pipe.execute(), strict=True)}


def list_dead_letters(
    client: redis.Redis, cfg: RedisConfig, *, count: int | None = 100
) -> list[DeadLetter]:
    """The oldest ``count`` dead letters (all of them with ``count=None``); with sharded
    streams, stream by stream, each letter naming its stream."""
    configs = stream_configs(cfg)
    out: list[DeadLetter] = []
    for c in configs:
        left = None if count is None else count - len(out)
        if left is not None and left <= 0:
            break
        shown = c.dead_letter_stream if len(configs) > 1 else None
        out.extend(_list_one(client, c, count=left, stream=shown))
    return out


def _list_one(
    client: redis.Redis, cfg: RedisConfig, *, count: int | None, stream: str | None
) -> list[DeadLetter]:
    out: list[DeadLetter] = []
    start = "-"
    while count is None or len(out) < count:
        want = 500 if count is None else min(500, count - len(out))
        rows = _rows(client.xrange(cfg.dead_letter_stream, min=start, max="+", count=want))
        out.extend(DeadLetter.from_entry(i, f, stream=stream) for i, f in rows)
        if len(rows) < want:
            break
        start = id_after(rows[-1][0])
    return out


def requeue_dead_letters(
    client: redis.Redis,
    cfg: RedisConfig,
    *,
    ids: Sequence[str] | None = None,
    count: int | None = None,
    wait_s: float = 60.0,
) -> int:
    """Put dead letters back into the stream, oldest first; return how many were requeued.

    ``ids`` picks dead letters by their id in the dead-letter stream (unknown ids are
    skipped with a warning); otherwise the oldest ``count`` (all with None) are taken. Each
    is re-added with its original fields and a fresh attempt count, and removed from the
    dead-letter stream in the same MULTI/EXEC. With sharded streams, every dead-letter
    stream is looked at (an id found in several is requeued from each), and a letter goes
    back into the stream of its own shard, which is its key's.
    """
    configs = stream_configs(cfg)
    if len(configs) == 1:
        return _requeue_one(client, cfg, ids=ids, count=count, wait_s=wait_s)
    requeued = 0
    found: set[str] = set()
    for c in configs:
        if ids:
            here = _existing(client, c, ids)
            found.update(here)
            if here:
                requeued += _requeue_one(client, c, ids=here, count=None, wait_s=wait_s)
            continue
        left = None if count is None else count - requeued
        if left is not None and left <= 0:
            break
        requeued += _requeue_one(client, c, ids=None, count=left, wait_s=wait_s)
    for entry_id in ids or ():
        if entry_id not in found:
            log.warning(
                "no dead letter with id %s in any of the %d dead-letter streams",
                entry_id,
                len(configs),
            )
    return requeued


def _existing(client: redis.Redis, cfg: RedisConfig, ids: Sequence[str]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(cfg.dead_letter_stream, min=entry_id, max=entry_id, count=1)
    return [i for i, rows in zip(ids, pipe.execute(), strict=True) if rows]


def _requeue_one(
    client: redis.Redis,
    cfg: RedisConfig,
    *,
    ids: Sequence[str] | None,
    count: int | None,
    wait_s: float,
) -> int:
    requeued = 0
    if ids:
        pipe = client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(cfg.dead_letter_stream, min=entry_id, max=entry_id, count=1)
        rows = []
        for entry_id, found in zip(ids, pipe.execute(), strict=True):
            if found:
                rows.append(found[0])
            else:
                log.warning("no dead letter with id %s in %s", entry_id, cfg.dead_letter_stream)
        batches: Iterable[list] = [rows[i : i + ADD_BATCH] for i in range(0, len(rows), ADD_BATCH)]
    else:
        batches = _dead_letter_batches(client, cfg, count)
    for batch in batches:
        if not batch:
            continue
        wait_for_room(client, cfg, client.xlen(cfg.stream), wait_s)
        pipe = client.pipeline(transaction=True)
        for entry_id, fields in batch:
            original = {
                k: v
                for k, v in fields.items()
                if text(k) not in DEAD_FIELDS and text(k) != ATTEMPTS_FIELD
            }
            pipe.xadd(cfg.stream, original)
            pipe.xdel(cfg.dead_letter_stream, entry_id)
        pipe.execute()
        requeued += len(batch)
    if requeued:
        log.info(
            "requeued %d dead letters from %s into %s", requeued, cfg.dead_letter_stream, cfg.stream
        )
    return requeued


def _dead_letter_batches(
    client: redis.Redis, cfg: RedisConfig, count: int | None
) -> Iterator[list]:
    left = count
    while left is None or left > 0:
        want = ADD_BATCH if left is None else min(ADD_BATCH, left)
        # Requeued letters are deleted, so the oldest remaining one is always first.
        rows = _rows(client.xrange(cfg.dead_letter_stream, min="-", max="+", count=want))
        if not rows:
            return
        yield rows
        if left is not None:
            left -= len(rows)


def purge_dead_letters(
    client: redis.Redis, cfg: RedisConfig, *, ids: Sequence[str] | None = None
) -> int:
    """Delete dead letters (the given ids, or all of them); return how many were deleted.
    With sharded streams, from every dead-letter stream."""
    return sum(_purge_one(client, c, ids=ids) for c in stream_configs(cfg))


def _purge_one(client: redis.Redis, cfg: RedisConfig, *, ids: Sequence[str] | None) -> int:
    if ids:
        return int(client.xdel(cfg.dead_letter_stream, *ids))
    pipe = client.pipeline(transaction=True)
    pipe.xlen(cfg.dead_letter_stream)
    pipe.delete(cfg.dead_letter_stream)
    return int(pipe.execute()[0])


def _rows(reply: Any) -> list[tuple[Any, Any]]:
    """An XRANGE reply as ``[(id, fields), ...]``; redis-py's annotation also admits None,
    which a synchronous client never returns for XRANGE."""
    return reply or []
