"""The record of a ranged reconcile (``s3s3bucket --enqueue --ranges N``) in Redis: which
ranges the run has, which are done (with each range's summary) and which were
dead-lettered, and the options the run was made with.

One hash per run, ``s3s3:{tag}:run:<id>``, and a sorted set of the runs by creation time,
``s3s3:{tag}:runs``, where ``{tag}`` is the stream's hash tag (``{channel}`` by default),
so that on a Redis Cluster the record shares the stream's slot and a range's summary is
written in the same MULTI/EXEC as the XACK of its entry. Fields of the hash:

- ``meta``: JSON, the run's options, its ranges and when it was made;
- ``done:<index>``: JSON, the summary of a range that was reconciled (one field per range,
  so a range done twice, by a listener killed before its ack and then by another, is
  counted once);
- ``dead:<index>``: JSON, why a range was dead-lettered (removed if it is done later, after
  a requeue).

Every write renews the hash's time to live, :data:`RUN_TTL_S` (7 days): a run is
forgotten a week after it was last touched. Range entries go to a stream of their own,
:func:`range_stream` (the work stream's name + ``:ranges``), so that a listener takes a
range only when it has room to start it, and keys announced meanwhile are not held up
behind ranges.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

from s3s3.config import RedisConfig
from s3s3.model import RangeWork
from s3s3.queue.messages import range_entry_fields
from s3s3.queue.producer import add_entries

#: How long a run's record is kept after its last write.
RUN_TTL_S = 7 * 24 * 3600

_TAG = re.compile(r"\{([^{}]+)\}")


def hash_tag(cfg: RedisConfig) -> str:
    """The stream's hash tag (``{backup}``), or ``{channel}`` when the stream has none."""
    match = _TAG.search(cfg.stream)
    return "{" + (match.group(1) if match else cfg.channel) + "}"


def range_stream(cfg: RedisConfig) -> str:
    """The stream that carries range entries, beside the stream of keys (same slot)."""
    return cfg.stream + ":ranges"


def range_config(cfg: RedisConfig) -> RedisConfig:
    """``cfg`` with the range stream as its stream (the dead letters are shared).

    The range stream stays one stream whatever ``shards`` says (the producer routes only
    a sharded configuration): a run has a few ranges, not a stream's worth, and ranges have
    no per-key order to keep."""
    return dataclasses.replace(cfg, stream=range_stream(cfg), shards=1)


def run_key(cfg: RedisConfig, run_id: str) -> str:
    return f"s3s3:{hash_tag(cfg)}:run:{run_id}"


def runs_key(cfg: RedisConfig) -> str:
    return f"s3s3:{hash_tag(cfg)}:runs"


def new_run_id(now: float | None = None) -> str:
    """A run id that sorts by time: ``20261203T125000Z-<8 hex digits>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{os.urandom(4).hex()}"


@dataclass(frozen=True)
class RunRecord:
    """A run as its record tells it."""

    run_id: str
    meta: dict[str, Any]
    done: dict[int, dict[str, Any]]  # range index -> its summary
    dead: dict[int, dict[str, Any]]  # range index -> reason and error

    @property
    def count(self) -> int:
        return len(self.meta.get("ranges", ()))

    @property
    def open(self) -> list[int]:
        """Ranges neither done nor dead: waiting, or being reconciled now."""
        return [i for i in range(self.count) if i not in self.done and i not in self.dead]

    @property
    def finished(self) -> bool:
        return not self.open

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "meta": self.meta,
            "ranges": self.count,
            "done": {str(i): s for i, s in sorted(self.done.items())},
            "dead": {str(i): d for i, d in sorted(self.dead.items())},
            "open": self.open,
        }


def create_run(
    client: redis.Redis,
    cfg: RedisConfig,
    works: Sequence[RangeWork],
    *,
    meta: Mapping[str, Any],
) -> None:
    """Write the record of a run whose ranges are ``works`` (one run id, indexes 0..n-1);
    ``meta`` adds what the run was made with (source, destinations, options)."""
    if not works:
        raise ValueError("a run needs at least one range")
    run_id = works[0].run_id
    record = {
        **meta,
        "created": time.time(),
        "ranges": [[w.start_after, w.end] for w in works],
    }
    key = run_key(cfg, run_id)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, "meta", json.dumps(record))
    pipe.expire(key, RUN_TTL_S)
    pipe.zadd(runs_key(cfg), {run_id: record["created"]})
    pipe.zremrangebyscore(runs_key(cfg), "-inf", record["created"] - RUN_TTL_S)
    pipe.expire(runs_key(cfg), RUN_TTL_S)
    pipe.execute()


def enqueue_ranges(client: redis.Redis, cfg: RedisConfig, works: Iterable[RangeWork]) -> int:
    """XADD one entry per range to the range stream (back-pressure as for keys)."""
    return add_entries(client, range_config(cfg), (range_entry_fields(w) for w in works))


def record_done(
    pipe: Pipeline, cfg: RedisConfig, run_id: str, index: int, summary: Mapping[str, Any]
) -> None:
    """Queue, on ``pipe``, the summary of one range that was reconciled."""
    key = run_key(cfg, run_id)
    pipe.hset(key, f"done:{index}", json.dumps(dict(summary)))
    pipe.hdel(key, f"dead:{index}")
    pipe.expire(key, RUN_TTL_S)


def record_dead(
    pipe: Pipeline, cfg: RedisConfig, run_id: str, index: int, *, reason: str, error: str
) -> None:
    """Queue, on ``pipe``, that one range was dead-lettered (unless it was done already)."""
    key = run_key(cfg, run_id)
    pipe.hsetnx(key, f"dead:{index}", json.dumps({"reason": reason, "error": error[:2000]}))
    pipe.expire(key, RUN_TTL_S)


def read_run(client: redis.Redis, cfg: RedisConfig, run_id: str) -> RunRecord | None:
    """The run's record, or None when there is none (never made, or expired)."""
    fields: Any = client.hgetall(run_key(cfg, run_id))
    if not fields:
        return None
    meta: dict[str, Any] = {}
    done: dict[int, dict[str, Any]] = {}
    dead: dict[int, dict[str, Any]] = {}
    for raw_name, raw_value in fields.items():
        name = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else raw_name
        value = json.loads(raw_value)
        if name == "meta":
            meta = value
        elif name.startswith("done:"):
            done[int(name[5:])] = value
        elif name.startswith("dead:"):
            dead[int(name[5:])] = value
    # A range done after it was dead-lettered (requeued) is done.
    for index in done:
        dead.pop(index, None)
    return RunRecord(run_id, meta, done, dead)


def list_runs(client: redis.Redis, cfg: RedisConfig, *, count: int = 20) -> list[str]:
    """The ids of the latest ``count`` runs whose records are still kept, newest first."""
    ids: Any = client.zrevrange(runs_key(cfg), 0, max(0, count - 1))
    out = []
    for raw in ids:
        run_id = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if client.exists(run_key(cfg, run_id)):
            out.append(run_id)
    return out


__all__ = [
    "RUN_TTL_S",
    "RunRecord",
    "create_run",
    "enqueue_ranges",
    "hash_tag",
    "list_runs",
    "new_run_id",
    "range_config",
    "range_stream",
    "read_run",
    "record_dead",
    "record_done",
    "run_key",
    "runs_key",
]
