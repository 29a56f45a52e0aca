"""Deleting destination-only keys: the spool that remembers them while the listing runs, the
``max_delete_fraction`` guard, and the DeleteObjects batches.

Deletion starts only after the listing is complete, so the share of the destination the
doomed keys represent is known: above ``max_delete_fraction`` nothing is deleted and the
destination is reported as refused. Keys go in DeleteObjects batches of 1,000, or one
DeleteObject per key where DeleteObjects is not implemented; each request is retried under
the destination's policy (:mod:`s3s3.retry`). What happens to a batch (deleted, or only
reported in a dry run) is the sink's choice; this module never prints.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING

from s3s3 import retry
from s3s3.errors import EndpointError, is_retryable
from s3s3.store.endpoint import Endpoint

if TYPE_CHECKING:
    from s3s3.bucketjob.destination import Destination

log = logging.getLogger(__name__)

#: Keys per DeleteObjects request (the S3 maximum).
DELETE_BATCH = 1000
#: Bytes of doomed keys kept in memory before the spool moves to a temporary file.
SPOOL_MEMORY_BYTES = 8 << 20


class DeletionSpool:
    """Keys to delete at one destination, in listing order; on disk past a few MiB (so a
    whole stale bucket fits)."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: str) -> None:
        if self._file is None:
            self._file = tempfile.SpooledTemporaryFile(
                max_size=SPOOL_MEMORY_BYTES, mode="w+", encoding="utf-8"
            )
        # JSON keeps keys with newlines or any other character on one line.
        self._file.write(json.dumps(key) + "\n")
        self._count += 1

    def keys(self) -> Iterator[str]:
        """The keys added, from the first."""
        if self._file is None:
            return
        self._file.seek(0)
        for line in self._file:
            yield json.loads(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def delete_extras(
    dests: Sequence[Destination],
    *,
    max_delete_fraction: float,
    stop: threading.Event,
    delete: Callable[[Destination, list[str]], None],
) -> bool:
    """Hand each destination's doomed keys to ``delete`` in batches, where the share of the
    destination they represent is within ``max_delete_fraction``; a destination above it
    is marked refused and loses nothing.

    Broken destinations are left alone (what their listing did not show might be in the
    source). Returns False when ``stop`` was set before every batch was handed over.
    """
    for dest in dests:
        spool = dest.doomed
        if not spool or dest.broken:
            continue
        count, total = len(spool), dest.present
        if count > max_delete_fraction * total:
            dest.summary.delete_refused = True
            dest.summary.error = (
                f"refusing to delete {count} of the {total} keys in scope "
                f"(more than max_delete_fraction = {max_delete_fraction:g}); nothing was "
                "deleted. Check the source bucket and the prefix, or raise "
                "max_delete_fraction in [bucket]"
            )
            continue
        batch: list[str] = []
        for key in spool.keys():
            if stop.is_set():
                return False
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                delete(dest, batch)
                batch = []
        if batch:
            delete(dest, batch)
    return True


def delete_batch(dest: Destination, keys: list[str], *, cancel: threading.Event | None) -> None:
    """Worker thread: delete ``keys`` at ``dest`` and count what became of each.

    One DeleteObjects request, retried; where the destination answers that it does not
    implement it, one DeleteObject per key from then on. A failure that concerns the
    whole endpoint is raised (the pool stops the run); any other counts against its keys.
    """
    endpoint, policy = dest.endpoint, dest.policy
    if not dest.one_by_one:
        try:
            errors = retry.call(
                functools.partial(_delete_objects, endpoint, keys),
                policy=policy,
                what=f"delete {len(keys)} keys at [{endpoint.name}]",
                retryable=_worth_retrying,
                cancel=cancel,
            )
        except EndpointError as exc:
            if not _not_implemented(exc):
                for key in keys:
                    dest.fail_or_stop(key, "delete", exc)
                return
            log.warning(
                "[%s] does not implement DeleteObjects; deleting one key per request",
                endpoint.name,
            )
            dest.one_by_one = True
        else:
            for key, code, message in errors:
                dest.count_failed(
                    key,
                    "delete",
                    EndpointError(
                        f"{code}: {message}",
                        op="DeleteObjects",
                        endpoint=endpoint.name,
                        bucket=endpoint.bucket,
                        key=key,
                        code=code,
                    ),
                )
            dest.count_deleted(len(keys) - len(errors))
            return
    for key in keys:
        try:
            retry.call(
                functools.partial(endpoint.delete, key),
                policy=policy,
                what=f"delete {key!r} at [{endpoint.name}]",
                cancel=cancel,
            )
        except EndpointError as exc:
            dest.fail_or_stop(key, "delete", exc)
        else:
            dest.count_deleted(1)


def _delete_objects(endpoint: Endpoint, keys: list[str]) -> list[tuple[str, str, str]]:
    """One DeleteObjects request (quiet: only failures are listed); the keys it could not
    delete, with the error code and message of each."""
    resp = endpoint.call(
        "DeleteObjects", Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
    )
    return [
        (err.get("Key", "?"), err.get("Code"), err.get("Message"))
        for err in resp.get("Errors") or []
    ]


def _not_implemented(exc: EndpointError) -> bool:
    return exc.code == "NotImplemented" or exc.status == 501


def _worth_retrying(exc: BaseException) -> bool:
    # A 501 is an answer, not an outage: the fallback to DeleteObject takes it at once.
    return is_retryable(exc) and not (isinstance(exc, EndpointError) and _not_implemented(exc))
