"""Deleting destination-only keys: the spool that remembers them while the listing runs, the
``max_delete_fraction`` guard, and the DeleteObjects batches.

Deletion starts only after the listing is complete, so the share of the destination the
doomed keys represent is known: above ``max_delete_fraction`` nothing is deleted and the
destination is reported as refused. Keys go in DeleteObjects batches of 1,000
(:meth:`Store.delete_many`, which falls back to one DeleteObject per key where
DeleteObjects is not implemented); each batch is retried under the destination's policy
(:mod:`s3s3.retry`). What happens to a batch (deleted, or only reported in a dry run) is
the sink's choice; this module never prints.
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING

from s3s3 import retry
from s3s3.errors import EndpointError

if TYPE_CHECKING:
    from s3s3.bucketjob.destination import Destination

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

    One :meth:`Store.delete_many` request, retried under the destination's policy (the
    store falls back to one DeleteObject per key where DeleteObjects is not implemented).
    A failure that concerns the whole endpoint is raised (the pool stops the run); any
    other counts against its keys.
    """
    endpoint = dest.endpoint
    try:
        failures = retry.call(
            functools.partial(endpoint.delete_many, keys),
            policy=dest.policy,
            what=f"delete {len(keys)} keys at [{endpoint.name}]",
            cancel=cancel,
        )
    except EndpointError as exc:
        for key in keys:
            dest.fail_or_stop(key, exc, op="delete")
        return
    for key, failure in failures.items():
        dest.fail_or_stop(key, failure, op="delete")
    dest.count_deleted(len(keys) - len(failures))
