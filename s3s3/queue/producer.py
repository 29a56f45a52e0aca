"""Announcing work: XADD entries to the stream with back-pressure, or PUBLISH keys.

The one way in for every producer (``s3s3publish``, the bucket job's ``--enqueue``, the MinIO
list mover, the bridge, the push intakes, the dead-letter requeue). With ``[pubsub] shards``
above 1 each entry goes to its key's shard (:mod:`s3s3.queue.shards`). It writes to Redis and
never reads work back, and it copies no object.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Mapping

import redis

from s3s3.config import RedisConfig
from s3s3.errors import BacklogFull, MessageError
from s3s3.model import COPY, OPS
from s3s3.queue.contract import Mode
from s3s3.queue.messages import encode_key_message, validate_key
from s3s3.queue.pubsub import publish_messages
from s3s3.queue.redis_client import execute_replicated, stream_pipeline
from s3s3.queue.shards import route_entry, shard_configs
from s3s3.retry import Policy

ADD_BATCH = 500

log = logging.getLogger("s3s3.listen")


def add_entries(
    redis_client: redis.Redis,
    cfg: RedisConfig,
    entries: Iterable[Mapping[str, str | bytes]],
    *,
    batch_size: int = ADD_BATCH,
    wait_s: float = 60.0,
) -> int:
    """XADD ``entries`` to ``cfg.stream`` in pipelined batches; return how many were added.

    With ``cfg.shards`` above 1, to the streams of the shards their keys belong to instead,
    ``maxlen`` applying to each shard's stream.

    Each entry is a mapping of fields: ``key`` and ``op`` (``copy`` or ``delete``) for a key,
    or ``message`` for a raw message. One round trip per batch: the batch's XADDs and an
    XLEN. Back-pressure keeps the stream at most ``cfg.maxlen`` long: when it is full this
    waits for listeners to trim acknowledged entries, and raises :class:`BacklogFull` after
    ``wait_s`` seconds without room. Redis errors (``redis.RedisError``) propagate.
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be greater than zero")
    if cfg.shards > 1:
        return _add_sharded(redis_client, cfg, entries, batch_size=batch_size, wait_s=wait_s)
    iterator = iter(entries)
    added = 0
    length = redis_client.xlen(cfg.stream)
    while True:
        try:
            room = wait_for_room(redis_client, cfg, length, wait_s)
        except BacklogFull as exc:
            exc.added = added
            raise
        batch = list(itertools.islice(iterator, min(batch_size, room)))
        if not batch:
            return added
        pipe = stream_pipeline(redis_client, cfg)
        for entry in batch:
            # redis-py's field dict is invariant in its key type; str keys are field names.
            pipe.xadd(cfg.stream, dict(entry))  # type: ignore[arg-type]
        pipe.xlen(cfg.stream)
        length = execute_replicated(redis_client, cfg, pipe, added=added)
        added += len(batch)


def _add_sharded(
    client: redis.Redis,
    cfg: RedisConfig,
    entries: Iterable[Mapping[str, str | bytes]],
    *,
    batch_size: int,
    wait_s: float,
) -> int:
    """:func:`add_entries` over ``cfg.shards`` streams, each entry to its key's shard
    (:func:`~s3s3.queue.shards.route_entry`), each shard with its own back-pressure.

    Entries are written in their order, and only ever a prefix of them: a full shard holds
    up the entries behind it, so that :attr:`BacklogFull.added` still says how many of
    ``entries`` were added, as callers that keep the rest expect.
    """
    configs = shard_configs(cfg)
    lengths: list[int | None] = [None] * len(configs)
    iterator = iter(entries)
    waiting: list[list[tuple[int, Mapping]]] = []  # routed entries not yet written
    added = 0
    while True:
        for entry in itertools.islice(iterator, batch_size - len(waiting)):
            waiting.append(route_entry(entry, cfg.shards))
        if not waiting:
            return added
        unknown = sorted({s for parts in waiting for s, _ in parts if lengths[s] is None})
        if unknown:
            pipe = client.pipeline(transaction=False)
            for s in unknown:
                pipe.xlen(configs[s].stream)
            for s, length in zip(unknown, pipe.execute(), strict=True):
                lengths[s] = int(length)
        room = [cfg.maxlen - (length or 0) for length in lengths]
        take = 0
        for parts in waiting:
            shards = [s for s, _ in parts]
            # A split message may overshoot a shard by its own records, as one entry may.
            if any(room[s] <= 0 for s in shards):
                break
            for s in shards:
                room[s] -= 1
            take += 1
        if take == 0:
            full = next(s for s, _ in waiting[0] if room[s] <= 0)
            try:
                left = wait_for_room(client, configs[full], lengths[full] or 0, wait_s)
            except BacklogFull as exc:
                exc.added = added
                raise
            lengths[full] = cfg.maxlen - left
            continue
        by_shard: dict[int, list[Mapping]] = {}
        for parts in waiting[:take]:
            for s, fields in parts:
                by_shard.setdefault(s, []).append(fields)
        if cfg.wait_replicas:
            # WAIT counts the replicas of the node that wrote: one pipeline per shard's master.
            for s, shard_entries in by_shard.items():
                pipe = stream_pipeline(client, configs[s])
                for fields in shard_entries:
                    pipe.xadd(configs[s].stream, dict(fields))
                pipe.xlen(configs[s].stream)
                lengths[s] = int(execute_replicated(client, configs[s], pipe, added=added))
        else:
            pipe = client.pipeline(transaction=False)
            for s, shard_entries in by_shard.items():
                for fields in shard_entries:
                    pipe.xadd(configs[s].stream, dict(fields))
            for s in by_shard:
                pipe.xlen(configs[s].stream)
            replies = pipe.execute()
            for s, length in zip(by_shard, replies[-len(by_shard) :], strict=True):
                lengths[s] = int(length)
        added += take
        del waiting[:take]


#: How often a full stream is looked at again: from 50 ms up to once a second.
_ROOM_POLL = Policy(attempts=None, base_s=0.05, max_s=1.0)


def wait_for_room(client: redis.Redis, cfg: RedisConfig, length: int, wait_s: float) -> int:
    """Entries that may be added now; waits while the stream is full."""
    if length < cfg.maxlen:
        return cfg.maxlen - length
    deadline = time.monotonic() + wait_s
    log.warning(
        "stream %s holds %d entries (maxlen %d): waiting up to %gs for listeners to catch up",
        cfg.stream,
        length,
        cfg.maxlen,
        wait_s,
    )
    polls = 0
    while True:
        if time.monotonic() >= deadline:
            raise BacklogFull(
                f"stream {cfg.stream} still holds {length} entries, at its maxlen "
                f"of {cfg.maxlen}, after {wait_s:g}s: are the listeners running? "
                "(raise 'maxlen' in [pubsub] if the backlog is expected)"
            )
        polls += 1
        time.sleep(min(_ROOM_POLL.delay_s(polls), max(0.0, deadline - time.monotonic())))
        length = client.xlen(cfg.stream)
        if length < cfg.maxlen:
            return cfg.maxlen - length


def publish_keys(
    redis_client: redis.Redis,
    cfg: RedisConfig,
    keys: Iterable[str],
    *,
    op: str = COPY,
    mode: Mode | str | None = None,
) -> int:
    """Announce ``keys`` in the configured mode; return how many were announced.

    ``pubsub``: PUBLISH each key on ``cfg.channel`` (plain key name, as in 2015; a delete,
    or a key that would read as JSON, goes as a one-record S3 event). A warning is logged
    when no listener was subscribed, since pub/sub keeps nothing. ``stream``: XADD entries
    ``{key, op}`` with :func:`add_entries` (back-pressure included). ``mode``
    overrides ``cfg.mode``. An empty or over-long key raises :class:`MessageError`; keys of
    earlier batches have been sent by then. Redis errors (``redis.RedisError``) and
    :class:`BacklogFull` propagate.
    """
    wanted = mode or cfg.mode
    if op not in OPS:
        raise MessageError(f"unknown op {op!r} (expected copy or delete)")
    try:
        how = Mode(wanted)
    except ValueError:
        raise ValueError(f"mode must be 'pubsub' or 'stream', not {wanted!r}") from None
    if how is Mode.STREAM:
        return add_entries(redis_client, cfg, ({"key": validate_key(k), "op": op} for k in keys))
    published, received = publish_messages(
        redis_client, cfg, (encode_key_message(k, op=op) for k in keys)
    )
    if published and not received:
        logging.getLogger("s3s3.publish").warning(
            "no listener is subscribed to channel %r: the %d keys just published are lost "
            "(pub/sub keeps nothing; the stream mode does)",
            cfg.channel,
            published,
        )
    return published
