"""Reconcile whole destination buckets with the source: the engine of ``s3s3bucket``.

One pass, whatever the bucket's size:

1. every endpoint is checked up front (:meth:`Endpoint.check_bucket`): bad credentials or
   a missing bucket stop the run before any work; a destination that does not answer is
   marked failed and the others go on;
2. the source and every destination are listed at once, a few pages ahead, and merged by
   :func:`plan.plan_keys` into one action per key and destination;
3. copies go to a thread pool through a bounded queue (``2 x workers`` items at most), so
   memory stays flat over millions of keys. A key whose listing entry already shows it
   identical costs nothing more: no HEAD, no GET. Keys the planner could not settle
   from the listings (``verify_md5`` without an md5 on one side) are HEADed for the
   ``s3s3-md5`` metadata and read only if that is missing;
4. destination-only keys are deleted, when asked, after the listing is complete, so the
   share of the destination they represent is known: above ``max_delete_fraction`` nothing
   is deleted and the destination is reported as refused. Deletion goes through
   DeleteObjects in batches of 1,000, or DeleteObject per key where DeleteObjects is not
   implemented.

A failed key is logged with its key and cause, counted, and the run goes on. The run stops
on a :class:`FatalEndpointError` that concerns a whole endpoint (credentials, bucket), on an
out-of-order listing, when the source listing fails, or when ``stop`` is set (SIGTERM, a
lost lock); work in flight is finished first, within ``grace_s`` of the stop: copies still
running then are cancelled, and abort their multipart uploads (as on Ctrl-C).

With ``abort_stale_uploads`` (as :func:`run_bucket_job` runs it), each destination's stale
multipart uploads under the prefix (older than its ``abort_uploads_after``) are aborted
in a pool task beside the listing: :func:`transfer.abort_stale_uploads`.

With ``enqueue``, the keys to copy are added to the listener's Redis Stream instead
(:func:`queue.producer.add_entries`, which waits while the stream is full), for a fleet of
``s3s3listen`` workers to copy; deletions are still made here, under the same limit.

With ``dry_run``, the plan is printed, one line per action, and nothing is written (objects
may be read to settle ``verify_md5`` comparisons).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from s3s3 import retry
from s3s3.bucketjob.lock import job_lock
from s3s3.config import BucketConfig, RedisConfig, Settings
from s3s3.errors import (
    EndpointError,
    FatalEndpointError,
    ListingOrderError,
    S3S3Error,
    SourceKeyMissing,
)
from s3s3.listing import list_objects_ahead
from s3s3.model import ObjectInfo
from s3s3.plan import Action, KeyFilter, KeyPlan, Strategy, plan_keys, reason
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import abort_stale_uploads, copy_object, is_identical, md5_of_object

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

#: Keys per DeleteObjects request (the S3 maximum).
DELETE_BATCH = 1000
#: Stream entries gathered before they are handed to ``add_entries``.
ENQUEUE_BATCH = 1000
#: Seconds work in flight may take to finish once the run is stopped ([bucket] grace).
DEFAULT_GRACE_S = 30.0
#: Failures kept (with key and cause) in each destination's summary; all are logged.
MAX_FAILURES_KEPT = 100
#: Fatal error codes that concern the whole endpoint, not one key: they stop the run.
ENDPOINT_WIDE_CODES = frozenset(
    {
        "NoSuchBucket",
        "InvalidBucketName",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AccountProblem",
        "AuthorizationHeaderMalformed",
        "AllBucketsPublicAccessBlocked",
        "PermanentRedirect",
        "NoCredentials",
        "TLS",
    }
)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SyncOptions:
    """How one reconciliation runs (``[bucket]`` settings after command-line overrides)."""

    prefix: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    delete: bool = False
    max_delete_fraction: float = 0.5
    size_only: bool = False
    verify_md5: bool = False  # or'ed with each endpoint's own verify_md5
    dry_run: bool = False
    enqueue: bool = False
    workers: int = 32
    grace_s: float = DEFAULT_GRACE_S  # after a stop, then copies in flight are cancelled

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.grace_s < 0:
            raise ValueError(f"grace_s must be zero or more, got {self.grace_s}")
        if not 0.0 <= self.max_delete_fraction <= 1.0:
            raise ValueError(
                f"max_delete_fraction must be between 0 and 1, got {self.max_delete_fraction}"
            )


def make_options(
    cfg: BucketConfig,
    *,
    dry_run: bool = False,
    enqueue: bool = False,
    delete: bool | None = None,
    size_only: bool | None = None,
    prefix: str | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    workers: int | None = None,
    verify_md5: bool = False,
) -> SyncOptions:
    """The one place where overrides (command-line flags, API arguments) meet ``[bucket]``.

    None keeps the INI's value; include and exclude lists replace the INI's lists.
    """
    return SyncOptions(
        prefix=cfg.prefix if prefix is None else prefix,
        include=cfg.include if include is None else tuple(include),
        exclude=cfg.exclude if exclude is None else tuple(exclude),
        delete=cfg.delete if delete is None else delete,
        max_delete_fraction=cfg.max_delete_fraction,
        size_only=cfg.size_only if size_only is None else size_only,
        verify_md5=verify_md5,
        dry_run=dry_run,
        enqueue=enqueue,
        workers=cfg.workers if workers is None else workers,
        grace_s=cfg.grace_s,
    )


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Failure:
    key: str
    op: str  # copy | verify | delete
    cause: str


@dataclass
class DestinationSummary:
    """What one run did to one destination.

    Each source key in scope is counted once in ``listed`` and once in ``copied``,
    ``skipped``, ``enqueued`` or ``failed``; ``extra`` counts destination-only keys, of
    which ``deleted`` were deleted (failed deletions also count in ``failed``). In a dry
    run, ``copied``, ``deleted`` and ``bytes_copied`` say what would have been done.
    ``error`` is set when the destination as a whole failed (unreachable, listing broken
    off, deletion refused).
    """

    name: str
    bucket: str
    listed: int = 0
    copied: int = 0
    skipped: int = 0
    enqueued: int = 0
    deleted: int = 0
    failed: int = 0
    extra: int = 0
    uploads_aborted: int = 0  # stale multipart uploads the run aborted
    bytes_copied: int = 0
    duration_s: float = 0.0
    error: str | None = None
    delete_refused: bool = False
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.error is None

    def line(self, *, dry_run: bool = False) -> str:
        verb = "would be " if dry_run else ""
        text = (
            f"[{self.name}] s3://{self.bucket}: listed {self.listed}, {verb}copied "
            f"{self.copied}, skipped {self.skipped}, {verb}deleted {self.deleted}, failed "
            f"{self.failed}, {self.bytes_copied} bytes, {self.duration_s:.1f} s"
        )
        if self.enqueued:
            text += f", enqueued {self.enqueued}"
        if self.extra:
            text += f" ({self.extra} keys only at the destination)"
        if self.uploads_aborted:
            text += f"; {self.uploads_aborted} stale multipart uploads aborted"
        return text


@dataclass
class JobSummary:
    """The outcome of one reconciliation: one :class:`DestinationSummary` per destination."""

    source: str
    bucket: str
    destinations: list[DestinationSummary]
    dry_run: bool = False
    enqueue: bool = False
    duration_s: float = 0.0
    stopped: bool = False  # stopped early (SIGTERM, lost lock): not everything was seen

    @property
    def ok(self) -> bool:
        return not self.stopped and all(d.ok for d in self.destinations)

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.destinations)


# --------------------------------------------------------------------------- progress


class Progress:
    """Reports a running job: a one-line display on a terminal, log lines otherwise.

    Use :meth:`for_stream`; ``start`` and ``stop`` are called by the engine.
    """

    def __init__(self, *, stream=None, interval_s: float = 30.0) -> None:
        self.stream = stream  # a terminal to redraw one line on; None: log lines
        self.interval_s = interval_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_stream(cls, stream, *, interval_s: float) -> Progress:
        """A redrawn line (twice a second) when ``stream`` is a terminal, else log lines."""
        if hasattr(stream, "isatty") and stream.isatty():
            return cls(stream=stream, interval_s=0.5)
        return cls(interval_s=interval_s)

    def start(self, summary: JobSummary, started: float) -> None:
        self._done.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(summary, started), name="progress", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self, summary: JobSummary, started: float) -> None:
        while not self._done.wait(self.interval_s):
            self._show(render_progress(summary, time.monotonic() - started))
        if self.stream is not None:
            self._show(render_progress(summary, time.monotonic() - started))
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, text: str) -> None:
        if self.stream is None:
            log.info("progress: %s", text)
        else:
            self.stream.write("\r" + text[:200].ljust(79))
            self.stream.flush()


def render_progress(summary: JobSummary, elapsed_s: float) -> str:
    dests = summary.destinations
    listed = max((d.listed for d in dests), default=0)
    done = sum(d.copied + d.skipped + d.enqueued + d.failed for d in dests)
    copied = sum(d.copied for d in dests)
    megabytes = sum(d.bytes_copied for d in dests) / 1e6
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"listed {listed} | copied {copied} ({megabytes:.1f} MB) | skipped "
        f"{sum(d.skipped for d in dests)} | failed {sum(d.failed for d in dests)} | "
        f"{rate:.0f} keys/s | {elapsed_s:.0f} s"
    )


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
    progress: Progress | None = None,
    verify_md5: bool = False,
    stop: threading.Event | None = None,
    on_plan: Callable[[str], None] | None = None,
    redis_client: redis.Redis | None = None,
) -> JobSummary:
    """Reconcile every destination of ``settings`` with its source, holding the job lock.

    Arguments left as None keep the ``[bucket]`` settings. ``progress`` defaults to log
    lines every ``progress_interval``. A dry run takes no lock: it changes nothing.
    Raises :class:`LockHeld` when another run holds the lock.
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
        verify_md5=verify_md5,
    )
    stop = stop or threading.Event()
    clients: list[redis.Redis] = [redis_client] if redis_client is not None else []

    def redis_factory() -> redis.Redis:
        if not clients:
            from s3s3.queue.redis_client import connect

            clients.append(connect(settings.redis, socket_timeout=10))
        return clients[0]

    if progress is None:
        progress = Progress(interval_s=settings.bucket.progress_interval_s)
    src = Endpoint(settings.source)
    dsts = [Endpoint(cfg) for cfg in settings.destinations]
    kwargs = dict(progress=progress, stop=stop, on_plan=on_plan, redis_cfg=settings.redis)
    if options.dry_run:
        return sync_buckets(src, dsts, options, **kwargs)
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
            redis_client=redis_factory() if options.enqueue else None,
            abort_stale_uploads=True,
            **kwargs,
        )


def sync_buckets(
    src: Endpoint,
    dsts: Sequence[Endpoint],
    options: SyncOptions,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    on_plan: Callable[[str], None] | None = None,
    redis_client: redis.Redis | None = None,
    redis_cfg: RedisConfig | None = None,
    abort_stale_uploads: bool = False,
) -> JobSummary:
    """Make every destination bucket hold what the source holds (see the module doc).

    No lock is taken here (:func:`run_bucket_job` takes it). ``on_plan`` receives the
    dry-run plan lines (default: standard output). ``redis_client`` and ``redis_cfg`` are
    needed with ``options.enqueue``. ``abort_stale_uploads`` also aborts each
    destination's stale multipart uploads under the prefix, beside the listing (:func:`run_bucket_job` asks
    for it; the engine alone costs only its listings). Raises :class:`FatalEndpointError` when an endpoint
    cannot be used at all and :class:`EndpointError` when the source cannot be listed.
    """
    if not dsts:
        raise ValueError("no destination to reconcile")
    if options.enqueue and not options.dry_run and (redis_client is None or redis_cfg is None):
        raise ValueError("enqueue needs redis_client and redis_cfg")
    run = _Run(
        src,
        list(dsts),
        options,
        stop=stop or threading.Event(),
        on_plan=on_plan or _print_line,
        redis_client=redis_client,
        redis_cfg=redis_cfg,
        abort_uploads=abort_stale_uploads,
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


_print_lock = threading.Lock()


def _print_line(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line + "\n")


def printable(key: str) -> str:
    """The key as is, or quoted with escapes when it holds control characters."""
    return key if key.isprintable() and key.strip() == key else repr(key)


# --------------------------------------------------------------------------- the run


class _Run:
    """The state of one reconciliation; its methods run in the main thread unless noted."""

    def __init__(
        self,
        src: Endpoint,
        dsts: list[Endpoint],
        options: SyncOptions,
        *,
        stop: threading.Event,
        on_plan: Callable[[str], None],
        redis_client: redis.Redis | None,
        redis_cfg: RedisConfig | None,
        abort_uploads: bool = False,
    ) -> None:
        self.src = src
        self.abort_uploads = abort_uploads
        self.dsts = dsts
        self.options = options
        self.stop = stop
        self.on_plan = on_plan
        self.redis = redis_client
        self.redis_cfg = redis_cfg
        self.started = time.monotonic()
        self.summary = JobSummary(
            source=src.name,
            bucket=src.bucket,
            destinations=[DestinationSummary(d.name, d.bucket) for d in dsts],
            dry_run=options.dry_run,
            enqueue=options.enqueue and not options.dry_run,
        )
        self.verify = [options.verify_md5 or src.cfg.verify_md5 or d.cfg.verify_md5 for d in dsts]
        self.strategies = [Strategy(size_only=options.size_only, verify_md5=v) for v in self.verify]
        self.broken = [False] * len(dsts)  # destination unreachable or its listing failed
        self.present = [0] * len(dsts)  # destination keys in scope, for the delete limit
        self.last_done = [0.0] * len(dsts)
        self.single_delete = [False] * len(dsts)  # DeleteObjects not implemented there
        self.doomed: list = [None] * len(dsts)  # spooled keys to delete, per destination
        self.doomed_count = [0] * len(dsts)
        self.entries: list[dict[str, str]] = []  # stream entries waiting for a pipeline
        self.counts = threading.Lock()
        self.fatal: BaseException | None = None
        self.slots = threading.BoundedSemaphore(options.workers * 2)
        self.pool: ThreadPoolExecutor | None = None
        self.merge_end = self.started
        self.cut_short = False  # stopped before every key was seen or every deletion made
        # Set once work in flight is given up (grace over after a stop, Ctrl-C): copies
        # stop at their next chunk or part and abort their multipart uploads.
        self.abandon = threading.Event()

    # ---------------------------------------------------------------- phases

    def execute(self) -> None:
        self._check_endpoints()
        if self.summary.enqueue:
            self._check_redis()
        self.pool = ThreadPoolExecutor(
            max_workers=self.options.workers, thread_name_prefix="s3s3-sync"
        )
        if self.abort_uploads and not self.options.dry_run:
            # Beside the listing, not before it: a round trip less on a remote store. No
            # upload this run starts can be taken for stale (the cutoff is fixed first).
            self.pool.submit(self._abort_stale_uploads)
        finished = threading.Event()
        threading.Thread(
            target=self._enforce_grace, args=(finished,), name="s3s3-grace", daemon=True
        ).start()
        unwinding = True
        try:
            self._reconcile()
            if self.summary.enqueue:
                self._flush_entries()
            self._wait()
            if self.fatal is None:
                self._delete_extras()
                self._wait()
            unwinding = False
        except BaseException as exc:
            if not isinstance(exc, Exception):  # Ctrl-C: do not wait for copies to end
                self.abandon.set()
            raise
        finally:
            # An exception (Ctrl-C, source listing failed) drops the queued work; a stop
            # request or a fatal error in a worker lets the queued work finish, within the
            # grace (_enforce_grace).
            self.pool.shutdown(wait=True, cancel_futures=unwinding)
            finished.set()
            self._close_spools()
            self.summary.stopped = self.cut_short and self.fatal is None
            end = time.monotonic()
            self.summary.duration_s = end - self.started
            for i, dest in enumerate(self.summary.destinations):
                dest.duration_s = max(self.last_done[i], self.merge_end) - self.started
        if self.fatal is not None:
            raise self.fatal

    def _check_endpoints(self) -> None:
        for ep in (self.src, *self.dsts):
            if ep.cfg.max_pool_connections < self.options.workers:
                log.warning(
                    "[%s] max_pool_connections = %d is below workers = %d: "
                    "connections will be opened and thrown away; raise it",
                    ep.name,
                    ep.cfg.max_pool_connections,
                    self.options.workers,
                )
        self.src.check_bucket()
        for i, dst in enumerate(self.dsts):
            try:
                dst.check_bucket()
            except FatalEndpointError:
                raise
            except EndpointError as exc:
                self._break(i, f"unreachable: {exc}")

    def _abort_stale_uploads(self) -> None:
        try:
            for i, dst in enumerate(self.dsts):
                if not self.broken[i]:
                    self.summary.destinations[i].uploads_aborted = abort_stale_uploads(
                        dst, prefix=self.options.prefix
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
        if finished.wait(self.options.grace_s):
            return
        log.warning(
            "the work in flight did not finish within grace = %gs of the stop: "
            "cancelling it (multipart uploads are aborted)",
            self.options.grace_s,
        )
        self.cut_short = True
        self.abandon.set()

    def _check_redis(self) -> None:
        # redis-py is imported only where Redis is used: it is a tenth of a second of
        # start-up, which a run with a local lock and no --enqueue need not pay.
        from redis import RedisError

        try:
            self.redis.ping()
        except RedisError as exc:
            raise S3S3Error(
                f"cannot enqueue: Redis at {self.redis_cfg.safe_url} does not answer: {exc}"
            ) from exc

    def _break(self, i: int, why: str) -> None:
        self.broken[i] = True
        dest = self.summary.destinations[i]
        dest.error = f"{why}; every key of this run is counted as failed there"
        log.error("[%s] s3://%s %s", dest.name, dest.bucket, dest.error)

    def _listing(self, i: int) -> Iterator[ObjectInfo]:
        """Destination ``i``'s listing; ends early, marking it broken, if listing fails."""
        if self.broken[i]:
            return
        try:
            yield from list_objects_ahead(self.dsts[i], self.options.prefix)
        except FatalEndpointError:
            raise
        except EndpointError as exc:
            self._break(i, f"listing failed: {exc}")

    def _reconcile(self) -> None:
        keep = KeyFilter(self.options.include, self.options.exclude)
        plans = plan_keys(
            list_objects_ahead(self.src, self.options.prefix),
            [self._listing(i) for i in range(len(self.dsts))],
            strategies=self.strategies,
            delete=self.options.delete,
            key_filter=keep,
        )
        try:
            for kp in plans:
                if self.fatal is not None or self.stop.is_set():
                    self.cut_short = True
                    break
                self._handle(kp)
                if len(self.entries) >= ENQUEUE_BATCH:
                    self._flush_entries()
        except ListingOrderError as exc:
            ep = self.src if exc.side == 0 else self.dsts[exc.side - 1]
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
        key, src, dsts, actions = kp
        copies: list[int] = []
        checks: list[tuple[int, ObjectInfo]] = []
        summaries = self.summary.destinations
        for i, action in enumerate(actions):
            if action is None:
                continue
            dest = summaries[i]
            if dsts[i] is not None:
                self.present[i] += 1
            if src is None:
                dest.extra += 1
                if action is Action.DELETE and not self.broken[i]:
                    self._doom(i, key)
                continue
            dest.listed += 1
            if self.broken[i]:
                with self.counts:
                    dest.failed += 1
            elif action is Action.SKIP:
                with self.counts:
                    dest.skipped += 1
            elif action is Action.COPY:
                copies.append(i)
            else:
                checks.append((i, dsts[i]))
        if not copies and not checks:
            return
        if self.summary.enqueue:
            self.entries.append({"key": key, "op": "copy"})
            with self.counts:
                for i in copies + [i for i, _ in checks]:
                    summaries[i].enqueued += 1
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "plan %r: copy to %s, verify at %s",
                key,
                [self.dsts[i].name for i in copies],
                [self.dsts[i].name for i, _ in checks],
            )
        for i in copies:
            if self.options.dry_run:
                self._would_copy(i, key, src, reason(Action.COPY, src, dsts[i]))
            else:
                self._submit(self._copy, key, src, i)
        if checks:
            self._submit(self._verify, key, src, checks)

    # ---------------------------------------------------------------- work items

    def _submit(self, fn, *args) -> None:
        """Queue a work item, waiting while ``2 x workers`` are queued or running."""
        self.slots.acquire()
        try:
            self.pool.submit(self._guarded, fn, args)
        except BaseException:
            self.slots.release()
            raise

    def _guarded(self, fn, args) -> None:
        """Worker thread: run one item; an endpoint-wide fatal error stops the run."""
        try:
            fn(*args)
        except FatalEndpointError as exc:
            if self.fatal is None:
                self.fatal = exc
                log.error("stopping: %s", exc)
            self.stop.set()
        except Exception:  # a bug in the counting itself: the items count their own failures
            log.exception("unexpected error in %s%r", fn.__name__, args[:1])
        finally:
            self.slots.release()

    def _copy(self, key: str, src: ObjectInfo, i: int) -> None:
        """Worker thread: copy one key to destination ``i``."""
        try:
            result = self._retried(
                i,
                key,
                lambda: copy_object(
                    self.src, self.dsts[i], key, force=True, src_info=src, cancel=self.abandon
                ),
            )
        except Exception as exc:
            self._fail_or_stop([i], key, "copy", exc)
        else:
            self._copied(i, key, result.outcome, result.size)

    def _retried(self, i: int, key: str, fn):
        """``fn()``, one key's operation toward destination ``i``, under its retry policy."""
        dst = self.dsts[i]
        return retry.call(
            fn,
            policy=retry.Policy.for_endpoint(dst.cfg),
            what=f"copy {key!r} to [{dst.name}]",
            cancel=self.abandon,
        )

    def _copied(self, i: int, key: str, outcome: str, size: int) -> None:
        dest = self.summary.destinations[i]
        with self.counts:
            if outcome == "copied":
                dest.copied += 1
                dest.bytes_copied += size
            else:  # "skipped", or "missing": deleted at the source since it was listed
                dest.skipped += 1
            self.last_done[i] = time.monotonic()
        log.debug("%s %r to [%s] (%d bytes)", outcome, key, self.dsts[i].name, size)

    def _verify(self, key: str, src: ObjectInfo, checks: list[tuple[int, ObjectInfo]]) -> None:
        """Worker thread: settle HASH verdicts; the source md5 is found once for all."""
        try:
            src_now = _with_md5(self.src, key, src)
            if src_now is not None and src_now.known_md5 is None:
                src_now = dataclasses.replace(src_now, md5=md5_of_object(self.src, key))
        except SourceKeyMissing:
            src_now = None
        except Exception as exc:
            self._fail_or_stop([i for i, _ in checks], key, "verify", exc)
            return
        for i, dst_info in checks:
            if src_now is None:  # deleted at the source since it was listed
                self._copied(i, key, "missing", 0)
                continue
            dst = self.dsts[i]
            try:
                dst_now = _with_md5(dst, key, dst_info)
                if dst_now is not None and is_identical(
                    self.src, dst, key, src_now, dst_now, verify_md5=True
                ):
                    self._copied(i, key, "skipped", 0)
                elif self.options.dry_run:
                    self._would_copy(i, key, src_now, "md5 differs, found by reading")
                else:
                    result = self._retried(
                        i,
                        key,
                        functools.partial(
                            copy_object,
                            self.src,
                            dst,
                            key,
                            force=True,
                            src_info=src_now,
                            cancel=self.abandon,
                        ),
                    )
                    self._copied(i, key, result.outcome, result.size)
            except Exception as exc:
                self._fail_or_stop([i], key, "verify", exc)

    def _would_copy(self, i: int, key: str, src: ObjectInfo, why: str) -> None:
        self.on_plan(f"copy [{self.dsts[i].name}] {printable(key)} ({why})")
        self._copied(i, key, "copied", src.size)

    def _fail_or_stop(self, dests: list[int], key: str, op: str, exc: Exception) -> None:
        """Count ``exc`` as a failure of ``key`` at ``dests``, unless it concerns a whole
        endpoint: then re-raise it, and :meth:`_guarded` stops the run."""
        if isinstance(exc, FatalEndpointError) and exc.code in ENDPOINT_WIDE_CODES:
            raise exc
        for i in dests:
            self._fail(i, key, op, exc)

    def _fail(self, i: int, key: str, op: str, exc: BaseException) -> None:
        dest = self.summary.destinations[i]
        with self.counts:
            dest.failed += 1
            if len(dest.failures) < MAX_FAILURES_KEPT:
                dest.failures.append(Failure(key, op, str(exc)))
            self.last_done[i] = time.monotonic()
        log.error("%s %r to [%s] s3://%s failed: %s", op, key, dest.name, dest.bucket, exc)

    def _wait(self) -> None:
        """Wait until every queued item is done (all slots free again)."""
        held = 0
        try:
            for _ in range(self.options.workers * 2):
                self.slots.acquire()
                held += 1
        finally:
            for _ in range(held):
                self.slots.release()

    # ---------------------------------------------------------------- enqueue

    def _flush_entries(self) -> None:
        if not self.entries:
            return
        from redis import RedisError

        from s3s3.queue.producer import add_entries

        try:
            add_entries(self.redis, self.redis_cfg, self.entries)
        except RedisError as exc:
            raise S3S3Error(
                f"cannot add to Redis stream {self.redis_cfg.stream!r} at "
                f"{self.redis_cfg.safe_url}: {exc}"
            ) from exc
        self.entries = []

    # ---------------------------------------------------------------- deletion

    def _doom(self, i: int, key: str) -> None:
        """Remember a key to delete, on disk past a few MiB (a whole stale bucket fits)."""
        if self.doomed[i] is None:
            self.doomed[i] = tempfile.SpooledTemporaryFile(
                max_size=8 << 20, mode="w+", encoding="utf-8"
            )
        # JSON keeps keys with newlines or any other character on one line.
        self.doomed[i].write(json.dumps(key) + "\n")
        self.doomed_count[i] += 1

    def _close_spools(self) -> None:
        for spool in self.doomed:
            if spool is not None:
                spool.close()

    def _delete_extras(self) -> None:
        if self.cut_short:
            return  # what was not seen might be in the source
        for i, spool in enumerate(self.doomed):
            if spool is None or self.broken[i]:
                continue
            dest = self.summary.destinations[i]
            count, total = self.doomed_count[i], self.present[i]
            limit = self.options.max_delete_fraction
            if count > limit * total:
                dest.delete_refused = True
                dest.error = (
                    f"refusing to delete {count} of the {total} keys in scope "
                    f"(more than max_delete_fraction = {limit:g}); nothing was "
                    "deleted. Check the source bucket and the prefix, or raise "
                    "max_delete_fraction in [bucket]"
                )
                continue
            spool.seek(0)
            batch: list[str] = []
            for line in spool:
                if self.stop.is_set():
                    self.cut_short = True
                    return
                batch.append(json.loads(line))
                if len(batch) == DELETE_BATCH:
                    self._delete_batch(i, batch)
                    batch = []
            if batch:
                self._delete_batch(i, batch)

    def _delete_batch(self, i: int, keys: list[str]) -> None:
        if self.options.dry_run:
            for key in keys:
                self.on_plan(f"delete [{self.dsts[i].name}] {printable(key)} (not in the source)")
            with self.counts:
                self.summary.destinations[i].deleted += len(keys)
            return
        self._submit(self._delete, i, keys)

    def _delete(self, i: int, keys: list[str]) -> None:
        """Worker thread: delete a batch from destination ``i``."""
        dst = self.dsts[i]
        if not self.single_delete[i]:
            try:
                resp = dst.call(
                    "DeleteObjects", Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
                )
            except EndpointError as exc:
                if exc.code != "NotImplemented" and exc.status != 501:
                    for key in keys:
                        self._fail_or_stop([i], key, "delete", exc)
                    return
                log.warning(
                    "[%s] does not implement DeleteObjects; deleting one key per request", dst.name
                )
                self.single_delete[i] = True
            else:
                errors = resp.get("Errors") or []
                for err in errors:
                    self._fail(
                        i,
                        err.get("Key", "?"),
                        "delete",
                        EndpointError(
                            f"{err.get('Code')}: {err.get('Message')}",
                            op="DeleteObjects",
                            endpoint=dst.name,
                            bucket=dst.bucket,
                            key=err.get("Key"),
                            code=err.get("Code"),
                        ),
                    )
                self._deleted(i, len(keys) - len(errors))
                return
        for key in keys:
            try:
                dst.delete(key)
            except EndpointError as exc:
                self._fail_or_stop([i], key, "delete", exc)
            else:
                self._deleted(i, 1)

    def _deleted(self, i: int, count: int) -> None:
        with self.counts:
            self.summary.destinations[i].deleted += count
            self.last_done[i] = time.monotonic()


def _with_md5(endpoint: Endpoint, key: str, info: ObjectInfo) -> ObjectInfo | None:
    """``info`` when its md5 is known, else a HEAD's (which reads ``s3s3-md5``); None if
    the object is gone."""
    if info.known_md5:
        return info
    return endpoint.head(key)
