"""The dead-letter stream: entries given up on, and the admin that lists, requeues and purges
them (``s3s3listen dead-letters``).

An entry delivered more than ``max_deliveries`` times, failed that many times, or not
understood becomes a dead letter: its own fields plus :data:`DEAD_FIELDS` saying why, where
and when. The consumer writes it (with the XACK of the original, in one MULTI/EXEC); this
module only builds it and administers the stream. No group reads the dead-letter stream, so
it is capped with ``MAXLEN ~ maxlen``: past that, the oldest dead letters are dropped.
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

    @classmethod
    def from_entry(cls, entry_id: object, fields: Mapping) -> DeadLetter:
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


def list_dead_letters(
    client: redis.Redis, cfg: RedisConfig, *, count: int | None = 100
) -> list[DeadLetter]:
    """The oldest ``count`` dead letters (all of them with ``count=None``)."""
    out: list[DeadLetter] = []
    start = "-"
    while count is None or len(out) < count:
        want = 500 if count is None else min(500, count - len(out))
        rows = _rows(client.xrange(cfg.dead_letter_stream, min=start, max="+", count=want))
        out.extend(DeadLetter.from_entry(i, f) for i, f in rows)
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
    dead-letter stream in the same MULTI/EXEC.
    """
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
    """Delete dead letters (the given ids, or all of them); return how many were deleted."""
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
