"""Copy one key from the source endpoint to one destination, streaming and verified.

The bytes go from the source's GET straight into the destination's PUT (or its parts),
through a reader that counts them and computes their md5 on the way; nothing holds a whole
object. A single streamed PUT of an object whose md5 the source states skips the hashing:
it carries that md5 as Content-MD5, and the destination refuses bytes that differ. Small
objects (up to ``SMALL_OBJECT_BYTES``) are read into memory instead, so the PUT can carry
a Content-MD5 that the server itself checks, at no extra request.

It speaks to both sides through the :class:`~s3s3.store.base.Store` protocol only: the
source's GET hands over an ``ObjectInfo`` and the ``ContentHeaders`` to carry, which the
destination's PUT (or multipart upload) writes as they came. Which transport serves each
call is the store's business (``s3s3.store.endpoint``).

A copy is accepted only when the destination's ETag agrees with the source's md5 where it is
known, and otherwise with the md5 computed while streaming (the part md5s, for multipart).
Otherwise the destination object is deleted and :class:`CorruptedOnTransfer` is raised:
a bad copy is never left looking valid.

A copy can be cancelled through an event (``cancel``), which the reader checks at every
chunk and the multipart loop before each part and before completing: a cancelled or
failed multipart copy aborts its upload, whatever the exception, and raises
:class:`CopyCancelled` when it was cancelled (the reader raises it, so it comes out of a
streamed PUT as itself). Uploads that outlive their process anyway
(kill -9, a copy stuck past the shutdown's wait) are aborted later by
:func:`abort_stale_uploads`, which both scripts run at start-up.

One try: nothing here retries. A failure is raised with its ``retryable`` for the caller
(the bucket job, the listener, ``api.upload``) to retry through ``s3s3.retry``; it does not
loop over keys either.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from s3s3.config import MAX_PART_BYTES, MAX_SINGLE_PUT_BYTES, MiB, verifies_md5
from s3s3.errors import (
    CopyCancelled,
    CorruptedOnTransfer,
    EndpointError,
    ObjectTooLarge,
    ShortRead,
    SourceKeyMissing,
)
from s3s3.model import (
    MD5_META,
    CopyResult,
    ObjectInfo,
    Outcome,
    UploadInfo,
    clean_etag,
    etag_is_md5,
)
from s3s3.plan import Verdict, decide
from s3s3.store.base import Body, ContentHeaders, Part, Store

log = logging.getLogger(__name__)

SMALL_OBJECT_BYTES = 1 * MiB
#: What a server answers when a body does not match its Content-MD5.
DIGEST_REFUSED_CODES = frozenset({"BadDigest", "InvalidDigest"})
MAX_PARTS = 10_000
READ_CHUNK_BYTES = 1 * MiB

#: The key of the upload that asks a server which principal it lists as s3s3's Initiator.
PROBE_KEY_PREFIX = ".s3s3-initiator-probe-"


class HashingReader:
    """A file-like view of at most ``limit`` bytes of ``stream`` that md5s what it passes
    (unless ``hashed`` is False: the destination checks a Content-MD5 instead).

    It raises instead of returning early, so a short source never turns into a short PUT
    that the server would wait on; once ``cancel`` is set it raises
    :class:`CopyCancelled` for the copy of ``key`` from ``src`` to ``dst``, which breaks
    the request off mid-body: the server commits nothing it did not get whole.
    """

    def __init__(
        self,
        stream: Body,
        limit: int,
        *,
        what: str,
        key: str,
        src: str,
        dst: str,
        whole=None,
        hashed: bool = True,
        cancel: threading.Event | None = None,
    ) -> None:
        self._stream = stream
        self._left = limit
        self._what = what
        self._copy = (key, src, dst)
        self.md5 = hashlib.md5() if hashed else None
        self._whole = whole  # the whole object's md5, when this is one part of it
        self._cancel = cancel
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        if self._cancel is not None and self._cancel.is_set():
            key, src, dst = self._copy
            raise CopyCancelled(
                f"cancelled after {self.count} bytes of {self._what}; nothing was written",
                key=key,
                src=src,
                dst=dst,
            )
        # http.client asks for 8-16 KiB; bigger reads cost far less Python per byte.
        want = (
            self._left if size is None or size < 0 else min(max(size, READ_CHUNK_BYTES), self._left)
        )
        data = self._stream.read(want)
        if not data:
            raise ShortRead(
                f"{self._what}: source ended after {self.count} bytes, {self._left} short"
            )
        self._left -= len(data)
        self.count += len(data)
        if self.md5 is not None:
            self.md5.update(data)
        if self._whole is not None:
            self._whole.update(data)
        return data

    def __len__(self) -> int:  # lets botocore size the request without seeking
        return self._left


def part_size_for(size: int, configured: int) -> int:
    """The part size: the configured one, scaled up (to whole MiB) to stay within 10,000 parts."""
    part = max(configured, math.ceil(size / MAX_PARTS))
    part = math.ceil(part / MiB) * MiB
    if part > MAX_PART_BYTES:
        raise ValueError(f"an object of {size} bytes needs parts over 5 GiB")
    return part


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: md5 of the part md5s, then ``-N``."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def md5_of_object(store: Store, key: str) -> str:
    """Read an object and return the hex md5 of its bytes (for ``verify_md5``)."""
    md5 = hashlib.md5()
    with store.get(key) as obj:
        while chunk := obj.body.read(READ_CHUNK_BYTES):
            md5.update(chunk)
    return md5.hexdigest()


def is_identical(
    src: Store,
    dst: Store,
    key: str,
    src_info: ObjectInfo,
    dst_info: ObjectInfo | None,
    *,
    dest_key: str | None = None,
    verify_md5: bool = False,
    size_only: bool = False,
) -> bool:
    """Apply :func:`plan.decide`, reading objects only when it asks for their md5s."""
    verdict = decide(src_info, dst_info, size_only=size_only, verify_md5=verify_md5)
    if verdict is Verdict.HASH and dst_info is not None:
        src_md5 = src_info.known_md5 or md5_of_object(src, key)
        dst_md5 = dst_info.known_md5 or md5_of_object(dst, dest_key or key)
        return src_md5 == dst_md5
    return verdict is Verdict.SKIP


def copy_object(
    src: Store,
    dst: Store,
    key: str,
    *,
    dest_key: str | None = None,
    force: bool = False,
    verify_md5: bool = False,
    src_info: ObjectInfo | None = None,
    cancel: threading.Event | None = None,
) -> CopyResult:
    """Copy ``key`` from ``src`` to ``dst`` (as ``dest_key``) unless it is already there.

    ``force`` copies without looking at the destination. ``src_info``, when the caller has
    it from a listing, saves a HEAD. One try: a failure is raised for the caller to retry
    through :mod:`s3s3.retry` (its ``retryable`` says whether to). Returns ``MISSING`` when
    the source key does not exist. Once ``cancel`` is set the copy stops at the next chunk
    or part, aborts its multipart upload and raises :class:`CopyCancelled` (at once, if it
    is set before the copy starts).
    """
    dest_key = dest_key if dest_key is not None else key
    started = time.monotonic()
    _check_cancel(cancel, src, dst, key)
    if not force:
        dst_info = dst.head(dest_key)
        if dst_info is not None:
            if src_info is None:
                src_info = src.head(key)
                if src_info is None:
                    return CopyResult(key, dst.name, Outcome.MISSING)
            if is_identical(
                src,
                dst,
                key,
                src_info,
                dst_info,
                dest_key=dest_key,
                verify_md5=verifies_md5(src.cfg, dst.cfg, asked=verify_md5),
            ):
                return CopyResult(
                    key,
                    dst.name,
                    Outcome.SKIPPED,
                    size=src_info.size,
                    md5=src_info.known_md5,
                    duration_s=time.monotonic() - started,
                )
    _check_cancel(cancel, src, dst, key)
    try:
        result = _copy_once(src, dst, key, dest_key, cancel=cancel)
    except SourceKeyMissing:
        return CopyResult(key, dst.name, Outcome.MISSING)
    except CopyCancelled:
        raise
    except Exception as exc:
        if cancel is not None and cancel.is_set():
            # Whatever the cancellation looked like on the way out (a request broken off
            # mid-body, a connection closed under the read).
            raise CopyCancelled(
                "cancelled while copying; nothing was written",
                key=key,
                src=src.name,
                dst=dst.name,
            ) from exc
        raise
    return CopyResult(**{**result.__dict__, "duration_s": time.monotonic() - started})


def _check_cancel(cancel: threading.Event | None, src: Store, dst: Store, key: str) -> None:
    if cancel is not None and cancel.is_set():
        raise CopyCancelled(
            "cancelled before it completed; nothing was written",
            key=key,
            src=src.name,
            dst=dst.name,
        )


def _copy_once(
    src: Store, dst: Store, key: str, dest_key: str, *, cancel: threading.Event | None = None
) -> CopyResult:
    with src.get(key) as obj:
        return copy_from(src, dst, key, dest_key, obj.body, obj.info, obj.headers, cancel=cancel)


def copy_from(
    src: Store,
    dst: Store,
    key: str,
    dest_key: str,
    body: Body,
    info: ObjectInfo,
    headers: ContentHeaders,
    *,
    cancel: threading.Event | None = None,
) -> CopyResult:
    """Write ``key`` to ``dst`` (as ``dest_key``) from ``body``, the source's bytes from
    the first on, which ``info`` and ``headers`` describe (a GET's, or a read shared by
    several destinations: :mod:`s3s3.fanout`). Verified as :func:`copy_object` verifies;
    one try; nothing is compared first."""
    size = info.size
    src_md5 = info.known_md5  # the ETag when it is an md5, else s3s3-md5
    cfg = dst.cfg
    if cfg.multipart_enabled and size > cfg.multipart_threshold_bytes:
        return _copy_multipart(src, dst, key, dest_key, body, size, src_md5, headers, cancel=cancel)
    if size > MAX_SINGLE_PUT_BYTES:
        raise ObjectTooLarge(
            f"{size} bytes is over the 5 GiB single-PUT limit and multipart is off for "
            f"[{dst.name}] (multipart_threshold = 0)",
            key=key,
            src=src.name,
            dst=dst.name,
        )
    return _copy_single(src, dst, key, dest_key, body, size, src_md5, headers, cancel=cancel)


def _copy_single(
    src: Store,
    dst: Store,
    key: str,
    dest_key: str,
    body: Body,
    size: int,
    src_md5: str | None,
    headers: ContentHeaders,
    *,
    cancel: threading.Event | None = None,
) -> CopyResult:
    what = f"s3://{src.bucket}/{key}"
    if size <= SMALL_OBJECT_BYTES:
        data = body.read()
        if len(data) != size:
            raise ShortRead(f"{what}: read {len(data)} bytes of {size}")
        got_md5 = hashlib.md5(data).hexdigest()
        _check_source(src, dst, key, got_md5, src_md5)
        put_etag = _put(dst, dest_key, data, size=size, headers=headers, md5=got_md5)
    else:
        # Where the source's md5 is known, the destination checks the bytes it receives
        # against it (Content-MD5) and s3s3 hashes nothing: a GiB of md5 is ~1.5 s of CPU
        # on a machine the server shares. Otherwise the md5 is computed on the way.
        reader = HashingReader(
            body,
            size,
            what=what,
            key=key,
            src=src.name,
            dst=dst.name,
            hashed=src_md5 is None,
            cancel=cancel,
        )
        try:
            put_etag = _put(dst, dest_key, reader, size=size, headers=headers, md5=src_md5)
        except EndpointError as exc:
            if exc.code not in DIGEST_REFUSED_CODES:
                raise
            raise CorruptedOnTransfer(
                f"corrupted on transfer: md5 differs src({src_md5}) vs the bytes "
                f"[{dst.name}] received ({exc.code}); nothing was written",
                key=key,
                src=src.name,
                dst=dst.name,
            ) from exc
        if reader.count != size:
            _discard(dst, dest_key)
            raise CorruptedOnTransfer(
                f"short copy: sent {reader.count} of {size} bytes",
                key=key,
                src=src.name,
                dst=dst.name,
            )
        got_md5 = reader.md5.hexdigest() if reader.md5 is not None else src_md5 or ""
    if put_etag and etag_is_md5(put_etag) and put_etag != got_md5:
        _discard(dst, dest_key)
        raise CorruptedOnTransfer(
            f"corrupted on transfer: md5 differs src({got_md5}) vs "
            f"dst({put_etag}); the destination copy was deleted",
            key=key,
            src=src.name,
            dst=dst.name,
        )
    if not etag_is_md5(put_etag):
        _verify_by_head(dst, dest_key, key, src, size, expected_etag=got_md5)
    return CopyResult(
        key, dst.name, Outcome.COPIED, size=size, md5=got_md5, parts=0, bytes_read=size
    )


def _put(dst: Store, dest_key: str, body, *, size: int, headers: ContentHeaders, md5) -> str:
    try:
        return dst.put(dest_key, body, size=size, headers=headers, md5=md5)
    except SourceKeyMissing as exc:  # a 404 from the destination is not about the source
        raise EndpointError(
            str(exc),
            op="PutObject",
            endpoint=dst.name,
            bucket=dst.bucket,
            key=dest_key,
            code=exc.code,
            status=exc.status,
        ) from exc


def _check_source(src: Store, dst: Store, key: str, got_md5: str, src_md5: str | None) -> None:
    """The bytes read must be the bytes the source says it holds (checked before anything
    is written, or before a multipart upload is completed)."""
    if src_md5 and src_md5 != got_md5:
        raise CorruptedOnTransfer(
            f"corrupted on transfer: md5 differs src({src_md5}) vs read({got_md5})",
            key=key,
            src=src.name,
            dst=dst.name,
        )


def _verify_by_head(
    dst: Store, dest_key: str, key: str, src: Store, size: int, *, expected_etag: str
) -> ObjectInfo | None:
    """For answers without a usable ETag (Ceph's empty CompleteMultipartUpload ETag)."""
    info = dst.head(dest_key)
    problem = None
    if info is None:
        problem = "the object is missing after the upload"
    elif info.size != size:
        problem = f"size differs src({size}) vs dst({info.size})"
    elif info.etag and info.etag != expected_etag:
        problem = f"md5 differs src({expected_etag}) vs dst({info.etag})"
    if problem:
        _discard(dst, dest_key)
        raise CorruptedOnTransfer(
            f"corrupted on transfer: {problem}; the destination copy was deleted",
            key=key,
            src=src.name,
            dst=dst.name,
        )
    return info


def _discard(dst: Store, dest_key: str) -> None:
    try:
        dst.delete(dest_key)
    except EndpointError as exc:
        log.error(
            "could not delete the bad copy s3://%s/%s on [%s]: %s",
            dst.bucket,
            dest_key,
            dst.name,
            exc,
        )


def _copy_multipart(
    src: Store,
    dst: Store,
    key: str,
    dest_key: str,
    body: Body,
    size: int,
    src_md5: str | None,
    headers: ContentHeaders,
    *,
    cancel: threading.Event | None = None,
) -> CopyResult:
    part_size = part_size_for(size, dst.cfg.multipart_chunksize_bytes)
    if src_md5:
        # Stored so later runs can compare without reading the bytes.
        headers = headers.with_metadata(MD5_META, src_md5)
    upload_id = dst.create_upload(dest_key, headers=headers)
    whole = hashlib.md5()
    part_md5s: list[bytes] = []
    parts: list[Part] = []
    try:
        offset = 0
        number = 0
        while offset < size:
            _check_cancel(cancel, src, dst, key)
            number += 1
            length = min(part_size, size - offset)
            reader = HashingReader(
                body,
                length,
                whole=whole,
                cancel=cancel,
                what=f"s3://{src.bucket}/{key} part {number}",
                key=key,
                src=src.name,
                dst=dst.name,
            )
            # The hashing reader is not seekable: a part cannot be replayed, so a failure
            # here fails the whole copy, which its caller retries from the start.
            part = dst.upload_part(dest_key, upload_id, number=number, body=reader, size=length)
            assert reader.md5 is not None  # hashed: a part always is
            digest = reader.md5.digest()
            etag = clean_etag(part.etag)
            if etag and etag_is_md5(etag) and etag != digest.hex():
                raise CorruptedOnTransfer(
                    f"corrupted on transfer: part {number} md5 differs src({digest.hex()}) vs "
                    f"dst({etag})",
                    key=key,
                    src=src.name,
                    dst=dst.name,
                )
            part_md5s.append(digest)
            parts.append(Part(number, part.etag or f'"{digest.hex()}"'))
            offset += length
        _check_source(src, dst, key, whole.hexdigest(), src_md5)
        _check_cancel(cancel, src, dst, key)
        done_etag = dst.complete_upload(dest_key, upload_id, parts)
    except BaseException as exc:
        # Any failure, a cancellation included: an upload left open costs storage until
        # someone aborts it, and is invisible in listings.
        try:
            dst.abort_upload(dest_key, upload_id)
        except Exception as abort_exc:
            log.error(
                "could not abort upload %s of %r on [%s]: %s",
                upload_id,
                dest_key,
                dst.name,
                abort_exc,
            )
        else:
            log.info(
                "aborted upload %s of s3://%s/%s on [%s] (%s)",
                upload_id,
                dst.bucket,
                dest_key,
                dst.name,
                "cancelled" if cancel is not None and cancel.is_set() else type(exc).__name__,
            )
        raise
    expected = multipart_etag(part_md5s)
    if done_etag != expected:
        # Ceph answers an empty ETag here; others may differ in form. Ask the object.
        _verify_by_head(dst, dest_key, key, src, size, expected_etag=expected)
    return CopyResult(
        key,
        dst.name,
        Outcome.COPIED,
        size=size,
        md5=whole.hexdigest(),
        parts=len(parts),
        bytes_read=size,
    )


# --------------------------------------------------------------------------- stale uploads


def is_stale(upload: UploadInfo, *, cutoff: datetime, initiator: str | None = None) -> bool:
    """Whether ``upload`` was initiated before ``cutoff`` (and, with ``initiator``, by it).

    An upload listed without a time is never stale: its age is unknown.
    """
    if upload.initiated is None or upload.initiated >= cutoff:
        return False
    return initiator is None or upload.initiator == initiator


def own_initiator(dst: Store, *, prefix: str = "") -> str | None:
    """The Initiator ID the server lists for an upload s3s3 starts there (None if it lists
    none). The probe upload is aborted at once; one left behind is itself stale later."""
    probe_key = f"{prefix}{PROBE_KEY_PREFIX}{uuid.uuid4().hex}"
    upload_id = dst.create_upload(probe_key)
    try:
        for upload in dst.list_uploads(probe_key):
            if upload.upload_id == upload_id:
                return upload.initiator or None
        return None
    finally:
        try:
            dst.abort_upload(probe_key, upload_id)
        except EndpointError as exc:
            log.warning(
                "could not abort the probe upload %s of s3://%s/%s on [%s]: %s",
                upload_id,
                dst.bucket,
                probe_key,
                dst.name,
                exc,
            )


def abort_stale_uploads(
    dst: Store,
    *,
    prefix: str = "",
    older_than_s: float | None = None,
    page_size: int = 1000,
    now: datetime | None = None,
) -> int:
    """Abort s3s3's own multipart uploads under ``prefix`` in ``dst`` that were initiated
    more than ``older_than_s`` (default: the destination's ``abort_uploads_after``) ago.

    s3s3's own are those whose Initiator is the principal s3s3 authenticates as at ``dst``.
    Which ID a server lists for that principal differs (AWS lists an IAM user's ARN where
    ListBuckets gives the account's canonical ID; moto does the same), so it is asked of the
    server itself: a probe upload is started, its listed Initiator read, and the probe
    aborted; only when a candidate is old enough, so a run with nothing stale costs one
    ListMultipartUploads. Ceph RGW 16.2 lists the requester as the Initiator of every
    upload: there every upload under ``prefix`` counts as s3s3's.

    Returns how many were aborted; each is logged at INFO. Listing or probing failures
    (a user without s3:ListBucketMultipartUploads, say) are logged as warnings: nothing is
    raised.
    """
    older_than_s = dst.cfg.abort_uploads_after_s if older_than_s is None else older_than_s
    if older_than_s <= 0:
        return 0
    now = now or datetime.now(timezone.utc)
    # Fixed once: an upload this process starts after the sweep began is never stale.
    cutoff = now - timedelta(seconds=older_than_s)
    where = f"s3://{dst.bucket}/{prefix}" if prefix else f"s3://{dst.bucket}"
    initiator: str | None = None
    probed = False
    aborted = 0
    try:
        for upload in dst.list_uploads(prefix, page_size=page_size):
            if not is_stale(upload, cutoff=cutoff):
                continue
            if not probed:
                probed = True
                initiator = own_initiator(dst, prefix=prefix)
                if initiator is None:
                    log.warning(
                        "[%s] lists no Initiator for uploads: s3s3 cannot tell its "
                        "own from others', and aborts none in %s",
                        dst.name,
                        where,
                    )
                    return 0
            if not is_stale(upload, cutoff=cutoff, initiator=initiator):
                log.debug(
                    "keeping upload %s of %r in %s: initiated by %r, not s3s3",
                    upload.upload_id,
                    upload.key,
                    where,
                    upload.initiator,
                )
                continue
            age_s = (now - upload.initiated).total_seconds() if upload.initiated else 0.0
            try:
                dst.abort_upload(upload.key, upload.upload_id)
            except EndpointError as exc:
                if exc.code == "NoSuchUpload":
                    continue  # completed or aborted meanwhile
                log.warning(
                    "could not abort the stale upload %s of s3://%s/%s on [%s]: %s",
                    upload.upload_id,
                    dst.bucket,
                    upload.key,
                    dst.name,
                    exc,
                )
                continue
            aborted += 1
            log.info(
                "aborted stale upload bucket=%s key=%r upload_id=%s age=%.0fs on [%s]",
                dst.bucket,
                upload.key,
                upload.upload_id,
                age_s,
                dst.name,
            )
    except EndpointError as exc:
        log.warning(
            "[%s] could not list multipart uploads in %s, so stale ones are not "
            "aborted (set abort_uploads_after = 0 to stop trying): %s",
            dst.name,
            where,
            exc,
        )
    if aborted:
        log.info(
            "[%s] aborted %d stale multipart upload%s in %s (older than %gs)",
            dst.name,
            aborted,
            "" if aborted == 1 else "s",
            where,
            older_than_s,
        )
    return aborted


def sweep_uploads(dsts: Sequence[Store], *, prefix: str = "") -> int:
    """:func:`abort_stale_uploads` on every destination; the total aborted."""
    return sum(abort_stale_uploads(dst, prefix=prefix) for dst in dsts)
