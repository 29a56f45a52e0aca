"""The stream consumer: :class:`StreamSource`, this process as one consumer of the group.

It reads entries (its own pending ones first, then new ones), takes over entries that dead
consumers left idle, renews the ones it holds, runs the group's upkeep (:mod:`.upkeep`)
between reads, and hands work items to the replicator (a :class:`~s3s3.queue.contract.Feed`).
Told that an entry's work is finished, it acknowledges the entry, or dead-letters it
(:mod:`.dead_letters`); at shutdown it hands back what is unfinished. How this loses
nothing is told in :mod:`s3s3.queue.stream`.

It parses entries (:mod:`s3s3.queue.messages`) and never copies objects."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.exceptions
from redis.client import Pipeline

from s3s3.config import RedisConfig
from s3s3.errors import MessageError, RedisFatal
from s3s3.model import Outcome
from s3s3.queue.contract import Counters, Feed, Finished, Mode
from s3s3.queue.link import RedisLink, RedisLoop, Writer, queue_marker
from s3s3.queue.messages import Parsed, parse_entry, unparsable
from s3s3.queue.redis_client import FATAL_ERRORS, TRANSIENT_ERRORS, refused
from s3s3.queue.runs import range_stream
from s3s3.queue.stream.dead_letters import dead_letter_fields
from s3s3.queue.stream.entries import ATTEMPTS_FIELD, carried_attempts, id_after, parse_id, text
from s3s3.queue.stream.upkeep import GroupUpkeep, ensure_group

log = logging.getLogger("s3s3.listen")

RENEW_CHUNK = 1000


class _Entry:
    """One stream entry held by this process, until all its work items are finished."""

    __slots__ = ("id", "fields", "remaining", "prior_attempts", "error", "reason", "owner")

    def __init__(
        self,
        entry_id: bytes,
        fields: dict,
        remaining: int,
        prior_attempts: int,
        owner: StreamSource | None = None,
    ):
        # The source that read it: with sharded streams, the one its XACK goes through.
        self.owner = owner
        self.id = entry_id
        self.fields = fields
        self.remaining = remaining
        self.prior_attempts = prior_attempts
        self.error: str | None = None
        self.reason: str | None = None

    def __repr__(self) -> str:
        return f"<entry {text(self.id)}>"


class StreamSource(RedisLoop):
    """Reliable intake: this process as one consumer of the group.

    ``run`` (in its own thread) reads entries and hands their work items to the replicator;
    ``complete`` (called by worker threads) queues the XACK, or the dead letter, once every
    item of an entry is finished; ``hand_back`` re-adds what shutdown left unfinished.
    """

    mode = Mode.STREAM

    def __init__(
        self,
        client: redis.Redis,
        cfg: RedisConfig,
        *,
        link: RedisLink,
        counters: Counters,
        source_bucket: str | None = None,
        key_encoding: str = "auto",
        batch: int = 256,
        block_ms: int = 500,
        range_target: str | None = None,
    ) -> None:
        super().__init__(client, cfg, link=link)
        self.counters = counters
        # Where a range entry found here goes: the range stream of the channel (a shard's
        # consumer is told it, since its own stream's name is the shard's).
        self.range_target = range_target or range_stream(cfg)
        self.source_bucket = source_bucket
        self.key_encoding = key_encoding
        self.batch = batch
        self.writer = Writer(client, link, ack=self._ack_pipe)
        self._lock = threading.Lock()
        self._held: dict[bytes, _Entry] = {}
        self._replicator: Feed | None = None
        self._read_own_pending = True
        self._reclaim_ms = max(1, int(cfg.reclaim_idle_s * 1000))
        self._claim_every_s = min(30.0, max(0.2, cfg.reclaim_idle_s / 2))
        self._renew_every_s = min(60.0, max(0.05, cfg.reclaim_idle_s / 3))
        # Renewals run between reads, so a read must not block longer than half the period.
        self.block_ms = max(20, min(block_ms, int(self._renew_every_s * 500)))
        now = time.monotonic()
        self._next_claim = now
        self._next_renew = now + self._renew_every_s
        self._upkeep = GroupUpkeep(client, cfg)

    def describe(self) -> str:
        return (
            f"stream {self.cfg.stream} (group {self.cfg.group!r}, consumer "
            f"{self.cfg.consumer!r}, dead letters {self.cfg.dead_letter_stream})"
        )

    def start(self) -> None:
        self.writer.start()

    # ------------------------------------------------------------------ intake

    def run(self, replicator: Feed, stop: threading.Event) -> None:
        """Read until ``stop`` is set, reconnecting forever; fatal errors set ``self.fatal``."""
        self._replicator = replicator
        while not stop.is_set():
            try:
                ensure_group(self.client, self.cfg)
                if self._read_own_pending:
                    self._claim_own_pending()
                    self._read_own_pending = False
                    log.info(
                        "listening on stream %s as consumer %r of group %r",
                        self.cfg.stream,
                        self.cfg.consumer,
                        self.cfg.group,
                    )
                self.link.up()
                self._read_loop(replicator, stop)
            except FATAL_ERRORS as exc:
                self._fail(refused(self.cfg.safe_url, exc), stop)
            except TRANSIENT_ERRORS as exc:
                self.link.down(exc, stop)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning(
                        "stream %s or its group %r vanished (Redis restarted without "
                        "persistence, or someone deleted it); recreating it",
                        self.cfg.stream,
                        self.cfg.group,
                    )
                    continue
                self._fail(
                    RedisFatal(f"Redis rejected a command on {self.cfg.stream}: {exc}"), stop
                )

    def _read_loop(self, replicator: Feed, stop: threading.Event) -> None:
        while not stop.is_set():
            self._maintain(replicator)
            room = replicator.room()
            if room <= 0:
                replicator.wait_for_room(0.5)
                continue
            response: Any = self.client.xreadgroup(  # RESP2: [[stream, [(id, fields)...]]]
                self.cfg.group,
                self.cfg.consumer,
                {self.cfg.stream: ">"},
                count=min(room, self.batch),
                block=self.block_ms,
            )
            for _stream, entries in response or ():
                self._accept(entries, {})

    def _claim_own_pending(self) -> None:
        """Re-read what this consumer name was given before and never acknowledged."""
        last = "0"
        total = 0
        while True:
            response: Any = self.client.xreadgroup(
                self.cfg.group, self.cfg.consumer, {self.cfg.stream: last}, count=self.batch
            )
            entries = response[0][1] if response else []
            if not entries:
                break
            total += len(entries)
            self._accept(entries, self._delivery_counts([e[0] for e in entries]))
            last = text(entries[-1][0])
        if total:
            log.info(
                "resuming %d entries this consumer (%s) held when it stopped",
                total,
                self.cfg.consumer,
            )

    def _accept(self, entries: Sequence[tuple[bytes, dict]], counts: Mapping[bytes, int]) -> None:
        replicator = self._replicator
        for entry_id, fields in entries:
            with self._lock:
                if entry_id in self._held:
                    continue
            if not fields:
                log.warning(
                    "entry %s was trimmed from %s before it was processed",
                    text(entry_id),
                    self.cfg.stream,
                )
                self.writer.ack(entry_id)
                continue
            delivered = counts.get(entry_id, 1)
            prior = carried_attempts(fields) + delivered - 1
            if delivered > self.cfg.max_deliveries:
                self._dead_letter(
                    entry_id,
                    fields,
                    reason=f"delivered {delivered} times (max_deliveries = "
                    f"{self.cfg.max_deliveries})",
                    error="handed out repeatedly without being acknowledged; "
                    "did a listener crash while working on it?",
                )
                continue
            try:
                parsed: Parsed = parse_entry(
                    fields, source_bucket=self.source_bucket, key_encoding=self.key_encoding
                )
            except MessageError as exc:
                self.counters.add(bad_messages=1)
                log.warning("bad message in entry %s: %s", text(entry_id), exc)
                self._dead_letter(entry_id, fields, reason="bad message", error=str(exc))
                continue
            except Exception as exc:  # a parser bug: this entry is bad, the intake goes on
                self.counters.add(bad_messages=1)
                error = unparsable(exc, fields.get(b"message", fields.get(b"key", repr(fields))))
                log.warning(
                    "bad message in entry %s: %s",
                    text(entry_id),
                    error,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                self._dead_letter(entry_id, fields, reason="bad message", error=error)
                continue
            if parsed.ranges:
                self._accept_ranges(entry_id, fields, parsed, prior)
                continue
            for skipped in parsed.skipped:
                self.counters.add(ignored_events=1)
                log.info(
                    "skipped %s record for key %r in entry %s: %s",
                    parsed.format,
                    skipped.key,
                    text(entry_id),
                    skipped.reason,
                )
            if not parsed.items:
                self.writer.ack(entry_id)
                continue
            entry = _Entry(entry_id, fields, len(parsed.items), prior, owner=self)
            with self._lock:
                self._held[entry_id] = entry
            assert replicator is not None, "run() gives the replicator before any read"
            added_s = parse_id(entry_id)[0] / 1000.0
            for item in parsed.items:
                if item.event_time is None:
                    # No event said when: the lag counts from when the entry was added.
                    item = dataclasses.replace(item, event_time=added_s)
                replicator.submit(item, entry, prior_attempts=prior)

    def _accept_ranges(self, entry_id: bytes, fields: dict, parsed: Parsed, prior: int) -> None:
        """A range entry on the stream of keys (a dead letter requeued there): moved to the
        range stream, where listeners take ranges (:mod:`s3s3.queue.stream.ranges`)."""
        target = self.range_target
        moved = {k: v for k, v in fields.items() if text(k) != ATTEMPTS_FIELD}
        moved[ATTEMPTS_FIELD] = str(prior)
        cfg = self.cfg
        if target != range_stream(cfg):
            # A shard's stream has another hash tag: no MULTI/EXEC spans both on a cluster.
            # Added first, acknowledged after: a crash between leaves a duplicate range
            # entry, which the run record counts once.
            self.client.xadd(target, moved)
            self.writer.ack(entry_id)
        else:

            def write(pipe: Pipeline) -> None:
                pipe.xadd(target, moved)
                pipe.xack(cfg.stream, cfg.group, entry_id)

            self.writer.add(write, transaction=True)
        log.info("moved range entry %s to %s", text(entry_id), target)

    def _delivery_counts(self, ids: Sequence[bytes]) -> dict[bytes, int]:
        if not ids:
            return {}
        parsed = sorted(parse_id(i) for i in ids)
        with self._lock:
            extra = len(self._held)
        rows: Any = self.client.xpending_range(
            self.cfg.stream,
            self.cfg.group,
            min=f"{parsed[0][0]}-{parsed[0][1]}",
            max=f"{parsed[-1][0]}-{parsed[-1][1]}",
            count=len(ids) + extra + 16,
            consumername=self.cfg.consumer,
        )
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    # ------------------------------------------------------------------ upkeep

    def _maintain(self, replicator: Feed) -> None:
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self._claim_every_s
            self._reclaim(replicator)
        if now >= self._next_renew:
            self._next_renew = now + self._renew_every_s
            self._renew()
        self._upkeep.run_due(now)

    def _reclaim(self, replicator: Feed) -> None:
        """Take over entries other consumers (dead ones, presumably) left idle too long.

        XPENDING ... IDLE lists candidates and XCLAIM takes them with the same idle test,
        atomically, so an entry its owner touched meanwhile stays with its owner. (XAUTOCLAIM
        would also take this consumer's own held entries, inflating their delivery counts.)
        """
        me = self.cfg.consumer.encode("utf-8")
        start = "-"
        claimed_total = 0
        for _ in range(10):  # bounded work per round; the next round continues
            room = replicator.room()
            if room <= 0:
                break
            rows: Any = self.client.xpending_range(
                self.cfg.stream,
                self.cfg.group,
                min=start,
                max="+",
                count=100,
                idle=self._reclaim_ms,
            )
            if not rows:
                break
            theirs = [row for row in rows if row["consumer"] != me][:room]
            if theirs:
                counts = {row["message_id"]: int(row["times_delivered"]) + 1 for row in theirs}
                claimed: Any = self.client.xclaim(
                    self.cfg.stream,
                    self.cfg.group,
                    self.cfg.consumer,
                    self._reclaim_ms,
                    list(counts),
                )
                with self._lock:
                    fresh = [e for e in claimed if e[0] is not None and e[0] not in self._held]
                lost = len(theirs) - len(claimed)
                if lost > 0:
                    log.warning(
                        "%d pending entries of %s had been trimmed, or were taken by "
                        "another consumer first",
                        lost,
                        self.cfg.stream,
                    )
                if fresh:
                    claimed_total += len(fresh)
                    self._accept(fresh, counts)
            if len(rows) < 100:
                break
            start = id_after(rows[-1]["message_id"])
        if claimed_total:
            log.info(
                "reclaimed %d entries idle for over %gs from other consumers",
                claimed_total,
                self.cfg.reclaim_idle_s,
            )

    def _renew(self) -> None:
        """Reset the idle time of held entries so that no other consumer reclaims them."""
        with self._lock:
            ids: list[Any] = list(self._held)
        for i in range(0, len(ids), RENEW_CHUNK):
            self.client.xclaim(
                self.cfg.stream,
                self.cfg.group,
                self.cfg.consumer,
                0,
                ids[i : i + RENEW_CHUNK],
                justid=True,
            )

    # ------------------------------------------------------------------ outcomes

    def _ack_pipe(self, pipe: Pipeline, ids: list) -> None:
        pipe.xack(self.cfg.stream, self.cfg.group, *ids)

    def complete(self, tickets: Sequence[_Entry], result: Finished, *, marker: bool = True) -> None:
        """Called by a worker when a job is finished: acknowledge entries that are done.

        ``marker`` False leaves the marker key to another source that was told of the same
        job (sharded streams: one job's tickets may come from several streams)."""
        failed = result.outcome == Outcome.FAILED
        finished = []
        with self._lock:
            for entry in tickets:
                entry.remaining -= 1
                if failed and entry.error is None:
                    entry.error = result.error or "failed"
                    entry.reason = result.reason or "failed"
                if entry.remaining <= 0 and self._held.pop(entry.id, None) is not None:
                    finished.append(entry)
        for entry in finished:
            if entry.error is not None:
                self._dead_letter(
                    entry.id, entry.fields, reason=entry.reason or "failed", error=entry.error
                )
            else:
                self.writer.ack(entry.id)
        if marker and self.cfg.marker_keys:
            queue_marker(self.writer, self.cfg, result)

    def _dead_letter(self, entry_id: bytes, fields: Mapping, *, reason: str, error: str) -> None:
        letter = dead_letter_fields(
            fields, entry_id=entry_id, reason=reason, error=error, consumer=self.cfg.consumer
        )
        cfg = self.cfg

        def write(pipe: Pipeline) -> None:
            pipe.xadd(cfg.dead_letter_stream, letter, maxlen=cfg.maxlen, approximate=True)
            pipe.xack(cfg.stream, cfg.group, entry_id)

        self.writer.add(write, transaction=True)
        self.counters.add(dead_lettered=1)
        log.error("dead-lettered entry %s (%s): %s", text(entry_id), reason, error)

    def hand_back(self, tickets: Sequence[_Entry]) -> int:
        """Re-add unfinished entries to the stream for any consumer, and acknowledge them."""
        entries = []
        with self._lock:
            for entry in tickets:
                if self._held.pop(entry.id, None) is not None:
                    entries.append(entry)
        cfg = self.cfg
        for entry in entries:
            fields = {k: v for k, v in entry.fields.items() if text(k) != ATTEMPTS_FIELD}
            fields[ATTEMPTS_FIELD] = str(entry.prior_attempts)
            entry_id = entry.id

            def write(pipe: Pipeline, fields: dict = fields, entry_id: bytes = entry_id) -> None:
                pipe.xadd(cfg.stream, fields)
                pipe.xack(cfg.stream, cfg.group, entry_id)

            self.writer.add(write, transaction=True)
        if entries:
            self.counters.add(handed_back=len(entries))
            log.warning(
                "handed back %d unfinished entries to %s for other listeners",
                len(entries),
                cfg.stream,
            )
        return len(entries)

    def close(self, timeout_s: float) -> None:
        left = self.writer.close(timeout_s)
        if left:
            log.warning(
                "%d acknowledgements could not be written to Redis; those entries stay "
                "pending and will be replicated again",
                left,
            )
