"""Plain data that every room passes around: what an object is, what to do with a key, and
what became of it. No I/O here, and no import of boto3, botocore or redis.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

#: The user metadata (``x-amz-meta-s3s3-md5``) where s3s3 keeps the md5 of a copy whose ETag
#: is not one (multipart).
MD5_META = "s3s3-md5"

#: The user metadata (``x-amz-meta-s3s3-source-version-id``) where a copy of one version of
#: a versioned source keeps the source's version id: destinations give versions ids of
#: their own, so this is what says which source version a destination version copies.
SOURCE_VERSION_META = "s3s3-source-version-id"

COPY = "copy"
DELETE = "delete"
OPS = (COPY, DELETE)


class Outcome(str, enum.Enum):
    """What became of one key (at one destination, or of one job over all of them).

    A ``str`` so that it reads as its value in logs, JSON and Redis markers.
    """

    COPIED = "copied"
    SKIPPED = "skipped"  # the destination already held the same bytes
    MISSING = "missing"  # no such key at the source (deleted since it was announced)
    DELETED = "deleted"
    IGNORED = "ignored"  # a delete that the configuration does not apply
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a HEAD says about one object."""

    key: str
    size: int
    etag: str = ""
    last_modified: datetime | None = None
    md5: str | None = field(default=None)  # s3s3-md5 metadata, when a HEAD has read it
    # s3s3-source-version-id metadata, when a HEAD has read it: the source version this
    # object copies (a destination of a versioned source).
    source_version_id: str | None = None

    @property
    def etag_md5(self) -> str | None:
        """The ETag when it is an md5 of the bytes, else None."""
        return self.etag if etag_is_md5(self.etag) else None

    @property
    def known_md5(self) -> str | None:
        return self.etag_md5 or self.md5


@dataclass(frozen=True)
class VersionInfo:
    """One entry of ListObjectVersions: a version of a key, or a delete marker.

    ``version_id`` is the server's (``"null"`` for an object written before versioning was
    enabled); a delete marker has no size or ETag.
    """

    key: str
    version_id: str
    delete_marker: bool = False
    size: int = 0
    etag: str = ""
    last_modified: datetime | None = None
    is_latest: bool = False

    @property
    def fingerprint(self) -> tuple[str, int] | None:
        """What two versions must share to hold the same bytes (ETag and size); None for
        a delete marker."""
        return None if self.delete_marker else (self.etag, self.size)


@dataclass(frozen=True)
class UploadInfo:
    """One multipart upload in progress, as ListMultipartUploads lists it."""

    key: str
    upload_id: str
    initiator: str = ""  # the Initiator's ID (Ceph 16.2 lists the requester's, see transfer)
    initiated: datetime | None = None


def etag_is_md5(etag: str | None) -> bool:
    """An ETag is an md5 only when it is 32 hex digits (no ``-N`` multipart suffix).

    SSE-KMS and SSE-C objects also have non-md5 ETags of this form; s3s3 copies neither.
    """
    if not etag or len(etag) != 32:
        return False
    try:
        int(etag, 16)
    except ValueError:
        return False
    return True


def clean_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"').lower()


@dataclass(frozen=True)
class CopyResult:
    """What happened to one key at one destination."""

    key: str
    destination: str
    outcome: Outcome  # COPIED, SKIPPED or MISSING (no such key at the source)
    size: int = 0
    md5: str | None = None
    parts: int = 0
    duration_s: float = 0.0
    bytes_read: int = 0


#: The largest work message read (a pub/sub message, a stream field, an HTTP or AMQP body):
#: far above any real event notification (AWS documents ~1-2 KiB per record). It also
#: bounds the records per message: 10,000 minimal records do not fit.
MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True)
class WorkItem:
    """One thing to do: bring ``key`` at the destinations in line with the source."""

    op: str  # COPY | DELETE
    key: str
    bucket: str | None = None  # the bucket an event named, when it named one
    event: str | None = None  # the event name, for logs
    # Where this event stands among the events for its key: a larger number is a later
    # operation (from the event's ``sequencer``); None when the sender gave no order.
    sequence: int | None = None
    # When the store did the operation (seconds since the epoch), when the event says.
    event_time: float | None = None
    # The sender redelivers (a store's push): compare with the destination before copying,
    # since a duplicate of an event already applied is likely.
    compare: bool = False
    # The version the event names (``s3.object.versionId``), on a versioned source.
    version_id: str | None = None


#: The ``op`` of a stream entry that asks for a range of keys, not one key.
RANGE = "range"


@dataclass(frozen=True)
class RangeWork:
    """One range of a ranged reconcile (``s3s3bucket --enqueue --ranges``): make every
    destination named hold what the source holds for the keys ``k`` under ``prefix`` with
    ``start_after < k <= end`` (``None``: that side open), as the bucket job would.

    The options are the run's, carried by the entry so that a listener needs nothing else.
    ``destinations`` names the sections the run was made for; empty means all of them.
    """

    run_id: str
    index: int
    start_after: str | None = None
    end: str | None = None
    prefix: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    size_only: bool = False
    verify_md5: bool = False
    destinations: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """What names this work in logs, where a key would be."""
        return f"range {self.index} of run {self.run_id}"
