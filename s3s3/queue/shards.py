"""Sharded streams (``[pubsub] shards = N``): which stream a key goes to, and what each
shard's streams are called.

With one shard (the default) there is exactly the one stream ``[pubsub] stream`` and its
dead letters, as always. With N > 1 the work is spread over N streams, each with a hash tag
of its own so that a Redis Cluster can place them on different nodes:

    s3s3:{CHANNEL-0}:stream    s3s3:{CHANNEL-0}:dead
    ...
    s3s3:{CHANNEL-N-1}:stream  s3s3:{CHANNEL-N-1}:dead

A shard's entry and its dead letter share the shard's tag, so the XACK and the dead letter
stay in one MULTI/EXEC on one slot. The group has the same name on every shard. The
unsharded stream (``s3s3:{CHANNEL}:stream``) is still read by listeners with N > 1, so what
it held when the setting changed is not lost (:func:`retired_configs`).

A key always goes to the same shard (:func:`shard_of`: CRC-32 of its UTF-8 bytes modulo N,
the same in every process and Python version, unlike ``hash()``), so the events of one key
stay in one stream, in order. Pure functions only: no Redis call here.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from typing import Any

from s3s3.config import RedisConfig
from s3s3.errors import MessageError
from s3s3.model import WorkItem
from s3s3.queue.messages import parse_entry

__all__ = [
    "route_entry",
    "shard_configs",
    "shard_of",
    "shard_stream_names",
    "retired_configs",
    "stream_configs",
]


def shard_of(key: str, shards: int) -> int:
    """The shard (0 to ``shards - 1``) that ``key``'s entries go to."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    if shards == 1:
        return 0
    # surrogatepass: a key decoded with surrogateescape still has one stable byte form.
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards


def shard_stream_names(channel: str, index: int) -> tuple[str, str]:
    """The stream and dead-letter stream of shard ``index``, under their own hash tag."""
    tag = "{" + f"{channel}-{index}" + "}"
    return f"s3s3:{tag}:stream", f"s3s3:{tag}:dead"


def shard_configs(cfg: RedisConfig) -> tuple[RedisConfig, ...]:
    """One configuration per shard, each naming that shard's streams (with ``shards = 1``,
    so whatever takes it works on that one stream); ``(cfg,)`` when unsharded."""
    if cfg.shards <= 1:
        return (cfg,)
    out = []
    for index in range(cfg.shards):
        stream, dead = shard_stream_names(cfg.channel, index)
        out.append(dataclasses.replace(cfg, stream=stream, dead_letter_stream=dead, shards=1))
    return tuple(out)


def retired_configs(cfg: RedisConfig) -> tuple[RedisConfig, ...]:
    """The streams of the unsharded layout, which a sharded listener drains: entries (and
    dead letters) left there when ``shards`` was raised from 1, or written by producers not
    yet given the new setting. Empty when unsharded."""
    if cfg.shards <= 1:
        return ()
    return (dataclasses.replace(cfg, shards=1),)


def stream_configs(cfg: RedisConfig) -> tuple[RedisConfig, ...]:
    """Every stream a listener with ``cfg`` reads: its shards, then the retired ones."""
    return shard_configs(cfg) + retired_configs(cfg)


def route_entry(fields: Mapping[str, Any], shards: int) -> list[tuple[int, Mapping[str, Any]]]:
    """Where the entry ``fields`` goes: ``[(shard, fields), ...]``, in order.

    An entry with a ``key`` goes whole to that key's shard. A raw ``message`` (an S3 event,
    a MinIO access-list entry, a plain key) is parsed as the listener parses it (with
    ``event_keys = auto``): when every key it names falls in one shard it goes there
    unchanged; when its keys fall in several, it is split into one ``key`` entry per record,
    each to its key's shard, in the message's order, so each key's events keep their
    order. A message that names no key (a test event, one that does not parse) goes to
    shard 0 unchanged, where the listener skips or dead-letters it as it would unsharded.
    """
    if shards <= 1:
        return [(0, fields)]
    key = fields.get("key")
    if key is not None:
        text = key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else str(key)
        return [(shard_of(text, shards), fields)]
    try:
        parsed = parse_entry(fields)
    except MessageError:
        return [(0, fields)]
    items = parsed.items
    if not items:
        return [(0, fields)]
    targets = {shard_of(item.key, shards) for item in items}
    if len(targets) == 1:
        return [(targets.pop(), fields)]
    return [(shard_of(item.key, shards), _split_fields(item, fields)) for item in items]


def _split_fields(item: WorkItem, fields: Mapping[str, Any]) -> dict[str, str]:
    """The ``key`` entry one record of a split message becomes: what the listener would
    have read from the record (op, key, bucket, event, sequence, time)."""
    out = {"key": item.key, "op": item.op}
    if item.bucket is not None:
        out["bucket"] = item.bucket
    if item.event is not None:
        out["event"] = item.event
    if item.sequence is not None:
        out["seq"] = str(item.sequence)
    if item.event_time is not None:
        out["time"] = repr(item.event_time)
    if item.version_id is not None:
        out["ver"] = item.version_id
    if item.compare:
        out["via"] = "split"
    return out
