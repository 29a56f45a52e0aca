"""The Store protocol, and the plain values a store answers with.

A :class:`Store` is one bucket on one S3 server. It speaks model types (``ObjectInfo``,
``UploadInfo``) and the small values here, never botocore's response dicts; every failure is
an error of the tree (``s3s3.errors``), whose ``retryable`` says whether trying again may
help. A store tries each operation once: the owner of an operation (a key's copy, a listing
page, a delete batch) retries it through ``s3s3.retry``.

Also here, because both stores page the same way: :func:`page_of` and :func:`upload_page_of`
(a listing answer in botocore's shape, which the lean parser reproduces, as a page) and
:func:`iter_uploads`, the upload listing's pager. Nothing here does I/O of its own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from s3s3 import retry
from s3s3.model import ObjectInfo, UploadInfo, VersionInfo, clean_etag

if TYPE_CHECKING:
    from s3s3.config import EndpointConfig
    from s3s3.errors import EndpointError

log = logging.getLogger(__name__)

#: The headers a copy carries from the source's GET to the destination's PUT, as sent on the
#: wire (user metadata, ``x-amz-meta-*``, besides).
CARRIED_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Content-Disposition",
    "Content-Language",
    "Cache-Control",
    "Expires",
)
META_PREFIX = "x-amz-meta-"


@dataclass(frozen=True)
class ContentHeaders:
    """What a copy carries from the source object to the destination: the content headers
    of :data:`CARRIED_HEADERS` and the user metadata.

    ``fields`` maps each header's wire name (``Content-Type``…, and ``x-amz-meta-NAME`` with
    NAME lower-case) to its value as the source sent it. A store reads it once on a GET and
    writes it once on a PUT; nothing translates it in between.
    """

    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def metadata(self) -> dict[str, str]:
        """The user metadata, by name (without ``x-amz-meta-``)."""
        cut = len(META_PREFIX)
        return {name[cut:]: v for name, v in self.fields.items() if name.startswith(META_PREFIX)}

    def with_metadata(self, name: str, value: str) -> ContentHeaders:
        """These headers, and user metadata ``name`` (lower-case) set to ``value``."""
        return ContentHeaders({**self.fields, META_PREFIX + name.lower(): value})


NO_HEADERS = ContentHeaders()


class Body(Protocol):
    """A GET's streamed body: read it (errors are the tree's), then close it."""

    def read(self, amt: int | None = None) -> bytes: ...

    def close(self) -> None: ...


class Readable(Protocol):
    """What a streamed PUT reads its body from."""

    def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class ObjectStream:
    """A GET's answer: what the object is, the headers to carry, and its body to read.

    Close it (or use it as a context manager) once read: that frees its connection.
    """

    info: ObjectInfo
    headers: ContentHeaders
    body: Body

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.body.close()


@dataclass(frozen=True)
class Page:
    """One page of an object listing, in the server's (UTF-8 byte) key order.

    ``next_marker`` is what the next page starts from, as the server gave it: the V2
    continuation token, or the V1 NextMarker (None when the server sent none: V1 without a
    delimiter, where the last key is the marker).
    """

    objects: list[ObjectInfo]
    truncated: bool = False
    next_marker: str | None = None


@dataclass(frozen=True)
class VersionPage:
    """One page of ListObjectVersions: versions and delete markers in the server's order
    (by key, and within a key newest first), with the markers of the next page ("" when
    not sent)."""

    versions: list[VersionInfo]
    truncated: bool = False
    next_key_marker: str = ""
    next_version_id_marker: str = ""


#: What :meth:`Store.versioning` answers for a bucket whose versioning was never set.
VERSIONING_NEVER = ""


@dataclass(frozen=True)
class UploadPage:
    """One page of ListMultipartUploads, with the markers of the next ("" when not sent)."""

    uploads: list[UploadInfo]
    truncated: bool = False
    next_key_marker: str = ""
    next_upload_id_marker: str = ""


@dataclass(frozen=True)
class Part:
    """One uploaded part: its number and the ETag the server gave it, as it gave it (and
    its size, where ListParts said; 0 when unknown)."""

    number: int
    etag: str
    size: int = 0


def content_range_size(value: str | None) -> int | None:
    """The whole object's size from a Content-Range header (``bytes 0-9/123``), or None."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def range_header(start: int, end: int | None) -> str | None:
    """The Range header of bytes ``start`` to ``end`` (inclusive; None: to the end), or
    None for the whole object."""
    if start == 0 and end is None:
        return None
    return f"bytes={start}-" + ("" if end is None else str(end))


#: What :meth:`Store.delete_many` answers: each key that was not deleted, with its error
#: (``retryable`` says whether deleting it again may succeed). Empty: every key is gone.
DeleteFailures = dict[str, "EndpointError"]


class Store(Protocol):
    """One bucket on one S3 server, in model types.

    Every method tries once and raises an error of the tree. ``get`` raises
    :class:`~s3s3.errors.SourceKeyMissing` for a missing key; ``head`` answers None.
    """

    @property
    def cfg(self) -> EndpointConfig: ...

    @property
    def name(self) -> str: ...

    @property
    def bucket(self) -> str: ...

    def check_bucket(self) -> None:
        """Fail fast, with a fatal error, on bad credentials or a missing bucket."""

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        """Size, ETag and s3s3 md5 of ``key`` (of that version, with ``version_id``), or
        None when it does not exist."""

    def get(
        self,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ObjectStream:
        """``key``'s body to stream, with what it is and the headers a copy carries.

        ``start``/``end`` (inclusive) ask for those bytes only (a ranged GET); the
        ``ObjectInfo`` still gives the whole object's size. With ``if_match`` (an ETag) a
        different version answers :class:`~s3s3.errors.SourceChanged`. With ``version_id``
        that version is read, not the latest."""

    def put(
        self,
        key: str,
        body: bytes | Readable,
        *,
        size: int,
        headers: ContentHeaders = NO_HEADERS,
        md5: str | None = None,
    ) -> str:
        """Write ``key`` from ``body`` (bytes, or ``size`` bytes read from a stream); with
        ``md5`` (hex) the server checks the bytes against it. Answers the ETag (cleaned)."""

    def create_upload(self, key: str, *, headers: ContentHeaders = NO_HEADERS) -> str:
        """Start a multipart upload of ``key``; answers its upload ID."""

    def upload_part(
        self, key: str, upload_id: str, *, number: int, body: Readable, size: int
    ) -> Part:
        """Send part ``number`` (``size`` bytes read from ``body``)."""

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> str:
        """Complete the upload from ``parts``; answers the object's ETag (cleaned; may be
        empty, as Ceph answers)."""

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort an upload; its parts are freed."""

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """The parts already uploaded, with their ETags and sizes, in number order (pages
        retried each); :class:`~s3s3.errors.EndpointError` with code ``NoSuchUpload`` when
        the upload is gone."""

    def replace_metadata(self, key: str, *, headers: ContentHeaders, if_match: str | None) -> str:
        """Rewrite ``key``'s content headers and metadata to ``headers`` (a CopyObject onto
        itself, ``MetadataDirective=REPLACE``; objects up to 5 GiB), with ``if_match`` only
        if it is still that version. Answers the new ETag (cleaned; may be empty)."""

    def list_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        marker: str | None = None,
        start_after: str | None = None,
    ) -> Page:
        """One listing page after ``marker`` (ListObjectsV2, or V1 where ``list_version =
        1``). ``start_after`` starts a listing after that key (V2 StartAfter, V1 Marker): the
        first page of a range of the key space; ``marker`` wins when both are given."""

    def list_uploads(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[UploadInfo]:
        """Every multipart upload in progress under ``prefix`` (pages retried each)."""

    def list_versions_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        key_marker: str | None = None,
        version_id_marker: str | None = None,
    ) -> VersionPage:
        """One ListObjectVersions page after ``key_marker`` (and, within that key, after
        ``version_id_marker``)."""

    def versioning(self) -> str:
        """The bucket's versioning status: ``"Enabled"``, ``"Suspended"`` or
        :data:`VERSIONING_NEVER`; :class:`~s3s3.errors.FatalEndpointError` with code
        ``NotImplemented`` where the server has no versioning."""

    def delete(self, key: str) -> None:
        """Delete ``key`` (deleting a missing key succeeds, as S3 answers it)."""

    def delete_many(self, keys: Sequence[str]) -> DeleteFailures:
        """Delete up to 1,000 keys in one request where the server can; the keys that
        were not deleted, with their errors."""


# --------------------------------------------------------------------------- pages


def page_of(resp: Mapping, *, v1: bool) -> Page:
    """A ListObjects (``v1``) or ListObjectsV2 answer, in botocore's shape, as a :class:`Page`."""
    objects = [
        ObjectInfo(
            key=item["Key"],
            size=int(item.get("Size") or 0),
            etag=clean_etag(item.get("ETag")),
            last_modified=item.get("LastModified"),
        )
        for item in resp.get("Contents") or ()
    ]
    marker = resp.get("NextMarker" if v1 else "NextContinuationToken")
    return Page(objects, bool(resp.get("IsTruncated")), marker or None)


def version_page_of(resp: Mapping) -> VersionPage:
    """A ListObjectVersions answer, in botocore's shape, as a :class:`VersionPage`.

    botocore parts the answer into ``Versions`` and ``DeleteMarkers``; the lean parser keeps
    the server's order in ``Entries`` as well, which is read first. Without it the two lists
    are merged back by key and LastModified (newest first), a version before a marker of
    the same instant.
    """
    entries = resp.get("Entries")
    if entries is None:
        tagged = [(False, item) for item in resp.get("Versions") or ()] + [
            (True, item) for item in resp.get("DeleteMarkers") or ()
        ]
        # Stable: entries of one list, of one key and instant, keep the server's order.
        tagged.sort(
            key=lambda t: (
                t[1].get("Key", "").encode("utf-8"),
                -_modified_key(t[1].get("LastModified")),
                t[0],
            )
        )
        entries = [{**item, "_marker": marker} for marker, item in tagged]
    versions = [
        VersionInfo(
            key=item.get("Key", ""),
            version_id=str(item.get("VersionId") or "null"),
            delete_marker=bool(item.get("_marker")),
            size=int(item.get("Size") or 0),
            etag=clean_etag(item.get("ETag")),
            last_modified=item.get("LastModified"),
            is_latest=bool(item.get("IsLatest")),
        )
        for item in entries
    ]
    return VersionPage(
        versions,
        bool(resp.get("IsTruncated")),
        resp.get("NextKeyMarker") or "",
        resp.get("NextVersionIdMarker") or "",
    )


def _modified_key(value) -> float:
    return value.timestamp() if value is not None else 0.0


def upload_page_of(resp: Mapping) -> UploadPage:
    """A ListMultipartUploads answer, in botocore's shape, as an :class:`UploadPage`."""
    uploads = [
        UploadInfo(
            key=item.get("Key", ""),
            upload_id=item.get("UploadId", ""),
            initiator=str((item.get("Initiator") or {}).get("ID") or ""),
            initiated=item.get("Initiated"),
        )
        for item in resp.get("Uploads") or ()
    ]
    return UploadPage(
        uploads,
        bool(resp.get("IsTruncated")),
        resp.get("NextKeyMarker") or "",
        resp.get("NextUploadIdMarker") or "",
    )


def iter_uploads(
    fetch: Callable[..., UploadPage],
    *,
    name: str,
    policy: retry.Policy,
    what: str,
) -> Iterator[UploadInfo]:
    """Every upload, page by page: ``fetch(key_marker=, upload_id_marker=)`` is one page,
    retried through ``policy`` (the listing owns its pages; nothing below retries).

    Pages follow NextKeyMarker/NextUploadIdMarker; where a truncated page leaves them empty
    (Swift 2.30 does, with small pages) the last upload listed gives them. A page that would
    not move the markers on ends the listing rather than loop.
    """
    markers: tuple[str | None, str | None] = (None, None)
    while True:
        page = retry.call(
            functools.partial(fetch, key_marker=markers[0], upload_id_marker=markers[1]),
            policy=policy,
            what=what,
        )
        yield from page.uploads
        if not page.truncated or not page.uploads:
            return
        last = page.uploads[-1]
        following = (
            page.next_key_marker or last.key,
            page.next_upload_id_marker or last.upload_id,
        )
        if following == markers:
            log.warning(
                "[%s] ListMultipartUploads does not page on past %r; listing stops there",
                name,
                following[0],
            )
            return
        markers = following
