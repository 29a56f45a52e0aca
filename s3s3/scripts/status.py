"""``s3s3listen status``: the stream's state for people (text) or machines (``--json``).

The text reads like ``radosgw-admin sync status``: the stream and its length, the group with
what it has not delivered yet and what is pending (and how old the oldest is), each consumer
with its pending entries and idle time, and the dead letters. The numbers come from
:func:`s3s3.queue.stream.status.read_status`; this module only formats them.
"""

from __future__ import annotations

import argparse
import json

import redis

from s3s3.queue.redis_client import connect
from s3s3.queue.stream.status import (
    ShardedStatus,
    StreamStatus,
    orphaned_streams,
    read_sharded_status,
)
from s3s3.scripts import _cli


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def format_status(status: StreamStatus) -> str:
    """Several lines, indented as the group belongs to the stream and consumers to it."""
    dead = f"dead letters: {status.dead_letters} in {status.dead_letter_stream}"
    if not status.exists:
        return f"stream {status.stream}: does not exist yet (no entry was ever added)\n{dead}"
    lines = [f"stream {status.stream}: {status.length} entries"]
    if not status.group_exists:
        lines.append(f"  group {status.group}: does not exist yet (no listener has read it)")
    else:
        undelivered = "unknown" if status.undelivered is None else str(status.undelivered)
        lines += [
            f"  group {status.group}: last delivered {status.last_delivered_id}",
            f"    undelivered: {undelivered} (oldest {_age(status.oldest_undelivered_age_s)})",
            f"    pending:     {status.pending} (oldest {_age(status.oldest_pending_age_s)})",
            f"    consumers:   {len(status.consumers)}",
        ]
        lines += [
            f"      {c.name}: {c.pending} pending, idle {_age(c.idle_s)}" for c in status.consumers
        ]
    lines.append(dead)
    return "\n".join(lines)


def format_sharded(status: ShardedStatus, orphans: dict[str, int]) -> str:
    """One stream's text, or with sharded streams each stream's and then the total; and a
    warning for each stream no listener reads that still holds work."""
    if status.sharded:
        parts = [f"shard {i}: {format_status(s)}" for i, s in enumerate(status.shards)]
        parts += [f"unsharded (drained): {format_status(s)}" for s in status.retired]
        parts.append(f"total: {format_status(status.total)}")
        text = "\n".join(parts)
    else:
        text = format_status(status.total)
    for name, left in orphans.items():
        text += (
            f"\nWARNING: {name} holds {left} unfinished entries that no listener with this "
            "configuration reads (a larger 'shards' setting wrote them): raise 'shards' "
            "again until they are done (see the README, sharded streams)"
        )
    return text


def status_command(args: argparse.Namespace) -> int:
    """Print the status; 2 when Redis cannot be asked (the config's errors escape to
    :func:`~s3s3.scripts._cli.run`, which also answers 2)."""
    settings = _cli.load_settings(args)
    cfg = settings.redis
    if cfg.mode != "stream":
        _cli.log.warning(
            "[pubsub] mode is %s: no listener reads the stream %s with this config",
            cfg.mode,
            cfg.stream,
        )
    client = connect(cfg)
    try:
        status = read_sharded_status(client, cfg)
        orphans = orphaned_streams(client, cfg)
    except redis.RedisError as exc:
        _cli.log.error("%s", _cli.redis_error(cfg, exc))
        return _cli.EXIT_FATAL
    finally:
        client.close()
    for name, left in orphans.items():
        _cli.log.warning("%s holds %d unfinished entries that no listener reads", name, left)
    if args.json:
        shown = status.to_dict() if status.sharded else status.total.to_dict()
        if orphans:
            shown["orphaned"] = orphans
        print(json.dumps(shown, indent=2))
    else:
        print(format_sharded(status, orphans))
    return _cli.EXIT_OK


__all__ = ["format_sharded", "format_status", "status_command"]
