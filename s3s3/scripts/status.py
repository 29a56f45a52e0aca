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
from s3s3.queue.stream.status import StreamStatus, read_status
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
        status = read_status(client, cfg)
    except redis.RedisError as exc:
        _cli.log.error("%s", _cli.redis_error(cfg, exc))
        return _cli.EXIT_FATAL
    finally:
        client.close()
    print(json.dumps(status.to_dict(), indent=2) if args.json else format_status(status))
    return _cli.EXIT_OK


__all__ = ["format_status", "status_command"]
