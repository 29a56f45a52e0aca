"""One destination of a bucket-job run, as one object: its endpoint, how it is compared, its
summary counters and failures, the keys it is to lose, and whether it broke off.

The counting methods are called from the main thread and the worker threads alike; they
hold the destination's lock. This module decides which failures concern the whole
endpoint (and so stop the run) and which count against one key; it does no I/O.
"""

from __future__ import annotations

import logging
import threading
import time

from s3s3 import retry
from s3s3.bucketjob.deletion import DeletionSpool
from s3s3.bucketjob.summary import DestinationSummary, Failure
from s3s3.errors import FatalEndpointError
from s3s3.model import Outcome
from s3s3.plan import Strategy
from s3s3.store.endpoint import Endpoint

log = logging.getLogger(__name__)

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


def concerns_whole_endpoint(exc: BaseException) -> bool:
    """Whether ``exc`` makes every request to its endpoint fail (credentials, bucket), as
    opposed to one key's (AccessDenied on that key, say)."""
    return isinstance(exc, FatalEndpointError) and exc.code in ENDPOINT_WIDE_CODES


class Destination:
    """The state one run keeps for one destination bucket."""

    def __init__(self, endpoint: Endpoint, *, strategy: Strategy) -> None:
        self.endpoint = endpoint
        self.strategy = strategy
        self.policy = retry.Policy.for_endpoint(endpoint.cfg)  # for each of its operations
        self.summary = DestinationSummary(endpoint.name, endpoint.bucket)
        self.broken = False  # unreachable, or its listing failed: its keys count as failed
        self.present = 0  # destination keys in scope, for the deletion limit
        self.doomed = DeletionSpool()  # destination-only keys to delete once listed
        self.last_done = 0.0  # time.monotonic() of its last finished item
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Destination({self.endpoint!r})"

    @property
    def name(self) -> str:
        return self.endpoint.name

    # ---------------------------------------------------------------- counting

    def count_skipped(self) -> None:
        """A key the listings showed identical."""
        with self._lock:
            self.summary.skipped += 1

    def count_done(self, key: str, outcome: Outcome, *, size: int = 0) -> None:
        """A key settled by a worker: copied (``size`` bytes), or found identical or gone
        from the source since it was listed (both count as skipped)."""
        with self._lock:
            if outcome is Outcome.COPIED:
                self.summary.copied += 1
                self.summary.bytes_copied += size
            else:
                self.summary.skipped += 1
            self.last_done = time.monotonic()
        log.debug(
            "%s %r to [%s] (%d bytes)",
            outcome,
            key,
            self.name,
            size,
            extra={
                "key": key,
                "destination": self.name,
                "outcome": outcome.value,
                "bytes": size if outcome is Outcome.COPIED else 0,
                "size": size,
            },
        )

    def count_versions(self, key: str, *, copied: int, markers: int, size: int) -> None:
        """A key of a versioned run whose history was replayed: ``copied`` versions
        (``size`` bytes) and ``markers`` delete markers written. The key counts once in
        ``copied``."""
        with self._lock:
            self.summary.copied += 1
            self.summary.versions_copied += copied
            self.summary.markers_written += markers
            self.summary.bytes_copied += size
            self.last_done = time.monotonic()
        log.debug(
            "replayed %r to [%s]: %d versions, %d delete markers (%d bytes)",
            key,
            self.name,
            copied,
            markers,
            size,
            extra={
                "key": key,
                "destination": self.name,
                "outcome": "copied",
                "versions": copied,
                "delete_markers": markers,
                "bytes": size,
            },
        )

    def count_enqueued(self) -> None:
        with self._lock:
            self.summary.enqueued += 1

    def count_deleted(self, count: int) -> None:
        with self._lock:
            self.summary.deleted += count
            self.last_done = time.monotonic()

    def count_unreachable(self) -> None:
        """A source key that cannot reach this destination, which broke off."""
        with self._lock:
            self.summary.failed += 1

    def count_failed(self, key: str, exc: BaseException, *, op: str) -> None:
        """``op`` (copy, verify, delete) of ``key`` failed with ``exc``: logged and kept."""
        dest = self.summary
        with self._lock:
            dest.failed += 1
            if len(dest.failures) < MAX_FAILURES_KEPT:
                dest.failures.append(Failure(key, op, str(exc)))
            self.last_done = time.monotonic()
        log.error(
            "%s %r to [%s] s3://%s failed: %s",
            op,
            key,
            dest.name,
            dest.bucket,
            exc,
            extra={
                "key": key,
                "destination": dest.name,
                "op": op,
                "outcome": "failed",
                "error": f"{type(exc).__name__}: {exc}",
            },
        )

    def fail_or_stop(self, key: str, exc: BaseException, *, op: str) -> None:
        """Count ``exc`` as a failure of ``key``, unless it concerns the whole endpoint:
        then raise it, and the worker pool stops the run."""
        if concerns_whole_endpoint(exc):
            raise exc
        self.count_failed(key, exc, op=op)

    def mark_broken(self, why: str) -> None:
        """The destination as a whole failed: every key of the run counts as failed there."""
        self.broken = True
        dest = self.summary
        dest.error = f"{why}; every key of this run is counted as failed there"
        log.error("[%s] s3://%s %s", dest.name, dest.bucket, dest.error)

    def finish(self, *, started: float, merge_end: float) -> None:
        """Close the books: the time from the start to its last item (or the listing's end)."""
        self.doomed.close()
        self.summary.duration_s = max(self.last_done, merge_end) - started
