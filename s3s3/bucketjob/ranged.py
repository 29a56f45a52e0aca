"""A reconcile bigger than one host: ``s3s3bucket --enqueue --ranges N``.

The bucket job splits the source's key space under the prefix into ``N`` ranges
(:func:`s3s3.listing.split_ranges`), writes a run record and one entry per range
(:mod:`s3s3.queue.runs`), and every ``s3s3listen`` of the fleet reconciles the ranges it
takes with :class:`RangeReconcile`: the bucket job's own run (:func:`.runner.sync_buckets`)
restricted to one range, copying through the same sink, transfer and retry policy.
:func:`wait_for_run` and :func:`summary_of_run` turn the record back into one summary.

A ranged run never deletes: ``max_delete_fraction`` is a safeguard over the whole bucket,
which no range sees; run ``s3s3bucket --delete`` on one host for that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from s3s3 import retry
from s3s3.bucketjob.lock import job_lock
from s3s3.bucketjob.options import make_options
from s3s3.bucketjob.runner import sync_buckets
from s3s3.bucketjob.summary import DestinationSummary, Failure, JobSummary
from s3s3.config import Settings
from s3s3.errors import ConfigError, EndpointError, FatalEndpointError, S3S3Error
from s3s3.keyspace import KeyRange
from s3s3.model import RangeWork
from s3s3.store.endpoint import Endpoint, make_endpoints

if TYPE_CHECKING:
    import redis

    from s3s3.queue.runs import RunRecord

log = logging.getLogger(__name__)

#: ``--ranges`` given without a number.
DEFAULT_RANGES = 16
#: Failures kept per destination in a range's summary (the counts are always whole).
KEPT_FAILURES = 20

#: What splits a source's key space: ``split_ranges(store, prefix, count, concurrency=)``.
Splitter = Callable[..., list[KeyRange]]


# --------------------------------------------------------------------------- enqueue


def enqueue_ranged_run(
    settings: Settings,
    *,
    ranges: int,
    delete: bool | None = None,
    size_only: bool | None = None,
    prefix: str | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    verify_md5: bool = False,
    list_concurrency: int | None = None,
    stop: threading.Event | None = None,
    redis_client: redis.Redis | None = None,
    split: Splitter | None = None,
) -> RunRecord:
    """Check the endpoints, split the key space into ``ranges`` ranges, record the run and
    add its range entries to the range stream, holding the job lock meanwhile; return the
    run's record as written. Raises :class:`ConfigError` for a ranged ``--delete``,
    :class:`FatalEndpointError` when an endpoint cannot be used at all."""
    from s3s3.queue.runs import create_run, enqueue_ranges, new_run_id, read_run

    if ranges < 1:
        raise ValueError(f"ranges must be at least 1, got {ranges}")
    options = make_options(
        settings.bucket,
        delete=delete,
        size_only=size_only,
        prefix=prefix,
        include=include,
        exclude=exclude,
        verify_md5=verify_md5,
        list_concurrency=list_concurrency,
    )
    cfg = options.bucket
    if cfg.delete:
        raise ConfigError(
            "--ranges cannot delete: max_delete_fraction guards the whole bucket, which no "
            "range sees; pass --no-delete (delete = true in [bucket]), or run --delete "
            "without --ranges"
        )
    if split is None:
        from s3s3.listing import split_ranges

        split = split_ranges
    clients: list[redis.Redis] = [redis_client] if redis_client is not None else []

    def redis_factory() -> redis.Redis:
        if not clients:
            from s3s3.queue.redis_client import connect

            clients.append(connect(settings.redis, socket_timeout=10))
        return clients[0]

    src, *dsts = make_endpoints(
        [settings.source, *settings.destinations], bwlimit=cfg.bwlimit, workers=cfg.workers
    )
    with job_lock(
        settings.source,
        cfg,
        redis_factory,
        lost=stop,
        redis_url=settings.redis.safe_url,
    ):
        check_endpoints(src, dsts)
        key_ranges = split(src, cfg.prefix, ranges, concurrency=min(ranges, cfg.list_concurrency))
        run_id = new_run_id()
        works = [
            RangeWork(
                run_id=run_id,
                index=i,
                start_after=r.start_after,
                end=r.end,
                prefix=cfg.prefix,
                include=tuple(cfg.include),
                exclude=tuple(cfg.exclude),
                size_only=cfg.size_only,
                verify_md5=options.verify_md5,
                destinations=tuple(d.name for d in dsts),
            )
            for i, r in enumerate(key_ranges)
        ]
        client = redis_factory()
        from redis import RedisError

        try:
            create_run(
                client,
                settings.redis,
                works,
                meta={
                    "source": src.name,
                    "bucket": src.bucket,
                    "destinations": [[d.name, d.bucket] for d in dsts],
                    "prefix": cfg.prefix,
                    "include": list(cfg.include),
                    "exclude": list(cfg.exclude),
                    "size_only": cfg.size_only,
                    "verify_md5": options.verify_md5,
                    "delete": False,
                },
            )
            enqueue_ranges(client, settings.redis, works)
            record = read_run(client, settings.redis, run_id)
        except RedisError as exc:
            raise S3S3Error(
                f"cannot record the run in Redis at {settings.redis.safe_url}: {exc}"
            ) from exc
    assert record is not None, "just written"
    log.info(
        "run %s: %d ranges of s3://%s/%s added for the listeners",
        run_id,
        len(works),
        src.bucket,
        cfg.prefix,
    )
    return record


def check_endpoints(src: Endpoint, dsts: Sequence[Endpoint]) -> None:
    """As a run starts: bad credentials or a missing bucket stop it; a destination that does
    not answer is only warned of (the listeners hold its work until it does)."""
    for ep in (src, *dsts):
        try:
            retry.call(
                ep.check_bucket,
                policy=retry.Policy.for_endpoint(ep.cfg),
                what=f"check bucket of [{ep.name}]",
            )
        except FatalEndpointError:
            raise
        except EndpointError as exc:
            if ep is src:
                raise
            log.warning("[%s] does not answer: %s", ep.name, exc)


# --------------------------------------------------------------------------- a listener's part


class RangeReconcile:
    """The reconcile of one range as a listener runs it (``s3s3listen`` injects it into the
    daemon): :func:`sync_buckets` over the range, with the run's options and this host's
    endpoints, the ``[bucket]`` settings for workers, grace and retries. The endpoints are
    made once, on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._endpoints: list[Endpoint] | None = None
        self._lock = threading.Lock()

    def endpoints(self) -> list[Endpoint]:
        with self._lock:
            if self._endpoints is None:
                cfg = self.settings.bucket
                self._endpoints = make_endpoints(
                    [self.settings.source, *self.settings.destinations],
                    bwlimit=cfg.bwlimit,
                    workers=cfg.workers,
                )
            return self._endpoints

    def __call__(self, work: RangeWork, *, stop: threading.Event) -> dict[str, Any]:
        src, *dsts = self.endpoints()
        if work.destinations:
            have = {d.name: d for d in dsts}
            missing = [name for name in work.destinations if name not in have]
            if missing:
                raise ConfigError(
                    f"{work.key} names destinations this listener does not have: "
                    f"{', '.join(missing)} (its INI's sections: {', '.join(have) or 'none'})"
                )
            dsts = [have[name] for name in work.destinations]
        options = make_options(
            self.settings.bucket,
            delete=False,
            size_only=work.size_only,
            prefix=work.prefix,
            include=work.include,
            exclude=work.exclude,
            verify_md5=work.verify_md5,
        )
        summary = sync_buckets(
            src,
            dsts,
            options,
            stop=stop,
            key_range=KeyRange(work.start_after, work.end),
        )
        return summary_as_json(summary)


# --------------------------------------------------------------------------- one summary


def summary_as_json(summary: JobSummary) -> dict[str, Any]:
    """A range's summary as its run record keeps it."""
    return {
        "stopped": summary.stopped,
        "duration_s": round(summary.duration_s, 3),
        "destinations": [
            {
                "name": d.name,
                "bucket": d.bucket,
                "listed": d.listed,
                "copied": d.copied,
                "skipped": d.skipped,
                "failed": d.failed,
                "extra": d.extra,
                "bytes_copied": d.bytes_copied,
                "error": d.error,
                "failures": [
                    {"key": f.key, "op": f.op, "cause": f.cause} for f in d.failures[:KEPT_FAILURES]
                ],
            }
            for d in summary.destinations
        ],
    }


def summary_of_run(record: RunRecord) -> JobSummary:
    """One summary of the whole run, summed over its ranges done: as a normal run's, with a
    destination's ``error`` saying how many ranges were dead-lettered, and ``stopped`` when
    some ranges are still open."""
    meta = record.meta
    dests: dict[str, DestinationSummary] = {
        name: DestinationSummary(name=name, bucket=bucket)
        for name, bucket in meta.get("destinations", ())
    }
    duration = 0.0
    for index in sorted(record.done):
        part: Mapping[str, Any] = record.done[index]
        duration = max(duration, float(part.get("duration_s", 0.0)))
        for d in part.get("destinations", ()):
            dest = dests.setdefault(
                d["name"], DestinationSummary(name=d["name"], bucket=d["bucket"])
            )
            for name in ("listed", "copied", "skipped", "failed", "extra", "bytes_copied"):
                setattr(dest, name, getattr(dest, name) + int(d.get(name, 0)))
            dest.failures.extend(Failure(f["key"], f["op"], f["cause"]) for f in d["failures"])
            if d.get("error"):
                dest.error = f"range {index}: {d['error']}"
    for dest in dests.values():
        dest.duration_s = duration  # the longest range: they ran side by side
    if record.dead:
        for dest in dests.values():
            dest.error = (
                f"{len(record.dead)} of {record.count} ranges dead-lettered "
                f"(ranges {', '.join(str(i) for i in sorted(record.dead))}): "
                "see s3s3listen dead-letters list"
            )
    return JobSummary(
        source=meta.get("source", "source"),
        bucket=meta.get("bucket", ""),
        destinations=list(dests.values()),
        duration_s=duration,
        stopped=bool(record.open),
    )


def wait_for_run(
    client: redis.Redis,
    settings: Settings,
    run_id: str,
    *,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
    poll_s: float = 1.0,
    on_progress: Callable[[RunRecord], None] | None = None,
) -> RunRecord:
    """The run's record once every range is done or dead, or when ``timeout_s`` passes (or
    ``stop`` is set) first; ``on_progress`` hears of each change."""
    from s3s3.queue.runs import read_run

    stop = stop or threading.Event()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    seen: tuple[int, int] | None = None
    while True:
        record = read_run(client, settings.redis, run_id)
        if record is None:
            raise S3S3Error(f"no run {run_id!r} in Redis (expired, or never made)")
        now_seen = (len(record.done), len(record.dead))
        if on_progress is not None and now_seen != seen:
            on_progress(record)
        seen = now_seen
        if record.finished:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            return record
        wait = poll_s if deadline is None else min(poll_s, max(0.0, deadline - time.monotonic()))
        if stop.wait(wait):
            return record


__all__ = [
    "DEFAULT_RANGES",
    "check_endpoints",
    "enqueue_ranged_run",
    "RangeReconcile",
    "summary_as_json",
    "summary_of_run",
    "wait_for_run",
]
