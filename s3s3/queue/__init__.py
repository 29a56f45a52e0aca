"""Where the listener's work comes from, and how keys are announced.

- :mod:`.messages` — pure parsing of one message (plain key, S3 event, MinIO access list)
  into work items;
- :mod:`.pubsub` — compatible mode: SUBSCRIBE to the channel (at-most-once);
- :mod:`.stream` — reliable mode: a Redis Stream and a consumer group (at-least-once),
  dead letters, bounded length, :func:`~.stream.add_entries`;
- :mod:`.lists` — moving a MinIO Redis list into the stream;
- :mod:`.bridge` — moving PUBLISHed messages into the stream;
- :mod:`.link` — reconnecting, state-change logging and batched writes, shared by the above.

Sources never copy objects; the replicator never parses messages. A source hands the
replicator work items with an opaque ticket each, and is told when a ticket's work is done
(``complete``) or was left unfinished at shutdown (``hand_back``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis

from s3s3.config import RedisConfig
from s3s3.errors import BacklogFull
from s3s3.model import COPY, DELETE, WorkItem
from s3s3.queue.messages import MessageError, encode_key_message, validate_key
from s3s3.queue.pubsub import publish_messages
from s3s3.queue.stream import add_entries

__all__ = [
    "COPY",
    "DELETE",
    "BacklogFull",
    "MessageError",
    "WorkItem",
    "add_entries",
    "publish_keys",
]


def publish_keys(
    redis_client: redis.Redis,
    cfg: RedisConfig,
    keys: Iterable[str],
    *,
    op: str = COPY,
    mode: str | None = None,
) -> int:
    """Announce ``keys`` in the configured mode; return how many were announced.

    ``pubsub``: PUBLISH each key on ``cfg.channel`` (plain key name, as in 2015; a delete,
    or a key that would read as JSON, goes as a one-record S3 event). A warning is logged
    when no listener was subscribed, since pub/sub keeps nothing. ``stream``: XADD entries
    ``{key, op}`` with :func:`~.stream.add_entries` (back-pressure included). ``mode``
    overrides ``cfg.mode``. An empty or over-long key raises :class:`MessageError`; keys of
    earlier batches have been sent by then. Redis errors (``redis.RedisError``) and
    :class:`BacklogFull` propagate.
    """
    mode = mode or cfg.mode
    if op not in (COPY, DELETE):
        raise MessageError(f"unknown op {op!r} (expected copy or delete)")
    if mode == "stream":
        return add_entries(redis_client, cfg, ({"key": validate_key(k), "op": op} for k in keys))
    if mode != "pubsub":
        raise ValueError(f"mode must be 'pubsub' or 'stream', not {mode!r}")
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
