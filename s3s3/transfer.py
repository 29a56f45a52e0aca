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

A multipart copy keeps its progress (:mod:`s3s3.resume`: the upload, the source version,
each acknowledged part's md5) where the destination's ``upload_state`` says, saved after
every part. A copy that fails for a reason that may pass, or whose process dies, leaves
its upload open; the next copy of that key to that destination resumes it: ListParts (a
part counts where its ETag is the recorded md5 and its size the recorded one), a ranged GET
of the source from the first missing byte ``If-Match`` the recorded ETag, the missing parts,
completion. A changed source (412: :class:`SourceChanged`) aborts the old upload and
starts over. :func:`copy_from`, whose body starts at byte 0, resumes by reading the present
parts through and checking their md5s instead of sending them. A resumed copy that did not
read the first bytes is verified by the multipart ETag of the recorded part md5s.

A part or a streamed PUT (over 1 MiB) that the destination refuses with a retryable error
is sent again from a ranged GET of exactly its bytes, ``If-Match`` the source's ETag, under
the destination's policy; the main body is then read on past the rest of that part (never
closed or sought: it may be a read that other destinations share). How this composes with
the caller's retry of the whole copy is told in :mod:`s3s3.retry`.

Where the source's md5 is not known before a multipart copy, the md5 computed while
streaming is written as ``s3s3-md5`` once the upload is complete (:func:`_store_md5`: a
CopyObject onto itself with the same headers, up to 5 GiB).

A copy can be cancelled through an event (``cancel``), which the reader checks at every
chunk and the multipart loop before each part and before completing: a cancelled multipart
copy aborts its upload (the operator's drain leaves nothing behind; a SIGTERM past grace
is a decision to stop, and a supervisor's restart will copy the key again from the start),
as does one that failed for good (a changed source, corruption, an error not retryable),
and raises :class:`CopyCancelled` when it was cancelled (the reader raises it, so it comes
out of a streamed PUT as itself). Uploads that outlive their process and are not resumed
are aborted later by :func:`abort_stale_uploads`, which both scripts run at start-up, or by
``s3s3bucket uploads --abort`` (:func:`survey_uploads`, :func:`abort_own_uploads`).

One try of the copy: apart from a part's in place, nothing here retries. A failure is
raised with its ``retryable`` for the caller (the bucket job, the listener, ``api.upload``)
to retry through ``s3s3.retry``; it does not loop over keys either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from s3s3 import resume, retry
from s3s3.config import MAX_PART_BYTES, MAX_SINGLE_PUT_BYTES, MiB, verifies_md5
from s3s3.errors import (
    CopyCancelled,
    CorruptedOnTransfer,
    EndpointError,
    ObjectTooLarge,
    S3S3Error,
    ShortRead,
    SourceChanged,
    SourceKeyMissing,
)
from s3s3.model import (
    MD5_META,
    SOURCE_VERSION_META,
    CopyResult,
    ObjectInfo,
    Outcome,
    UploadInfo,
    clean_etag,
    etag_is_md5,
)
from s3s3.plan import Verdict, decide
from s3s3.store.base import Body, ContentHeaders, Part, Readable, Store

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

    def absorb(self, data: bytes) -> None:
        """Hash ``data`` as if it had been read (bytes of this part that were read past)."""
        if self.md5 is not None:
            self.md5.update(data)
        if self._whole is not None:
            self._whole.update(data)


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
        result = _copy_once(src, dst, key, dest_key, src_info=src_info, cancel=cancel)
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
    src: Store,
    dst: Store,
    key: str,
    dest_key: str,
    *,
    src_info: ObjectInfo | None = None,
    cancel: threading.Event | None = None,
) -> CopyResult:
    # A key the listing shows too small for parts has no upload to resume: no look-up.
    if src_info is None or src_info.size > dst.cfg.multipart_threshold_bytes:
        resumed = _resume(src, dst, key, dest_key, cancel=cancel)
        if resumed is not None:
            return resumed
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
    one try of the copy (a failed part is retried in place, from a ranged GET of its bytes);
    nothing is compared first. An upload of this key that an earlier copy of the same source
    version left is resumed: its parts are read from ``body`` and checked, not sent again."""
    size = info.size
    cfg = dst.cfg
    if cfg.multipart_enabled and size > cfg.multipart_threshold_bytes:
        return _copy_multipart(src, dst, key, dest_key, body, info, headers, cancel=cancel)
    if size > MAX_SINGLE_PUT_BYTES:
        raise ObjectTooLarge(
            f"{size} bytes is over the 5 GiB single-PUT limit and multipart is off for "
            f"[{dst.name}] (multipart_threshold = 0)",
            key=key,
            src=src.name,
            dst=dst.name,
        )
    return _copy_single(src, dst, key, dest_key, body, info, headers, cancel=cancel)


def _copy_single(
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
    size = info.size
    src_md5 = info.known_md5
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
        def reader_of(stream: Body, label: str) -> HashingReader:
            return HashingReader(
                stream,
                size,
                what=label,
                key=key,
                src=src.name,
                dst=dst.name,
                hashed=src_md5 is None,
                cancel=cancel,
            )

        reader = reader_of(body, what)
        try:
            try:
                put_etag = _put(dst, dest_key, reader, size=size, headers=headers, md5=src_md5)
            except Exception as exc:
                if not _retries_in_place(exc, dst, cancel):
                    raise
                # Replayed once from a ranged GET of the same version: a streamed PUT has
                # no progress to keep, so its caller's retry would send it all again; one
                # replay here keeps a failing destination at 2 x attempts PUTs at most.
                log.info(
                    "%s to [%s] failed (%s); sending it again from the source", what, dst.name, exc
                )

                def replay() -> tuple[str, HashingReader]:
                    with src.get(key, start=0, end=size - 1, if_match=info.etag or None) as again:
                        second = reader_of(again.body, f"{what} (again)")
                        etag = _put(dst, dest_key, second, size=size, headers=headers, md5=src_md5)
                        return etag, second

                # After the policy's first backoff, as retry.call would wait.
                delay_s = retry.Policy.for_endpoint(dst.cfg).delay_s(1)
                if cancel is not None:
                    if cancel.wait(delay_s):
                        raise
                else:
                    time.sleep(delay_s)
                put_etag, second = replay()
                # The main body may be a read other destinations share: read it on past
                # the bytes this PUT did not take, never close or seek it.
                _advance(body, size - reader.count, reader)
                if reader.md5 is not None and second.md5 is not None:
                    _check_source(src, dst, key, second.md5.hexdigest(), reader.md5.hexdigest())
                reader = second
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


def _retries_in_place(exc: BaseException, dst: Store, cancel: threading.Event | None) -> bool:
    """Whether a failed part or streamed PUT is tried again from a ranged GET: a retryable
    failure of the destination's own request (not of the source's body, not a source
    that changed, not a cancellation)."""
    if cancel is not None and cancel.is_set():
        return False
    return (
        isinstance(exc, EndpointError)
        and exc.retryable
        and exc.endpoint == dst.name
        and exc.op in ("UploadPart", "PutObject")
    )


def _in_place_policy(dst: Store, *, allowed: int | None, failures: int) -> retry.Policy:
    """The destination's policy with ``allowed`` tries in place less the ``failures``
    already spent (the failed first one included), within its deadline. At least one try
    is left, which is the replay itself."""
    policy = retry.Policy.for_endpoint(dst.cfg)
    attempts = None if allowed is None else max(1, allowed - failures)
    return retry.Policy(
        attempts=attempts, base_s=policy.base_s, max_s=policy.max_s, deadline_s=policy.deadline_s
    )


def _advance(body: Body | Readable, count: int, reader: HashingReader | None) -> None:
    """Read ``count`` bytes of ``body`` and drop them, md5ing them into ``reader``'s
    digests (its own and the whole object's) where it has them."""
    while count > 0:
        data = body.read(min(READ_CHUNK_BYTES, count))
        if not data:
            raise ShortRead(f"the source ended {count} bytes early while skipping a part")
        count -= len(data)
        if reader is not None:
            reader.absorb(data)


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


def _endpoint_id(dst: Store) -> str:
    """What names the destination's server in an upload record."""
    return dst.cfg.endpoint_url or ""


def _copy_multipart(
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
    """A multipart copy from ``body`` (byte 0 on): an upload of this source version that
    an earlier copy left is resumed (its parts read through and checked, not sent);
    otherwise a new one is started."""
    part_size = part_size_for(info.size, dst.cfg.multipart_chunksize_bytes)
    progress = resume.progress_for(dst.cfg)
    found = _resumable(src, dst, key, dest_key, info, part_size, progress)
    if found is not None:
        record, present = found
        return _upload_parts(
            src,
            dst,
            key,
            dest_key,
            body,
            info,
            record,
            present,
            progress=progress,
            body_start=0,
            cancel=cancel,
            headers=headers,
        )
    return _start_upload(src, dst, key, dest_key, body, info, headers, part_size, progress, cancel)


def _start_upload(
    src: Store,
    dst: Store,
    key: str,
    dest_key: str,
    body: Body,
    info: ObjectInfo,
    headers: ContentHeaders,
    part_size: int,
    progress: resume.ProgressStore | None,
    cancel: threading.Event | None,
) -> CopyResult:
    if info.known_md5:
        # Stored so later runs can compare without reading the bytes.
        headers = headers.with_metadata(MD5_META, info.known_md5)
    upload_id = dst.create_upload(dest_key, headers=headers)
    record = resume.UploadRecord(
        endpoint=_endpoint_id(dst),
        bucket=dst.bucket,
        key=dest_key,
        upload_id=upload_id,
        source=resume.SourceVersion.of(src.bucket, info),
        part_size=part_size,
    )
    if progress is not None:
        progress.save(record)
    return _upload_parts(
        src,
        dst,
        key,
        dest_key,
        body,
        info,
        record,
        {},
        progress=progress,
        body_start=0,
        cancel=cancel,
        headers=headers,
    )


def _resume(
    src: Store, dst: Store, key: str, dest_key: str, *, cancel: threading.Event | None
) -> CopyResult | None:
    """Resume the upload an earlier copy of ``key`` to ``dst`` left, reading the source
    only from the first part that is missing (a ranged GET, ``If-Match`` the version the
    upload began with); None when there is none to resume (a changed source's upload is
    aborted first)."""
    progress = resume.progress_for(dst.cfg)
    if progress is None or not dst.cfg.multipart_enabled:
        return None
    record = progress.load(_endpoint_id(dst), dst.bucket, dest_key)
    if record is None:
        return None
    if (record.source.bucket, record.source.key) != (src.bucket, key) or not record.source.etag:
        _give_up_upload(dst, record, progress, "it was started from another source object")
        return None
    present = _present_parts(dst, record, progress)
    if present is None:
        return None
    start = _first_missing_offset(record, present)
    if start >= record.source.size:
        obj = None
        info = src.head(key)
        if info is None:
            _give_up_upload(dst, record, progress, "the source object was deleted")
            raise SourceKeyMissing(
                "no such key", op="HeadObject", endpoint=src.name, bucket=src.bucket, key=key
            )
    else:
        try:
            obj = src.get(key, start=start, if_match=record.source.etag)
        except SourceChanged:
            _give_up_upload(dst, record, progress, "the source object changed")
            return None
        except SourceKeyMissing:
            _give_up_upload(dst, record, progress, "the source object was deleted")
            raise
        info = obj.info
    try:
        version = resume.SourceVersion.of(src.bucket, info)
        if not record.matches(version, part_size_for(info.size, dst.cfg.multipart_chunksize_bytes)):
            _give_up_upload(dst, record, progress, "the source object or the part size changed")
            return None
        log.info(
            "resuming upload %s of s3://%s/%s on [%s]: %d of its parts are there, reading "
            "the source from byte %d",
            record.upload_id,
            dst.bucket,
            dest_key,
            dst.name,
            len(present),
            start,
        )
        return _upload_parts(
            src,
            dst,
            key,
            dest_key,
            obj.body if obj is not None else _NO_BODY,
            info,
            record,
            present,
            progress=progress,
            body_start=start,
            cancel=cancel,
            headers=obj.headers if obj is not None else ContentHeaders(),
        )
    finally:
        if obj is not None:
            obj.close()


class _EmptyBody:
    """The body of a resumed copy whose parts are all there: nothing is left to read."""

    def read(self, amt: int | None = None) -> bytes:
        return b""

    def close(self) -> None:
        pass


_NO_BODY = _EmptyBody()


def _resumable(
    src: Store,
    dst: Store,
    key: str,
    dest_key: str,
    info: ObjectInfo,
    part_size: int,
    progress: resume.ProgressStore | None,
) -> tuple[resume.UploadRecord, dict[int, Part]] | None:
    """The recorded upload of this very source version, with its parts that are there."""
    if progress is None:
        return None
    record = progress.load(_endpoint_id(dst), dst.bucket, dest_key)
    if record is None:
        return None
    if not record.matches(resume.SourceVersion.of(src.bucket, info), part_size) or (
        record.source.key != key
    ):
        _give_up_upload(dst, record, progress, "the source object or the part size changed")
        return None
    present = _present_parts(dst, record, progress)
    return None if present is None else (record, present)


def _present_parts(
    dst: Store, record: resume.UploadRecord, progress: resume.ProgressStore
) -> dict[int, Part] | None:
    """The recorded parts the upload holds (ListParts: same md5 ETag, same size), by
    number; None when the upload is gone (its record is dropped)."""
    try:
        listed = dst.list_parts(record.key, record.upload_id)
    except EndpointError as exc:
        if exc.code != "NoSuchUpload" and exc.status != 404:
            raise
        log.info(
            "upload %s of s3://%s/%s on [%s] is gone (completed or aborted): starting over",
            record.upload_id,
            dst.bucket,
            record.key,
            dst.name,
        )
        progress.delete(record.endpoint, record.bucket, record.key)
        return None
    recorded = {p.number: p for p in record.parts}
    present: dict[int, Part] = {}
    for part in listed:
        mine = recorded.get(part.number)
        if mine is None:
            continue  # sent, but its answer was never recorded: sent again
        if clean_etag(part.etag) == mine.md5 and part.size in (0, mine.size):
            present[part.number] = part
    return present


def _first_missing_offset(record: resume.UploadRecord, present: dict[int, Part]) -> int:
    number = 1
    while number in present:
        number += 1
    return min((number - 1) * record.part_size, record.source.size)


def _give_up_upload(
    dst: Store, record: resume.UploadRecord, progress: resume.ProgressStore, why: str
) -> None:
    """Abort a recorded upload that cannot be resumed, and forget it."""
    log.info(
        "aborting upload %s of s3://%s/%s on [%s]: %s; the copy starts over",
        record.upload_id,
        dst.bucket,
        record.key,
        dst.name,
        why,
    )
    try:
        dst.abort_upload(record.key, record.upload_id)
    except EndpointError as exc:
        if exc.code != "NoSuchUpload":
            log.warning(
                "could not abort upload %s of s3://%s/%s on [%s] (the stale sweep will): %s",
                record.upload_id,
                dst.bucket,
                record.key,
                dst.name,
                exc,
            )
    progress.delete(record.endpoint, record.bucket, record.key)


def _worth_keeping(exc: BaseException, cancel: threading.Event | None) -> bool:
    """Whether an upload that failed with ``exc`` is left for the next copy to resume:
    after a failure that may pass (an outage, a source read cut short) or the process
    itself ending; not after a cancellation (the operator's drain aborts what it stops),
    a changed source or a corrupted copy, nor an unexpected error."""
    if cancel is not None and cancel.is_set():
        return False
    if not isinstance(exc, Exception):
        return True  # KeyboardInterrupt, SystemExit: the process is going
    if isinstance(exc, (CopyCancelled, SourceChanged, CorruptedOnTransfer)):
        return False
    return isinstance(exc, S3S3Error) and exc.retryable


def _upload_parts(
    src: Store,
    dst: Store,
    key: str,
    dest_key: str,
    body: Body,
    info: ObjectInfo,
    record: resume.UploadRecord,
    present: dict[int, Part],
    *,
    progress: resume.ProgressStore | None,
    body_start: int,
    cancel: threading.Event | None,
    headers: ContentHeaders,
) -> CopyResult:
    """Send the parts of ``record``'s upload that ``present`` lacks and complete it.

    ``body`` holds the source's bytes from ``body_start`` on (0, or the first missing
    part's offset): the present parts within it are read through and checked against
    their recorded md5s, so from byte 0 the whole md5 is known; from further on it is not,
    and the copy is verified by the multipart ETag of the recorded part md5s.
    """
    size = info.size
    src_md5 = info.known_md5
    part_size = record.part_size
    upload_id = record.upload_id
    count = max(1, math.ceil(size / part_size))
    whole = hashlib.md5() if body_start == 0 else None
    recorded = {p.number: p for p in record.parts}
    part_md5s: list[bytes] = []
    parts: list[Part] = []
    state = _Progress(record, progress)
    try:
        for number in range(1, count + 1):
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            label = f"s3://{src.bucket}/{key} part {number}"
            if number in present:
                digest = bytes.fromhex(recorded[number].md5)
                if offset >= body_start:
                    # In the body: read through, and check it is the same bytes.
                    reader = HashingReader(
                        body,
                        length,
                        whole=whole,
                        cancel=cancel,
                        what=label,
                        key=key,
                        src=src.name,
                        dst=dst.name,
                    )
                    _advance(reader, length, None)
                    assert reader.md5 is not None
                    if reader.md5.digest() != digest:
                        raise SourceChanged(
                            f"part {number} reads md5 {reader.md5.hexdigest()}, not the "
                            f"{digest.hex()} uploaded; the upload is started over",
                            op="GetObject",
                            endpoint=src.name,
                            bucket=src.bucket,
                            key=key,
                        )
                part_md5s.append(digest)
                parts.append(Part(number, present[number].etag, length))
                continue
            _check_cancel(cancel, src, dst, key)
            part, digest = _send_part(
                src,
                dst,
                key,
                dest_key,
                body,
                info,
                upload_id=upload_id,
                number=number,
                offset=offset,
                length=length,
                whole=whole,
                state=state,
                cancel=cancel,
            )
            part_md5s.append(digest)
            parts.append(Part(number, part.etag or f'"{digest.hex()}"', length))
            state.part_done(resume.PartRecord(number, digest.hex(), length))
        if whole is not None:
            _check_source(src, dst, key, whole.hexdigest(), src_md5)
        _check_cancel(cancel, src, dst, key)
        done_etag = dst.complete_upload(dest_key, upload_id, parts)
    except BaseException as exc:
        if progress is not None and _worth_keeping(exc, cancel):
            log.info(
                "left upload %s of s3://%s/%s on [%s] with %d parts for the next copy to "
                "resume (%s)",
                upload_id,
                dst.bucket,
                dest_key,
                dst.name,
                len(state.record.parts),
                type(exc).__name__,
            )
            raise
        # An upload left open costs storage until someone aborts it, and is invisible in
        # listings.
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
        if progress is not None:
            progress.delete(record.endpoint, record.bucket, record.key)
        raise
    if progress is not None:
        progress.delete(record.endpoint, record.bucket, record.key)
    expected = multipart_etag(part_md5s)
    if done_etag != expected:
        # Ceph answers an empty ETag here; others may differ in form. Ask the object.
        _verify_by_head(dst, dest_key, key, src, size, expected_etag=expected)
    md5 = whole.hexdigest() if whole is not None else src_md5
    if src_md5 is None and md5 is not None:
        _store_md5(src, dst, key, dest_key, size=size, md5=md5, etag=expected, headers=headers)
    return CopyResult(
        key,
        dst.name,
        Outcome.COPIED,
        size=size,
        md5=md5,
        parts=len(parts),
        bytes_read=size - body_start,
    )


class _Progress:
    """The record of one upload as its parts are sent, saved after each."""

    def __init__(self, record: resume.UploadRecord, store: resume.ProgressStore | None) -> None:
        self.record = record
        self._store = store

    @property
    def kept(self) -> bool:
        """Whether the record outlives this copy (``upload_state`` is not ``none``)."""
        return self._store is not None

    def part_done(self, part: resume.PartRecord) -> None:
        self.record = self.record.with_part(part)
        self._save()

    def part_failed(self) -> None:
        self.record = dataclasses.replace(self.record, part_failures=self.record.part_failures + 1)
        self._save()

    def _save(self) -> None:
        if self._store is not None:
            self._store.save(self.record)


def _send_part(
    src: Store,
    dst: Store,
    key: str,
    dest_key: str,
    body: Body,
    info: ObjectInfo,
    *,
    upload_id: str,
    number: int,
    offset: int,
    length: int,
    whole,
    state: _Progress,
    cancel: threading.Event | None,
) -> tuple[Part, bytes]:
    """Upload part ``number`` from the main ``body``; a retryable failure of the
    destination is tried again from a ranged GET of exactly this part's bytes (``If-Match``
    the source's ETag), and the main body is then read on past the rest of the part."""
    label = f"s3://{src.bucket}/{key} part {number}"

    def reader_of(stream: Body, what: str, whole_md5=None) -> HashingReader:
        return HashingReader(
            stream,
            length,
            whole=whole_md5,
            cancel=cancel,
            what=what,
            key=key,
            src=src.name,
            dst=dst.name,
        )

    reader = reader_of(body, label, whole)
    try:
        part = dst.upload_part(dest_key, upload_id, number=number, body=reader, size=length)
    except Exception as exc:
        if not _retries_in_place(exc, dst, cancel):
            raise
        state.part_failed()
        spent = state.record.part_failures
        allowed = retry.Policy.for_endpoint(dst.cfg).attempts
        if not state.kept and allowed is not None:
            # Without kept progress the caller's retry starts the upload over, and the
            # count with it: one replay per part, as a streamed PUT gets.
            allowed = min(allowed, 2)
        if allowed is not None and spent >= allowed:
            raise  # this upload spent the destination's attempts in place: the caller's turn
        policy = _in_place_policy(dst, allowed=allowed, failures=spent)
        log.info("%s to [%s] failed (%s); sending it again from its range", label, dst.name, exc)

        def again() -> tuple[Part, HashingReader]:
            try:
                with src.get(
                    key, start=offset, end=offset + length - 1, if_match=info.etag or None
                ) as ranged:
                    second = reader_of(ranged.body, f"{label} (again)")
                    sent = dst.upload_part(
                        dest_key, upload_id, number=number, body=second, size=length
                    )
                    return sent, second
            except Exception as retry_exc:
                if _retries_in_place(retry_exc, dst, cancel):
                    state.part_failed()
                raise

        part, second = retry.call(
            again,
            policy=policy,
            what=f"sending {label} to [{dst.name}] again",
            retryable=lambda e: _retries_in_place(e, dst, cancel),
            cancel=cancel,
        )
        _advance(body, length - reader.count, reader)
        assert reader.md5 is not None and second.md5 is not None
        if reader.md5.digest() != second.md5.digest():
            raise CorruptedOnTransfer(
                f"corrupted on transfer: part {number} md5 differs stream("
                f"{reader.md5.hexdigest()}) vs its range read again({second.md5.hexdigest()})",
                key=key,
                src=src.name,
                dst=dst.name,
            ) from exc
        reader = second
    assert reader.md5 is not None  # hashed: a part always is
    digest = reader.md5.digest()
    etag = clean_etag(part.etag)
    if etag and etag_is_md5(etag) and etag != digest.hex():
        raise CorruptedOnTransfer(
            f"corrupted on transfer: part {number} md5 differs src({digest.hex()}) vs dst({etag})",
            key=key,
            src=src.name,
            dst=dst.name,
        )
    return part, digest


def _store_md5(
    src: Store,
    dst: Store,
    key: str,
    dest_key: str,
    *,
    size: int,
    md5: str,
    etag: str,
    headers: ContentHeaders,
) -> None:
    """Write ``s3s3-md5`` on a multipart copy completed without it (the source's md5 was
    not known before its bytes were read), so later runs can compare without reading.

    A CopyObject of the object onto itself with ``MetadataDirective=REPLACE``, carrying
    the content headers it was created with plus the md5, only if it is still the object
    just completed (``CopySourceIfMatch`` its multipart ETag); verified by a HEAD after.
    Objects over 5 GiB are left without it (CopyObject refuses them; a multipart
    UploadPartCopy would write the bytes again): their multipart ETag stays what later runs
    compare. A failure here leaves a verified copy without the md5, logged, not raised.
    """
    if SOURCE_VERSION_META in headers.metadata:
        # A copy of one version, to a versioned destination: a CopyObject onto itself would
        # add a version of its own. Its s3s3-source-version-id identifies it instead.
        return
    if size > MAX_SINGLE_PUT_BYTES:
        log.info(
            "s3://%s/%s on [%s] is over 5 GiB: left without %s (CopyObject cannot rewrite it)",
            dst.bucket,
            dest_key,
            dst.name,
            MD5_META,
        )
        return
    wanted = headers.with_metadata(MD5_META, md5)
    try:
        try:
            dst.replace_metadata(dest_key, headers=wanted, if_match=etag)
        except SourceChanged:
            # Swift 2.30 answers 412 to CopySourceIfMatch on any multipart object: check
            # the ETag ourselves, then copy unconditionally.
            now = dst.head(dest_key)
            if now is None or now.etag != etag:
                log.warning(
                    "s3://%s/%s on [%s] changed after its copy completed: %s not written",
                    dst.bucket,
                    dest_key,
                    dst.name,
                    MD5_META,
                )
                return
            dst.replace_metadata(dest_key, headers=wanted, if_match=None)
    except EndpointError as exc:
        log.warning(
            "could not write %s on s3://%s/%s on [%s] (later runs compare its ETag): %s",
            MD5_META,
            dst.bucket,
            dest_key,
            dst.name,
            exc,
        )
        return
    after = dst.head(dest_key)
    if after is None or after.size != size or after.md5 != md5:
        log.warning(
            "s3://%s/%s on [%s] does not show %s=%s after it was written (%r)",
            dst.bucket,
            dest_key,
            dst.name,
            MD5_META,
            md5,
            after,
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
            _forget(dst, upload)
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


def _forget(dst: Store, upload: UploadInfo) -> None:
    """Drop the progress record of an upload that was aborted (if it is that upload's)."""
    progress = resume.progress_for(dst.cfg)
    if progress is None:
        return
    record = progress.load(_endpoint_id(dst), dst.bucket, upload.key)
    if record is not None and record.upload_id == upload.upload_id:
        progress.delete(record.endpoint, record.bucket, record.key)


# --------------------------------------------------------------------------- the uploads command


@dataclasses.dataclass(frozen=True)
class UploadState:
    """One multipart upload in progress at a destination, as ``s3s3bucket uploads`` shows
    it: ``parts`` and ``size`` from ListParts, ``tracked`` when s3s3 keeps its progress
    (a copy of the key will resume it)."""

    destination: str
    bucket: str
    key: str
    upload_id: str
    initiated: datetime | None
    initiator: str
    parts: int
    size: int
    tracked: bool

    def info(self) -> UploadInfo:
        return UploadInfo(self.key, self.upload_id, self.initiator, self.initiated)


def survey_uploads(dst: Store, *, prefix: str = "") -> list[UploadState]:
    """Every multipart upload in progress under ``prefix`` at ``dst``, with its parts
    (one ListParts each) and whether s3s3 has its progress."""
    progress = resume.progress_for(dst.cfg)
    found: list[UploadState] = []
    for upload in dst.list_uploads(prefix):
        try:
            parts = dst.list_parts(upload.key, upload.upload_id)
        except EndpointError as exc:
            if exc.code == "NoSuchUpload":
                continue  # completed or aborted since it was listed
            raise
        record = progress.load(_endpoint_id(dst), dst.bucket, upload.key) if progress else None
        found.append(
            UploadState(
                destination=dst.name,
                bucket=dst.bucket,
                key=upload.key,
                upload_id=upload.upload_id,
                initiated=upload.initiated,
                initiator=upload.initiator,
                parts=len(parts),
                size=sum(p.size for p in parts),
                tracked=record is not None and record.upload_id == upload.upload_id,
            )
        )
    return found


def older_than(
    uploads: Sequence[UploadState], seconds: float, *, now: datetime | None = None
) -> list[UploadState]:
    """The uploads initiated more than ``seconds`` ago (all of them for 0; one listed
    without a time only for 0)."""
    if seconds <= 0:
        return list(uploads)
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
    return [u for u in uploads if is_stale(u.info(), cutoff=cutoff)]


def abort_own_uploads(dst: Store, uploads: Sequence[UploadState]) -> list[UploadState]:
    """Abort those of ``uploads`` that s3s3 initiated (the server's Initiator for s3s3's
    principal, asked with a probe upload as :func:`abort_stale_uploads` asks) and forget
    their progress; the ones aborted. Where the server lists no Initiator, none is."""
    if not uploads:
        return []
    initiator = own_initiator(dst)
    if initiator is None:
        log.warning(
            "[%s] lists no Initiator for uploads: s3s3 cannot tell its own from others', "
            "and aborts none",
            dst.name,
        )
        return []
    aborted: list[UploadState] = []
    for upload in uploads:
        if upload.initiator != initiator:
            log.info(
                "keeping upload %s of %r on [%s]: initiated by %r, not s3s3",
                upload.upload_id,
                upload.key,
                dst.name,
                upload.initiator,
            )
            continue
        try:
            dst.abort_upload(upload.key, upload.upload_id)
        except EndpointError as exc:
            if exc.code != "NoSuchUpload":
                raise
            continue
        _forget(dst, upload.info())
        aborted.append(upload)
    return aborted
