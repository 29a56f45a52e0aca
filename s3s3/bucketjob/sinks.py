"""What becomes of the keys the plan says to copy, check or delete: a sink takes them.

- :class:`CopySink` copies them here, on the run's worker pool, each copy retried under
  the destination's policy (:mod:`s3s3.retry`; the transfer itself tries once); a key that
  several destinations need is read from the source once for all of them
  (:mod:`s3s3.fanout`), and a destination whose shared copy failed retries alone;
- :class:`EnqueueSink` adds them to the listener's Redis Stream
  (:func:`s3s3.queue.producer.add_entries`, which waits while the stream is full), for a
  fleet of ``s3s3listen`` workers to copy; deletions are still made here;
- :class:`DryRunSink` reports each planned action through its ``on_plan`` callback and
  changes nothing (objects may be read to settle ``verify_md5`` comparisons).

Keys the planner could not settle from the listings (``Action.HASH``: ``verify_md5``
without an md5 on one side) are HEADed for the ``s3s3-md5`` metadata, and read only if
that is missing, by the copy and dry-run sinks; every HEAD and read is retried as a copy
is. A sink counts what became of each key at each :class:`Destination`. It never prints:
``on_plan`` is the caller's (the scripts print the plan).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from s3s3 import retry
from s3s3.bucketjob.deletion import delete_batch
from s3s3.bucketjob.destination import Destination
from s3s3.bucketjob.pool import WorkPool
from s3s3.config import RedisConfig
from s3s3.errors import S3S3Error, SourceKeyMissing, is_retryable
from s3s3.fanout import copy_to_all
from s3s3.model import COPY, CopyResult, ObjectInfo, Outcome
from s3s3.plan import Action, Verdict, decide, reason
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import copy_object, md5_of_object

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Stream entries gathered before they are handed to ``add_entries``.
ENQUEUE_BATCH = 1000

#: A copy to make: the destination, and its listing entry for the key (None: absent).
Copy = tuple[Destination, ObjectInfo | None]
#: A comparison to settle by reading: the destination and its listing entry for the key.
Check = tuple[Destination, ObjectInfo]
#: What copies one key: :func:`s3s3.transfer.copy_object`'s signature.
Copier = Callable[..., CopyResult]


class Sink(Protocol):
    """Where the runner hands the work of a run.

    ``open`` comes once the endpoints are checked, before the listing; ``take`` once per
    key with something to do, from the main thread; ``delete`` once per batch of doomed
    keys after the listing; ``close`` once the listing is over (not after a failure), to
    hand over anything still held.
    """

    def open(self, src: Endpoint, pool: WorkPool) -> None: ...

    def take(
        self, key: str, src: ObjectInfo, copies: Sequence[Copy], checks: Sequence[Check]
    ) -> None: ...

    def delete(self, dest: Destination, keys: list[str]) -> None: ...

    def close(self) -> None: ...


def printable(key: str) -> str:
    """The key as is, or quoted with escapes when it holds control characters."""
    return key if key.isprintable() and key.strip() == key else repr(key)


def log_plan(line: str) -> None:
    """The dry-run plan's default destination: the log (the scripts print it instead)."""
    log.info("plan: %s", line)


class _PoolSink:
    """What the sinks share: the source and the pool, given at :meth:`open`; deletions as
    worker items."""

    src: Endpoint
    pool: WorkPool

    def open(self, src: Endpoint, pool: WorkPool) -> None:
        self.src = src
        self.pool = pool
        self._src_policy = retry.Policy.for_endpoint(src.cfg)

    def delete(self, dest: Destination, keys: list[str]) -> None:
        self.pool.submit(self._delete, dest, keys)

    def close(self) -> None:
        pass

    def _delete(self, dest: Destination, keys: list[str]) -> None:
        delete_batch(dest, keys, cancel=self.pool.abandon)

    def _retried(
        self,
        fn: Callable[[], T],
        *,
        policy: retry.Policy,
        what: str,
        failed: tuple[BaseException, float] | None = None,
    ) -> T:
        return retry.call(fn, policy=policy, what=what, cancel=self.pool.abandon, failed=failed)


class _CheckingSink(_PoolSink):
    """A sink that settles HASH verdicts here, by reading md5s; a subclass says what to do
    with a key found to differ (:meth:`_differs`)."""

    def _check(self, key: str, src: ObjectInfo, checks: Sequence[Check]) -> None:
        """Worker thread: settle HASH verdicts; the source md5 is found once for all."""
        try:
            src_now = self._source_with_md5(key, src)
        except Exception as exc:
            for dest, _ in checks:
                dest.fail_or_stop(key, exc, op="verify")
            return
        for dest, dst_info in checks:
            if src_now is None:  # deleted at the source since it was listed
                dest.count_done(key, Outcome.MISSING)
                continue
            try:
                if self._identical(key, src_now, dest, dst_info):
                    dest.count_done(key, Outcome.SKIPPED)
                else:
                    self._differs(key, src_now, dest)
            except Exception as exc:
                dest.fail_or_stop(key, exc, op="verify")

    def _differs(self, key: str, src: ObjectInfo, dest: Destination) -> None:
        raise NotImplementedError

    def _source_with_md5(self, key: str, info: ObjectInfo) -> ObjectInfo | None:
        """``info`` with its md5 known (a HEAD's ``s3s3-md5``, else read); None if the
        object is gone."""
        src = self.src
        try:
            now = info if info.known_md5 else self._head(src, key, self._src_policy)
            if now is not None and now.known_md5 is None:
                md5 = self._retried(
                    functools.partial(md5_of_object, src, key),
                    policy=self._src_policy,
                    what=f"read {key!r} at [{src.name}] for its md5",
                )
                now = dataclasses.replace(now, md5=md5)
        except SourceKeyMissing:
            return None
        return now

    def _identical(
        self, key: str, src_now: ObjectInfo, dest: Destination, dst_info: ObjectInfo
    ) -> bool:
        """:func:`plan.decide` with ``verify_md5``, reading the destination only when the
        md5 a HEAD finds is not enough."""
        dst = dest.endpoint
        dst_now = dst_info if dst_info.known_md5 else self._head(dst, key, dest.policy)
        verdict = decide(src_now, dst_now, verify_md5=True)
        if verdict is Verdict.HASH and dst_now is not None:
            dst_md5 = dst_now.known_md5 or self._retried(
                functools.partial(md5_of_object, dst, key),
                policy=dest.policy,
                what=f"read {key!r} at [{dst.name}] for its md5",
            )
            return src_now.known_md5 == dst_md5
        return verdict is Verdict.SKIP

    def _head(self, endpoint: Endpoint, key: str, policy: retry.Policy) -> ObjectInfo | None:
        return self._retried(
            functools.partial(endpoint.head, key),
            policy=policy,
            what=f"head {key!r} at [{endpoint.name}]",
        )


class CopySink(_CheckingSink):
    """Copies each key here, one worker item per key and destination.

    ``copier`` is :func:`s3s3.transfer.copy_object` unless a test gives another with its
    signature. Each copy is retried under the destination's policy; a copy still running
    when the pool gives up (``abandon``) is cancelled and aborts its multipart upload.
    """

    def __init__(self, *, copier: Copier = copy_object) -> None:
        self.copier = copier
        # A copier a test gives copies destination by destination, so it sees every copy.
        self.fans_out = copier is copy_object

    def take(
        self, key: str, src: ObjectInfo, copies: Sequence[Copy], checks: Sequence[Check]
    ) -> None:
        if len(copies) > 1 and self.fans_out and self.src.cfg.fanout_buffer_bytes:
            self.pool.submit(self._copy_all, key, src, [dest for dest, _ in copies])
        else:
            for dest, _ in copies:
                self.pool.submit(self._copy, key, src, dest)
        if checks:
            self.pool.submit(self._check, key, src, checks)

    def _copy_all(self, key: str, src: ObjectInfo, dests: Sequence[Destination]) -> None:
        """Worker thread: copy one key to several destinations over one read of the source
        (:mod:`s3s3.fanout`); a destination whose copy failed and may succeed later goes on
        retrying alone, its shared try counted as its first."""
        started = time.monotonic()
        results = copy_to_all(
            self.src,
            [dest.endpoint for dest in dests],
            key,
            force=True,
            src_info=src,
            cancel=self.pool.abandon,
        )
        for dest, result in zip(dests, results, strict=True):
            if isinstance(result, CopyResult):
                _count(dest, result)
                continue
            if not is_retryable(result) or self.pool.abandon.is_set():
                dest.fail_or_stop(key, result, op="copy")
                continue
            self._copy(key, src, dest, failed=(result, started))

    def _copy(
        self,
        key: str,
        src: ObjectInfo,
        dest: Destination,
        *,
        failed: tuple[BaseException, float] | None = None,
    ) -> None:
        """Worker thread: copy one key to one destination (after a ``failed`` first try,
        as :func:`retry.call` takes it)."""
        try:
            result = self._copied(key, src, dest, failed=failed)
        except Exception as exc:
            dest.fail_or_stop(key, exc, op="copy")
        else:
            _count(dest, result)

    def _differs(self, key: str, src: ObjectInfo, dest: Destination) -> None:
        _count(dest, self._copied(key, src, dest))

    def _copied(
        self,
        key: str,
        src: ObjectInfo,
        dest: Destination,
        *,
        failed: tuple[BaseException, float] | None = None,
    ) -> CopyResult:
        dst = dest.endpoint
        return self._retried(
            functools.partial(
                self.copier, self.src, dst, key, force=True, src_info=src, cancel=self.pool.abandon
            ),
            policy=dest.policy,
            what=f"copy {key!r} to [{dst.name}]",
            failed=failed,
        )


def _count(dest: Destination, result: CopyResult) -> None:
    # Outcome() takes the member or its value: a copier may still hand back the plain
    # string (transfer's multipart path did), and ``is`` compares members only.
    dest.count_done(result.key, Outcome(result.outcome), size=result.size)


class DryRunSink(_CheckingSink):
    """Reports what a run would do, one line per action, through ``on_plan``; writes
    nothing. ``on_plan`` is called from worker threads too (for keys settled by reading),
    so it must be safe to call from several threads at once."""

    def __init__(self, on_plan: Callable[[str], None] = log_plan) -> None:
        self.on_plan = on_plan

    def take(
        self, key: str, src: ObjectInfo, copies: Sequence[Copy], checks: Sequence[Check]
    ) -> None:
        for dest, dst_info in copies:
            self._would_copy(key, src, dest, reason(Action.COPY, src, dst_info))
        if checks:
            self.pool.submit(self._check, key, src, checks)

    def delete(self, dest: Destination, keys: list[str]) -> None:
        for key in keys:
            self.on_plan(f"delete [{dest.name}] {printable(key)} (not in the source)")
        dest.count_deleted(len(keys))

    def _differs(self, key: str, src: ObjectInfo, dest: Destination) -> None:
        self._would_copy(key, src, dest, "md5 differs, found by reading")

    def _would_copy(self, key: str, src: ObjectInfo, dest: Destination, why: str) -> None:
        self.on_plan(f"copy [{dest.name}] {printable(key)} ({why})")
        dest.count_done(key, Outcome.COPIED, size=src.size)


class EnqueueSink(_PoolSink):
    """Adds one stream entry per key to copy or check (``{key, op: copy}``), in batches of
    :data:`ENQUEUE_BATCH`; the listeners compare and copy. Deletions are made here."""

    def __init__(self, redis_client: redis.Redis, redis_cfg: RedisConfig) -> None:
        self.redis = redis_client
        self.redis_cfg = redis_cfg
        self.entries: list[dict[str, str]] = []  # waiting for a pipeline

    def open(self, src: Endpoint, pool: WorkPool) -> None:
        super().open(src, pool)
        # redis-py is imported only where Redis is used: it is a tenth of a second of
        # start-up, which a run with a local lock and no --enqueue need not pay.
        from redis import RedisError

        try:
            self.redis.ping()
        except RedisError as exc:
            raise S3S3Error(
                f"cannot enqueue: Redis at {self.redis_cfg.safe_url} does not answer: {exc}"
            ) from exc

    def take(
        self, key: str, src: ObjectInfo, copies: Sequence[Copy], checks: Sequence[Check]
    ) -> None:
        self.entries.append({"key": key, "op": COPY})
        for dest, _ in copies:
            dest.count_enqueued()
        for dest, _ in checks:
            dest.count_enqueued()
        if len(self.entries) >= ENQUEUE_BATCH:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
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
