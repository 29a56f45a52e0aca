"""Reconcile whole destination buckets with the source: the coordinator of ``s3s3bucket``.

One pass, whatever the bucket's size:

1. every endpoint is checked up front (:meth:`Endpoint.check_bucket`): bad credentials or
   a missing bucket stop the run before any work; a destination that does not answer is
   marked broken and the others go on;
2. the source and every destination are listed at once, a few pages ahead (with
   ``list_concurrency`` > 1, several ranges of each side's key space at once:
   :mod:`s3s3.listing.parallel`), and merged by :func:`plan.plan_keys` into one action per
   key and destination;
3. a key whose listing entries already show it identical costs nothing more: no HEAD, no
   GET. Every other key is handed to the run's sink (:mod:`.sinks`: copied here, added to
   the listener's stream, or reported in a dry run), whose work goes through a bounded
   pool (:mod:`.pool`), so memory stays flat over millions of keys;
4. destination-only keys are deleted, when asked, after the listing is complete, within
   ``max_delete_fraction`` (:mod:`.deletion`).

A failed key is logged with its key and cause, counted, and the run goes on. The run stops
on a :class:`FatalEndpointError` that concerns a whole endpoint (credentials, bucket), on an
out-of-order listing, when the source listing fails, or when ``stop`` is set (SIGTERM, a
lost lock); work in flight is finished first, within ``grace_s`` of the stop: copies still
running then are cancelled, and abort their multipart uploads (as on Ctrl-C).

With ``abort_stale_uploads`` (as :func:`run_bucket_job` runs it), each destination's stale
multipart uploads under the prefix (older than its ``abort_uploads_after``) are aborted
in a pool task beside the listing: :func:`transfer.abort_stale_uploads`.

This module holds the run's phases and who does what; the counting is the destinations'
(:mod:`.destination`), the figures the summary's (:mod:`.summary`). It prints nothing and
never exits: the scripts do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from s3s3 import retry
from s3s3.bucketjob import versioned
from s3s3.bucketjob.deletion import delete_extras
from s3s3.bucketjob.destination import Destination
from s3s3.bucketjob.lock import job_lock
from s3s3.bucketjob.options import JobOptions, make_options
from s3s3.bucketjob.pool import WorkPool
from s3s3.bucketjob.sinks import CopySink, DryRunSink, EnqueueSink, Sink, log_plan
from s3s3.bucketjob.summary import JobSummary, ProgressLog
from s3s3.config import RedisConfig, Settings
from s3s3.errors import EndpointError, FatalEndpointError, ListingOrderError
from s3s3.keyspace import KeyRange
from s3s3.listing import list_objects_ahead, list_objects_parallel
from s3s3.model import ObjectInfo
from s3s3.plan import Action, KeyFilter, KeyPlan, plan_keys
from s3s3.store.endpoint import Endpoint, make_endpoints
from s3s3.transfer import abort_stale_uploads

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)


class ProgressReporter(Protocol):
    """What reports on a running job (:class:`ProgressLog`, or the scripts' terminal line)."""

    def start(self, summary: JobSummary, started: float) -> None: ...

    def stop(self) -> None: ...


# --------------------------------------------------------------------------- entry points


def run_bucket_job(
    settings: Settings,
    *,
    dry_run: bool = False,
    enqueue: bool = False,
    delete: bool | None = None,
    size_only: bool | None = None,
    prefix: str | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    workers: int | None = None,
    list_concurrency: int | None = None,
    progress: ProgressReporter | None = None,
    verify_md5: bool = False,
    stop: threading.Event | None = None,
    on_plan: Callable[[str], None] | None = None,
    redis_client: redis.Redis | None = None,
    versions: bool | None = None,
) -> JobSummary:
    """Reconcile every destination of ``settings`` with its source, holding the job lock.

    Arguments left as None keep the ``[bucket]`` settings (``versions``: ``[source]``'s;
    True replays every version, :mod:`.versioned`). ``progress`` defaults to log
    lines every ``progress_interval``; ``on_plan`` (the dry-run plan, line by line) to the
    log. A dry run takes no lock: it changes nothing. Raises :class:`LockHeld` when
    another run holds the lock.
    """
    options = make_options(
        settings.bucket,
        dry_run=dry_run,
        enqueue=enqueue,
        delete=delete,
        size_only=size_only,
        prefix=prefix,
        include=include,
        exclude=exclude,
        workers=workers,
        list_concurrency=list_concurrency,
        verify_md5=verify_md5,
        versions=settings.source.versions if versions is None else versions,
        delete_markers=settings.source.delete_markers,
    )
    stop = stop or threading.Event()
    clients: list[redis.Redis] = [redis_client] if redis_client is not None else []

    def redis_factory() -> redis.Redis:
        if not clients:
            from s3s3.queue.redis_client import connect

            clients.append(connect(settings.redis, socket_timeout=10))
        return clients[0]

    if progress is None:
        progress = ProgressLog(interval_s=settings.bucket.progress_interval_s)
    src, *dsts = make_endpoints(
        [settings.source, *settings.destinations],
        bwlimit=settings.bucket.bwlimit,
        workers=options.bucket.workers,
    )
    if options.dry_run:
        return sync_buckets(src, dsts, options, progress=progress, stop=stop, on_plan=on_plan)
    with job_lock(
        settings.source,
        settings.bucket,
        redis_factory,
        lost=stop,
        redis_url=settings.redis.safe_url,
    ):
        return sync_buckets(
            src,
            dsts,
            options,
            progress=progress,
            stop=stop,
            redis_client=redis_factory() if options.enqueues else None,
            redis_cfg=settings.redis,
            abort_stale_uploads=True,
        )


def sync_buckets(
    src: Endpoint,
    dsts: Sequence[Endpoint],
    options: JobOptions,
    *,
    sink: Sink | None = None,
    progress: ProgressReporter | None = None,
    stop: threading.Event | None = None,
    on_plan: Callable[[str], None] | None = None,
    redis_client: redis.Redis | None = None,
    redis_cfg: RedisConfig | None = None,
    abort_stale_uploads: bool = False,
    key_range: KeyRange | None = None,
) -> JobSummary:
    """Make every destination bucket hold what the source holds (see the module doc).

    ``key_range`` restricts the run to the keys of one range under the prefix (a range
    of a ranged reconcile, ``s3s3.bucketjob.ranged``); it never deletes.

    No lock is taken here (:func:`run_bucket_job` takes it). ``sink`` takes the keys to
    copy and delete; by default the one ``options`` ask for (:func:`make_sink`), to which
    ``on_plan``, ``redis_client`` and ``redis_cfg`` go. ``abort_stale_uploads`` also aborts
    each destination's stale multipart uploads under the prefix, beside the listing
    (:func:`run_bucket_job` asks for it; the engine alone costs only its listings). Raises
    :class:`FatalEndpointError` when an endpoint cannot be used at all and
    :class:`EndpointError` when the source cannot be listed.
    """
    if not dsts:
        raise ValueError("no destination to reconcile")
    if sink is None:
        sink = make_sink(options, on_plan=on_plan, redis_client=redis_client, redis_cfg=redis_cfg)
    run = _Run(
        src,
        [Destination(d, strategy=options.strategy(src.cfg, d.cfg)) for d in dsts],
        options,
        sink=sink,
        stop=stop or threading.Event(),
        abort_uploads=abort_stale_uploads,
        key_range=key_range,
    )
    if progress is not None:
        progress.start(run.summary, run.started)
    try:
        run.execute()
    finally:
        if progress is not None:
            progress.stop()
    summary = run.summary
    for dest in summary.destinations:
        log.info("%s%s", "dry run: " if options.dry_run else "", dest.line(dry_run=options.dry_run))
        if dest.error:
            log.error("[%s] s3://%s: %s", dest.name, dest.bucket, dest.error)
    if summary.stopped:
        log.warning("the run was stopped before it had seen every key")
    return summary


def make_sink(
    options: JobOptions,
    *,
    on_plan: Callable[[str], None] | None = None,
    redis_client: redis.Redis | None = None,
    redis_cfg: RedisConfig | None = None,
) -> Sink:
    """The sink ``options`` ask for: a dry run's report (to ``on_plan``, else the log), the
    stream (``redis_client`` and ``redis_cfg`` are needed), or copies made here."""
    if options.dry_run:
        return DryRunSink(on_plan or log_plan)
    if options.enqueue:
        if redis_client is None or redis_cfg is None:
            raise ValueError("enqueue needs redis_client and redis_cfg")
        return EnqueueSink(redis_client, redis_cfg)
    return CopySink()


# --------------------------------------------------------------------------- the run


class _Run:
    """The coordinator of one reconciliation: the phases, the listing, the stop and its
    grace. Its methods run in the main thread unless noted."""

    def __init__(
        self,
        src: Endpoint,
        dests: list[Destination],
        options: JobOptions,
        *,
        sink: Sink,
        stop: threading.Event,
        abort_uploads: bool = False,
        key_range: KeyRange | None = None,
    ) -> None:
        if key_range is not None and options.bucket.delete:
            raise ValueError("a run over one key range cannot delete: it sees part of the bucket")
        if key_range is not None and options.versions:
            raise ValueError("a run over one key range does not replay versions")
        self.key_range = key_range
        self.src = src
        self.dests = dests
        self.options = options
        self.sink = sink
        self.stop = stop
        self.abort_uploads = abort_uploads
        self.started = time.monotonic()
        self.summary = JobSummary(
            source=src.name,
            bucket=src.bucket,
            destinations=[d.summary for d in dests],
            dry_run=options.dry_run,
            enqueue=options.enqueues,
        )
        self.pool = WorkPool(options.bucket.workers, stop=stop)
        self.merge_end = self.started
        self.cut_short = False  # stopped before every key was seen or every deletion made

    # ---------------------------------------------------------------- phases

    def execute(self) -> None:
        self._check_endpoints()
        pool = self.pool
        finished = threading.Event()
        unwinding = True
        try:
            self.sink.open(self.src, pool)
            if self.abort_uploads and not self.options.dry_run:
                # Beside the listing, not before it: a round trip less on a remote store. No
                # upload this run starts can be taken for stale (the cutoff is fixed first).
                pool.run_aside(self._abort_stale_uploads)
            threading.Thread(
                target=self._enforce_grace, args=(finished,), name="s3s3-grace", daemon=True
            ).start()
            self._reconcile()
            self.sink.close()
            pool.wait()
            if pool.fatal is None:
                # Not after a stop: what was not seen might be in the source.
                if not self.cut_short and not delete_extras(
                    self.dests,
                    max_delete_fraction=self.options.bucket.max_delete_fraction,
                    stop=self.stop,
                    delete=self.sink.delete,
                ):
                    self.cut_short = True
                pool.wait()
            unwinding = False
        except BaseException as exc:
            if not isinstance(exc, Exception):  # Ctrl-C: do not wait for copies to end
                pool.abandon.set()
            raise
        finally:
            # An exception (Ctrl-C, source listing failed) drops the queued work; a stop
            # request or a fatal error in a worker lets the queued work finish, within the
            # grace (_enforce_grace).
            pool.shutdown(cancel_queued=unwinding)
            finished.set()
            self.summary.stopped = self.cut_short and pool.fatal is None
            self.summary.duration_s = time.monotonic() - self.started
            for dest in self.dests:
                dest.finish(started=self.started, merge_end=self.merge_end)
        if pool.fatal is not None:
            raise pool.fatal

    def _check_endpoints(self) -> None:
        workers = self.options.bucket.workers
        for ep in (self.src, *(d.endpoint for d in self.dests)):
            if ep.cfg.max_pool_connections < workers:
                log.warning(
                    "[%s] max_pool_connections = %d is below workers = %d: "
                    "connections will be opened and thrown away; raise it",
                    ep.name,
                    ep.cfg.max_pool_connections,
                    workers,
                )
        _check_bucket(self.src)
        for dest in self.dests:
            try:
                _check_bucket(dest.endpoint)
            except FatalEndpointError:
                raise
            except EndpointError as exc:
                dest.mark_broken(f"unreachable: {exc}")
        if self.options.versions:
            versioned.check_destinations(self)

    def _abort_stale_uploads(self) -> None:
        """Pool task: each reachable destination's stale multipart uploads."""
        try:
            for dest in self.dests:
                if not dest.broken:
                    dest.summary.uploads_aborted = abort_stale_uploads(
                        dest.endpoint, prefix=self.options.bucket.prefix
                    )
        except Exception:  # a pool task's exception would go unseen
            log.exception("aborting stale multipart uploads failed")

    def _enforce_grace(self, finished: threading.Event) -> None:
        """Thread: once the run is stopped, give the work in flight ``grace_s``, then cancel
        it (the pool's threads would otherwise hold the process until every copy ends, and
        a supervisor's SIGKILL would leave their multipart uploads open)."""
        while not self.stop.wait(0.5):
            if finished.is_set():
                return
        grace_s = self.options.bucket.grace_s
        if finished.wait(grace_s):
            return
        log.warning(
            "the work in flight did not finish within grace = %gs of the stop: "
            "cancelling it (multipart uploads are aborted)",
            grace_s,
        )
        self.cut_short = True
        self.pool.abandon.set()

    # ---------------------------------------------------------------- listing and merge

    def _listing(self, dest: Destination) -> Iterator[ObjectInfo]:
        """``dest``'s listing; ends early, marking it broken, if listing fails."""
        if dest.broken:
            return
        try:
            yield from list_keys(
                dest.endpoint,
                self.options.bucket.prefix,
                concurrency=self.options.bucket.list_concurrency,
                key_range=self.key_range,
            )
        except FatalEndpointError:
            raise
        except EndpointError as exc:
            dest.mark_broken(f"listing failed: {exc}")

    def _reconcile(self) -> None:
        if self.options.versions:
            try:
                versioned.reconcile_versions(self)
            finally:
                self.merge_end = time.monotonic()
            return
        cfg = self.options.bucket
        plans: Generator[KeyPlan, None, None] = plan_keys(
            list_keys(
                self.src, cfg.prefix, concurrency=cfg.list_concurrency, key_range=self.key_range
            ),
            [self._listing(d) for d in self.dests],
            strategies=[d.strategy for d in self.dests],
            delete=cfg.delete,
            key_filter=KeyFilter(cfg.include, cfg.exclude),
        )
        pool = self.pool
        try:
            for kp in plans:
                if pool.fatal is not None or self.stop.is_set():
                    self.cut_short = True
                    break
                self._handle(kp)
        except ListingOrderError as exc:
            ep = self.src if exc.side == 0 else self.dests[exc.side - 1].endpoint
            raise FatalEndpointError(
                f"the listing is out of order ({exc}); try list_version = 1 for it",
                op="ListObjects",
                endpoint=ep.name,
                bucket=ep.bucket,
                code="ListingOrder",
            ) from exc
        finally:
            plans.close()  # stops the listing threads
            self.merge_end = time.monotonic()

    def _handle(self, kp: KeyPlan) -> None:
        """Count what the listings settle for one key; hand the rest to the sink."""
        key, src, dsts, actions = kp
        copies: list[tuple[Destination, ObjectInfo | None]] = []
        checks: list[tuple[Destination, ObjectInfo]] = []
        for dest, dst_info, action in zip(self.dests, dsts, actions, strict=True):
            if action is None:
                continue
            if dst_info is not None:
                dest.present += 1
            if src is None:
                dest.summary.extra += 1
                if action is Action.DELETE and not dest.broken:
                    dest.doomed.add(key)
                continue
            dest.summary.listed += 1
            if dest.broken:
                dest.count_unreachable()
            elif action is Action.SKIP:
                dest.count_skipped()
            elif action is Action.COPY:
                copies.append((dest, dst_info))
            elif dst_info is not None:  # Action.HASH: on both sides, md5 unknown on one
                checks.append((dest, dst_info))
        if src is None or (not copies and not checks):
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "plan %r: copy to %s, verify at %s",
                key,
                [d.name for d, _ in copies],
                [d.name for d, _ in checks],
            )
        self.sink.take(key, src, copies, checks)


def list_keys(
    endpoint: Endpoint,
    prefix: str,
    *,
    concurrency: int,
    key_range: KeyRange | None = None,
) -> Iterator[ObjectInfo]:
    """One side's listing for the merge, in key order: ``concurrency`` 1 is the serial
    listing a few pages ahead (:func:`list_objects_ahead`), more lists ranges of the key
    space at once (:func:`list_objects_parallel`)."""
    if concurrency <= 1:
        return list_objects_ahead(endpoint, prefix, key_range=key_range)
    return list_objects_parallel(endpoint, prefix, concurrency=concurrency, key_range=key_range)


def _check_bucket(endpoint: Endpoint) -> None:
    """HeadBucket under the endpoint's policy: a passing 503 at start-up costs a retry, not
    the run (or a destination)."""
    retry.call(
        endpoint.check_bucket,
        policy=retry.Policy.for_endpoint(endpoint.cfg),
        what=f"check bucket of [{endpoint.name}]",
    )
