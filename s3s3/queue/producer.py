"""Announcing work: XADD entries to the stream with back-pressure, or PUBLISH keys.

The one way in for every producer (``s3s3publish``, the bucket job's ``--enqueue``, the MinIO
list mover, the bridge, the dead-letter requeue). It writes to Redis and never reads work
back, and it copies no object.
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

    Each entry is a mapping of fields: ``key`` and ``op`` (``copy`` or ``delete``) for a key,
    or ``message`` for a raw message. One round trip per batch: the batch's XADDs and an
    XLEN. Back-pressure keeps the stream at most ``cfg.maxlen`` long: when it is full this
    waits for listeners to trim acknowledged entries, and raises :class:`BacklogFull` after
    ``wait_s`` seconds without room. Redis errors (``redis.RedisError``) propagate.
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be greater than zero")
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
