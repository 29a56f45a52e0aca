"""Reliable mode: a Redis Stream read through a consumer group, at least once.

Entries carry either ``key`` (+ ``op``: ``copy`` or ``delete``), written by
:func:`add_entries`, or ``message``, a raw message (S3 event, MinIO access list, plain key)
written by the PUBLISH bridge or the MinIO list mover. An entry is acknowledged (XACK) only
after the work it asked for is verified at every destination.

How nothing is lost:

- each ``s3s3listen`` is one consumer of the group; XREADGROUP hands every entry to exactly
  one of them, and it stays in that consumer's pending list until acknowledged;
- on start a consumer first re-reads its own pending entries (id ``0``), then new ones (``>``);
- entries a dead consumer left idle longer than ``reclaim_idle`` are taken over (XPENDING
  with IDLE, then XCLAIM, which re-checks the idle time atomically);
  a live consumer renews the entries it holds (XCLAIM ... JUSTID), so a slow copy or a
  destination that is down for hours is not mistaken for a dead consumer;
- an entry delivered more than ``max_deliveries`` times, or failed that many times, goes to
  the dead-letter stream with the reason and the error, then is acknowledged;
  :func:`requeue_dead_letters` puts dead letters back;
- on shutdown, entries that could not be finished within the grace period are handed back:
  re-added to the stream (with their attempt count) and acknowledged in one MULTI/EXEC.

How the stream stays bounded without dropping unacknowledged entries: XADD never trims
(no ``MAXLEN``). Instead listeners periodically trim (``XTRIM MINID ~``) below the oldest
entry some group still needs — its oldest pending entry, or the first one it has not been
given yet — so the stream holds little more than the backlog. Publishers
(:func:`add_entries`) apply back-pressure: while the stream holds ``maxlen`` entries or more
they wait, and raise :class:`BacklogFull` if no room appears within ``wait_s``. The
dead-letter stream, which no group reads, is capped with ``MAXLEN ~ maxlen``: past that, the
oldest dead letters are dropped.

Every key shares the ``{channel}`` hash tag, so a Redis Cluster keeps them in one slot and
the MULTI/EXEC batches are legal there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import redis
import redis.exceptions

from s3s3.config import RedisConfig
from s3s3.errors import MessageError, RedisFatal
from s3s3.queue.link import RedisLink, RedisLoop, Writer, queue_marker, refused
from s3s3.queue.messages import Parsed, parse_entry, preview, unparsable
from s3s3.queue.producer import ADD_BATCH, wait_for_room
from s3s3.queue.redis_client import FATAL_ERRORS, TRANSIENT_ERRORS

log = logging.getLogger("s3s3.listen")

#: Fields a dead letter adds to the original entry's fields.
DEAD_FIELDS = ("reason", "error", "original_id", "consumer", "failed_at")
#: Attempts already spent on an entry that was handed back or requeued with its history.
ATTEMPTS_FIELD = "attempts"

RENEW_CHUNK = 1000
TRIM_INTERVAL_S = 5.0
CONSUMER_CLEANUP_INTERVAL_S = 3600.0
#: Consumers with nothing pending and silent this long are removed from the group.
CONSUMER_MAX_IDLE_S = 24 * 3600.0


# --------------------------------------------------------------------------- names


def processing_key(list_key: str) -> str:
    """The list that holds MinIO entries between BLMOVE and XADD, in the list's hash slot."""
    if "{" in list_key and "}" in list_key.split("{", 1)[1]:
        return f"{list_key}:s3s3-processing"
    return "{" + list_key + "}:s3s3-processing"


def daemon_keys(cfg: RedisConfig) -> tuple[str, ...]:
    """Every Redis key the listener writes in stream mode (marker keys aside)."""
    keys = [cfg.stream, cfg.dead_letter_stream]
    if cfg.list_key:
        keys.append(processing_key(cfg.list_key))
    return tuple(keys)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _prior_attempts(fields: Mapping) -> int:
    """The attempt count an entry carries (hand_back writes it); anything odd counts as 0."""
    value = fields.get(ATTEMPTS_FIELD.encode(), b"0")
    text = _text(value).strip()
    # A short decimal only: int() of a 200,000-digit field would be slow on Python 3.10.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else 0


def parse_id(entry_id) -> tuple[int, int]:
    ms, _, seq = _text(entry_id).partition("-")
    return int(ms), int(seq or 0)


# --------------------------------------------------------------------------- publishing


def ensure_group(client: redis.Redis, cfg: RedisConfig) -> bool:
    """Create the consumer group (and the stream) if missing; True when it was created.

    The group starts at id 0, so entries published before the first listener ever ran are
    replicated too.
    """
    try:
        client.xgroup_create(cfg.stream, cfg.group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    log.info("created consumer group %r on stream %s", cfg.group, cfg.stream)
    return True


def safe_trim_id(groups: Iterable[tuple[object, int, object | None]]) -> str | None:
    """The lowest id any group still needs, or None when nothing may be trimmed.

    ``groups`` holds, per group, ``(last_delivered_id, pending_count, oldest_pending_id)``.
    A group needs its oldest pending entry, or, with nothing pending, every entry after the
    last one it was given. Entries below the returned id were given to every group and
    acknowledged by it.
    """
    needed = []
    for last_delivered, pending, oldest_pending in groups:
        if pending and oldest_pending is not None:
            needed.append(parse_id(oldest_pending))
        else:
            ms, seq = parse_id(last_delivered)
            needed.append((ms, seq + 1))
    if not needed:
        return None
    ms, seq = min(needed)
    if (ms, seq) <= (0, 1):
        return None
    return f"{ms}-{seq}"


def trim_acknowledged(client: redis.Redis, cfg: RedisConfig) -> int:
    """Trim entries every group has acknowledged (XTRIM MINID ~); returns entries removed."""
    try:
        groups = client.xinfo_groups(cfg.stream)
    except redis.exceptions.ResponseError:
        return 0  # no stream yet
    rows = []
    for group in groups:
        oldest = None
        if group["pending"]:
            oldest = client.xpending(cfg.stream, group["name"])["min"]
        rows.append((group["last-delivered-id"], group["pending"], oldest))
    threshold = safe_trim_id(rows)
    if threshold is None:
        return 0
    return client.xtrim(cfg.stream, minid=threshold, approximate=True)


_CLEANUP_CONSUMERS = """
local removed = 0
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] ~= ARGV[3] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
"""


def remove_idle_consumers(
    client: redis.Redis, cfg: RedisConfig, *, min_idle_s: float = CONSUMER_MAX_IDLE_S
) -> int:
    """Forget consumers (other than ours) that hold nothing and were silent ``min_idle_s``.

    Each restart of a listener with the default consumer name (host-pid) leaves one behind.
    The check and the removal run in one script: XGROUP DELCONSUMER would otherwise destroy
    the pending entries of a consumer that woke up in between.
    """
    return int(
        client.eval(
            _CLEANUP_CONSUMERS, 1, cfg.stream, cfg.group, int(min_idle_s * 1000), cfg.consumer
        )
    )


# --------------------------------------------------------------------------- dead letters


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
    def from_entry(cls, entry_id, fields: Mapping) -> DeadLetter:
        text = {_text(k): _text(v) for k, v in fields.items()}
        return cls(
            id=_text(entry_id),
            original_id=text.get("original_id", ""),
            reason=text.get("reason", ""),
            error=text.get("error", ""),
            consumer=text.get("consumer", ""),
            failed_at=text.get("failed_at", ""),
            fields={k: v for k, v in text.items() if k not in DEAD_FIELDS and k != ATTEMPTS_FIELD},
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
    fields: Mapping, *, entry_id, reason: str, error: str, consumer: str
) -> dict:
    """The dead letter for an entry: its own fields, plus why and where it failed."""
    out = {k: v for k, v in fields.items() if _text(k) not in DEAD_FIELDS}
    out.update(
        {
            "reason": reason,
            "error": error[:4000],
            "original_id": _text(entry_id),
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
        rows = client.xrange(cfg.dead_letter_stream, min=start, max="+", count=want)
        out.extend(DeadLetter.from_entry(i, f) for i, f in rows)
        if len(rows) < want:
            break
        ms, seq = parse_id(rows[-1][0])
        start = f"{ms}-{seq + 1}"
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
                if _text(k) not in DEAD_FIELDS and _text(k) != ATTEMPTS_FIELD
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


def _dead_letter_batches(client: redis.Redis, cfg: RedisConfig, count: int | None):
    left = count
    while left is None or left > 0:
        want = ADD_BATCH if left is None else min(ADD_BATCH, left)
        # Requeued letters are deleted, so the oldest remaining one is always first.
        rows = client.xrange(cfg.dead_letter_stream, min="-", max="+", count=want)
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


# --------------------------------------------------------------------------- the source


class _Entry:
    """One stream entry held by this process, until all its work items are finished."""

    __slots__ = ("id", "fields", "remaining", "prior_attempts", "error", "reason")

    def __init__(self, entry_id: bytes, fields: dict, remaining: int, prior_attempts: int):
        self.id = entry_id
        self.fields = fields
        self.remaining = remaining
        self.prior_attempts = prior_attempts
        self.error: str | None = None
        self.reason: str | None = None

    def __repr__(self) -> str:
        return f"<entry {_text(self.id)}>"


class StreamSource(RedisLoop):
    """Reliable intake: this process as one consumer of the group.

    ``run`` (in its own thread) reads entries and hands their work items to the replicator;
    ``complete`` (called by worker threads) queues the XACK, or the dead letter, once every
    item of an entry is finished; ``hand_back`` re-adds what shutdown left unfinished.
    """

    mode = "stream"

    def __init__(
        self,
        client: redis.Redis,
        cfg: RedisConfig,
        *,
        link: RedisLink,
        counters,
        source_bucket: str | None = None,
        key_encoding: str = "auto",
        batch: int = 256,
        block_ms: int = 500,
    ) -> None:
        super().__init__(client, cfg, link=link)
        self.counters = counters
        self.source_bucket = source_bucket
        self.key_encoding = key_encoding
        self.batch = batch
        self.writer = Writer(client, link, ack=self._ack_pipe)
        self._lock = threading.Lock()
        self._held: dict[bytes, _Entry] = {}
        self._replicator = None
        self._read_own_pending = True
        self._reclaim_ms = max(1, int(cfg.reclaim_idle_s * 1000))
        self._claim_every_s = min(30.0, max(0.2, cfg.reclaim_idle_s / 2))
        self._renew_every_s = min(60.0, max(0.05, cfg.reclaim_idle_s / 3))
        # Renewals run between reads, so a read must not block longer than half the period.
        self.block_ms = max(20, min(block_ms, int(self._renew_every_s * 500)))
        now = time.monotonic()
        self._next_claim = now
        self._next_renew = now + self._renew_every_s
        self._next_trim = now + TRIM_INTERVAL_S
        self._next_cleanup = now

    def describe(self) -> str:
        return (
            f"stream {self.cfg.stream} (group {self.cfg.group!r}, consumer "
            f"{self.cfg.consumer!r}, dead letters {self.cfg.dead_letter_stream})"
        )

    def start(self) -> None:
        self.writer.start()

    # ------------------------------------------------------------------ intake

    def run(self, replicator, stop: threading.Event) -> None:
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

    def _read_loop(self, replicator, stop: threading.Event) -> None:
        while not stop.is_set():
            self._maintain(replicator)
            room = replicator.room()
            if room <= 0:
                replicator.wait_for_room(0.5)
                continue
            response = self.client.xreadgroup(
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
            response = self.client.xreadgroup(
                self.cfg.group, self.cfg.consumer, {self.cfg.stream: last}, count=self.batch
            )
            entries = response[0][1] if response else []
            if not entries:
                break
            total += len(entries)
            self._accept(entries, self._delivery_counts([e[0] for e in entries]))
            last = _text(entries[-1][0])
        if total:
            log.info(
                "resuming %d entries this consumer (%s) held when it stopped",
                total,
                self.cfg.consumer,
            )

    def _accept(self, entries, counts: Mapping[bytes, int]) -> None:
        replicator = self._replicator
        for entry_id, fields in entries:
            with self._lock:
                if entry_id in self._held:
                    continue
            if not fields:
                log.warning(
                    "entry %s was trimmed from %s before it was processed",
                    _text(entry_id),
                    self.cfg.stream,
                )
                self.writer.ack(entry_id)
                continue
            delivered = counts.get(entry_id, 1)
            prior = _prior_attempts(fields) + delivered - 1
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
                log.warning("bad message in entry %s: %s", _text(entry_id), exc)
                self._dead_letter(entry_id, fields, reason="bad message", error=str(exc))
                continue
            except Exception as exc:  # a parser bug: this entry is bad, the intake goes on
                self.counters.add(bad_messages=1)
                error = unparsable(exc, fields.get(b"message", fields.get(b"key", repr(fields))))
                log.warning(
                    "bad message in entry %s: %s",
                    _text(entry_id),
                    error,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                self._dead_letter(entry_id, fields, reason="bad message", error=error)
                continue
            for skipped in parsed.skipped:
                self.counters.add(ignored_events=1)
                log.info(
                    "skipped %s record for key %r in entry %s: %s",
                    parsed.format,
                    skipped.key,
                    _text(entry_id),
                    skipped.reason,
                )
            if not parsed.items:
                self.writer.ack(entry_id)
                continue
            entry = _Entry(entry_id, fields, len(parsed.items), prior)
            with self._lock:
                self._held[entry_id] = entry
            for item in parsed.items:
                replicator.submit(item, entry, prior_attempts=prior)

    def _delivery_counts(self, ids: Sequence[bytes]) -> dict[bytes, int]:
        if not ids:
            return {}
        parsed = sorted(parse_id(i) for i in ids)
        with self._lock:
            extra = len(self._held)
        rows = self.client.xpending_range(
            self.cfg.stream,
            self.cfg.group,
            min=f"{parsed[0][0]}-{parsed[0][1]}",
            max=f"{parsed[-1][0]}-{parsed[-1][1]}",
            count=len(ids) + extra + 16,
            consumername=self.cfg.consumer,
        )
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    # ------------------------------------------------------------------ upkeep

    def _maintain(self, replicator) -> None:
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self._claim_every_s
            self._reclaim(replicator)
        if now >= self._next_renew:
            self._next_renew = now + self._renew_every_s
            self._renew()
        if now >= self._next_trim:
            self._next_trim = now + TRIM_INTERVAL_S
            removed = trim_acknowledged(self.client, self.cfg)
            if removed:
                log.debug("trimmed %d acknowledged entries from %s", removed, self.cfg.stream)
        if now >= self._next_cleanup:
            self._next_cleanup = now + CONSUMER_CLEANUP_INTERVAL_S
            try:
                removed = remove_idle_consumers(
                    self.client,
                    self.cfg,
                    min_idle_s=max(CONSUMER_MAX_IDLE_S, 10 * self.cfg.reclaim_idle_s),
                )
            except redis.exceptions.ResponseError as exc:
                # Housekeeping only: a managed Redis that forbids EVAL must not stop the daemon.
                log.warning(
                    "cannot remove idle consumers from group %r (%s); skipping that housekeeping",
                    self.cfg.group,
                    exc,
                )
                self._next_cleanup = float("inf")
                removed = 0
            if removed:
                log.info(
                    "removed %d idle consumers with nothing pending from group %r",
                    removed,
                    self.cfg.group,
                )

    def _reclaim(self, replicator) -> None:
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
            rows = self.client.xpending_range(
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
                claimed = self.client.xclaim(
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
            ms, seq = parse_id(rows[-1]["message_id"])
            start = f"{ms}-{seq + 1}"
        if claimed_total:
            log.info(
                "reclaimed %d entries idle for over %gs from other consumers",
                claimed_total,
                self.cfg.reclaim_idle_s,
            )

    def _renew(self) -> None:
        """Reset the idle time of held entries so that no other consumer reclaims them."""
        with self._lock:
            ids = list(self._held)
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

    def _ack_pipe(self, pipe, ids: list) -> None:
        pipe.xack(self.cfg.stream, self.cfg.group, *ids)

    def complete(self, tickets: Sequence[_Entry], outcome) -> None:
        """Called by a worker when a job is finished: acknowledge entries that are done."""
        finished = []
        with self._lock:
            for entry in tickets:
                entry.remaining -= 1
                if outcome.outcome == "failed" and entry.error is None:
                    entry.error = outcome.error or "failed"
                    entry.reason = outcome.reason or "failed"
                if entry.remaining <= 0 and self._held.pop(entry.id, None) is not None:
                    finished.append(entry)
        for entry in finished:
            if entry.error is not None:
                self._dead_letter(
                    entry.id, entry.fields, reason=entry.reason or "failed", error=entry.error
                )
            else:
                self.writer.ack(entry.id)
        if self.cfg.marker_keys:
            queue_marker(self.writer, self.cfg, outcome)

    def _dead_letter(self, entry_id, fields, *, reason: str, error: str) -> None:
        letter = dead_letter_fields(
            fields, entry_id=entry_id, reason=reason, error=error, consumer=self.cfg.consumer
        )
        cfg = self.cfg

        def write(pipe) -> None:
            pipe.xadd(cfg.dead_letter_stream, letter, maxlen=cfg.maxlen, approximate=True)
            pipe.xack(cfg.stream, cfg.group, entry_id)

        self.writer.add(write, transaction=True)
        self.counters.add(dead_lettered=1)
        log.error("dead-lettered entry %s (%s): %s", _text(entry_id), reason, error)

    def hand_back(self, tickets: Sequence[_Entry]) -> int:
        """Re-add unfinished entries to the stream for any consumer, and acknowledge them."""
        entries = []
        with self._lock:
            for entry in tickets:
                if self._held.pop(entry.id, None) is not None:
                    entries.append(entry)
        cfg = self.cfg
        for entry in entries:
            fields = {k: v for k, v in entry.fields.items() if _text(k) != ATTEMPTS_FIELD}
            fields[ATTEMPTS_FIELD] = str(entry.prior_attempts)
            entry_id = entry.id

            def write(pipe, fields=fields, entry_id=entry_id) -> None:
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
