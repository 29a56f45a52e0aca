"""The Store callers use: one configured bucket, served per operation by the lean store or
the boto3 store.

:class:`Endpoint` implements :class:`~s3s3.store.base.Store`. Which store serves which
operation is decided once, not tried call by call:

- from the configuration, when the endpoint is made: ``data_path = botocore`` sends
  everything through boto3; with SigV2 the upload listing stays on boto3 (SigV2 signs the
  ``uploads`` sub-resource, which the lean signer does not);
- when the lean store is first needed: an endpoint behind an HTTP proxy, or one whose
  client cannot presign (no credentials), stays on boto3;
- at run time, once: a server that answers the lean store with a redirect (an AWS bucket in
  another region) hands that call and every later one to boto3, whose redirect handling
  applies (:attr:`LeanStore.redirected <s3s3.store.lean.LeanStore.redirected>`).

The lean store serves HEAD, GET, PUT of a bytes body, listing pages and upload listing
pages; boto3 serves streamed PUTs, multipart uploads, deletes and bucket checks. Both map
their failures into the same errors (``s3s3.store.s3errors``), so callers cannot tell them
apart. Every operation is tried once; pagers (:meth:`Endpoint.list_uploads`) retry each
page through ``s3s3.retry``, the listing owning its pages.

Every request, on either store, goes through the endpoint's
:class:`~s3s3.store.pacing.EndpointPacing` first: a slot of its adaptive concurrency (halved
on SlowDown), a token of its ``tpslimit``; and every GET body it hands out is read through
the process's bandwidth limiter (``bwlimit``), so the layers above pace nothing themselves.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import botocore.exceptions

from s3s3 import retry
from s3s3.config import NO_BWLIMIT, BwTimetable, EndpointConfig
from s3s3.errors import FatalEndpointError
from s3s3.model import ObjectInfo, UploadInfo
from s3s3.store.base import (
    NO_HEADERS,
    ContentHeaders,
    DeleteFailures,
    ObjectStream,
    Page,
    Part,
    Readable,
    UploadPage,
    VersionPage,
    iter_uploads,
)
from s3s3.store.boto import BotoStore
from s3s3.store.lean import SIGV2, LeanStore, proxy_for
from s3s3.store.pacing import EndpointPacing, bandwidth_limiter

if TYPE_CHECKING:
    from s3s3.store.base import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The operations the lean store may serve (``put``: of a bytes body).
LEAN_OPERATIONS = frozenset(
    {"head", "get", "put", "list_page", "list_uploads", "list_versions_page"}
)


class Endpoint:
    """One configured bucket on one S3 server (a :class:`~s3s3.store.base.Store`).

    ``client``, when given, is the boto3 client to use (else one is built on first use).
    ``pacing`` is what its requests go through (by default
    :meth:`EndpointPacing.for_endpoint <s3s3.store.pacing.EndpointPacing.for_endpoint>` of
    ``cfg``: its ``tpslimit`` and an adaptive concurrency, no bandwidth limit). Thread-safe:
    share one per endpoint.
    """

    def __init__(
        self, cfg: EndpointConfig, client=None, *, pacing: EndpointPacing | None = None
    ) -> None:
        self.cfg = cfg
        self.pacing = pacing or EndpointPacing.for_endpoint(cfg)
        self.boto = BotoStore(cfg, client=client)
        # Decided from the configuration, once.
        self._lean_wanted = cfg.data_path == "raw"
        self._lean_lists_uploads = self._lean_wanted and cfg.signature_version not in SIGV2
        self._lean: LeanStore | None = None
        self._lean_decided = not self._lean_wanted
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Endpoint({self.cfg.describe()})"

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def bucket(self) -> str:
        return self.cfg.bucket

    @property
    def client(self):
        """The boto3 client."""
        return self.boto.client

    @property
    def lean(self) -> LeanStore | None:
        """The lean store, or None where every operation goes through boto3."""
        if self._lean_decided:
            return self._lean
        with self._lock:
            if not self._lean_decided:
                self._lean = self._build_lean()
                self._lean_decided = True
        return self._lean

    def transport(self, operation: str) -> str:
        """``"lean"`` or ``"botocore"``: which store serves ``operation`` (a Store method
        name; ``put`` of a bytes body) now."""
        if operation not in LEAN_OPERATIONS or self.lean is None:
            return "botocore"
        if operation in ("list_uploads", "list_versions_page") and not self._lean_lists_uploads:
            return "botocore"
        return "lean"

    def close(self) -> None:
        """Close the lean store's idle connections."""
        if self._lean is not None:
            self._lean.close()

    def _build_lean(self) -> LeanStore | None:
        url = self.boto.endpoint_url
        if proxy_for(url):
            log.info("[%s] goes through a proxy: object calls use botocore", self.name)
            return None
        try:
            return LeanStore(
                self.cfg,
                base_url=self.boto.object_base_url(),
                region=self.boto.region,
                credentials=self.boto.credentials(),
                verify=self.boto.tls_verify(),
            )
        except botocore.exceptions.BotoCoreError as exc:
            # No credentials, say: botocore's own calls will raise the mapped error.
            log.debug("[%s] lean store unavailable (%s): object calls use botocore", self.name, exc)
            return None

    def _leave_lean(self, store: LeanStore, exc: FatalEndpointError) -> None:
        """The lean store was redirected: botocore serves this endpoint from now on."""
        with self._lock:
            if self._lean is store:
                log.info("[%s] %s; object calls use botocore from now on", self.name, exc)
                self._lean = None

    def _send(self, request: Callable[[], T]) -> T:
        """One request, through this endpoint's pacing."""
        return self.pacing.send(request)

    def _serve(
        self,
        lean_call: Callable[[LeanStore], T],
        boto_call: Callable[[], T],
    ) -> T:
        """Through the lean store where there is one, else, or once it is redirected,
        through botocore; each request paced."""
        store = self.lean
        if store is not None:
            try:
                return self._send(functools.partial(lean_call, store))
            except FatalEndpointError as exc:
                if not store.redirected:
                    raise
                self._leave_lean(store, exc)
        return self._send(boto_call)

    def concurrency_limit(self) -> int:
        """Requests allowed in flight toward this endpoint now (halved on SlowDown)."""
        return self.pacing.concurrency.limit

    # ------------------------------------------------------------------- objects

    def check_bucket(self) -> None:
        """Fail fast, with a fatal error, on bad credentials or a missing bucket."""
        self._send(self.boto.check_bucket)

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        """The object's size, ETag and s3s3 md5 (of version ``version_id``, where given), or
        None when it does not exist."""
        return self._serve(
            lambda lean: lean.head(key, version_id=version_id),
            lambda: self.boto.head(key, version_id=version_id),
        )

    def get(
        self,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ObjectStream:
        """The object's body to stream (read it, then close it), with its ObjectInfo and
        the headers a copy carries; :class:`~s3s3.errors.SourceKeyMissing` if missing.
        ``start``/``end``/``if_match``/``version_id``: a ranged, conditional GET of one
        version (see the Store protocol)."""
        obj = self._serve(
            lambda lean: lean.get(
                key, start=start, end=end, if_match=if_match, version_id=version_id
            ),
            lambda: self.boto.get(
                key, start=start, end=end, if_match=if_match, version_id=version_id
            ),
        )
        if self.pacing.bandwidth is None:
            return obj
        return ObjectStream(obj.info, obj.headers, self.pacing.paced_body(obj.body))

    def put(
        self,
        key: str,
        body: bytes | Readable,
        *,
        size: int,
        headers: ContentHeaders = NO_HEADERS,
        md5: str | None = None,
    ) -> str:
        """Write ``key``: a bytes body through the lean store, a stream (``size`` bytes)
        through botocore. With ``md5`` (hex) the server checks the bytes. Answers the ETag."""

        def boto_put() -> str:
            return self.boto.put(key, body, size=size, headers=headers, md5=md5)

        if not isinstance(body, (bytes, bytearray)):
            return self._send(boto_put)
        data = bytes(body)
        return self._serve(
            lambda lean: lean.put(key, data, size=size, headers=headers, md5=md5), boto_put
        )

    def create_upload(self, key: str, *, headers: ContentHeaders = NO_HEADERS) -> str:
        return self._send(lambda: self.boto.create_upload(key, headers=headers))

    def upload_part(
        self, key: str, upload_id: str, *, number: int, body: Readable, size: int
    ) -> Part:
        return self._send(
            lambda: self.boto.upload_part(key, upload_id, number=number, body=body, size=size)
        )

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> str:
        return self._send(lambda: self.boto.complete_upload(key, upload_id, parts))

    def abort_upload(self, key: str, upload_id: str) -> None:
        self._send(lambda: self.boto.abort_upload(key, upload_id))

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        # Paced as one request: its pages (rarely more than one) are the listing's own.
        return self._send(lambda: self.boto.list_parts(key, upload_id))

    def replace_metadata(self, key: str, *, headers: ContentHeaders, if_match: str | None) -> str:
        return self._send(
            lambda: self.boto.replace_metadata(key, headers=headers, if_match=if_match)
        )

    def delete(self, key: str) -> None:
        self._send(lambda: self.boto.delete(key))

    def delete_many(self, keys: Sequence[str]) -> DeleteFailures:
        """See :meth:`BotoStore.delete_many <s3s3.store.boto.BotoStore.delete_many>`."""
        return self._send(lambda: self.boto.delete_many(keys))

    # ------------------------------------------------------------------- listings

    def list_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        marker: str | None = None,
        start_after: str | None = None,
    ) -> Page:
        """One listing page (V2, or V1 where ``list_version = 1``) after ``marker``, or
        after the key ``start_after``."""
        return self._serve(
            lambda lean: lean.list_page(
                prefix, page_size=page_size, marker=marker, start_after=start_after
            ),
            lambda: self.boto.list_page(
                prefix, page_size=page_size, marker=marker, start_after=start_after
            ),
        )

    def list_uploads_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        key_marker: str | None = None,
        upload_id_marker: str | None = None,
    ) -> UploadPage:
        """One ListMultipartUploads page: through the lean store (this runs once per
        destination on every start-up, and botocore's first ListMultipartUploads of a
        process costs ~28 ms of CPU), except with SigV2 or ``data_path = botocore``."""

        def boto_page() -> UploadPage:
            return self.boto.list_uploads_page(
                prefix,
                page_size=page_size,
                key_marker=key_marker,
                upload_id_marker=upload_id_marker,
            )

        if not self._lean_lists_uploads or self.lean is None:
            return self._send(boto_page)
        return self._serve(
            lambda lean: lean.list_uploads_page(
                prefix,
                page_size=page_size,
                key_marker=key_marker,
                upload_id_marker=upload_id_marker,
            ),
            boto_page,
        )

    def list_uploads(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[UploadInfo]:
        """Every multipart upload in progress under ``prefix``, page by page, each page
        retried under this endpoint's policy (:func:`s3s3.store.base.iter_uploads`)."""
        return iter_uploads(
            functools.partial(self.list_uploads_page, prefix, page_size=page_size),
            name=self.name,
            policy=retry.Policy.for_endpoint(self.cfg),
            what=f"listing uploads of s3://{self.bucket}/{prefix} on [{self.name}]",
        )

    def list_versions_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        key_marker: str | None = None,
        version_id_marker: str | None = None,
    ) -> VersionPage:
        """One ListObjectVersions page: through the lean store, whose parser keeps versions
        and delete markers in the server's order (botocore's answer parts them into two
        lists), except with SigV2 (the ``versions`` sub-resource is signed) or
        ``data_path = botocore``."""

        def boto_page() -> VersionPage:
            return self.boto.list_versions_page(
                prefix,
                page_size=page_size,
                key_marker=key_marker,
                version_id_marker=version_id_marker,
            )

        if not self._lean_lists_uploads or self.lean is None:
            return self._send(boto_page)
        return self._serve(
            lambda lean: lean.list_versions_page(
                prefix,
                page_size=page_size,
                key_marker=key_marker,
                version_id_marker=version_id_marker,
            ),
            boto_page,
        )

    def versioning(self) -> str:
        """The bucket's versioning status (see the Store protocol)."""
        return self._send(self.boto.versioning)

    # ------------------------------------------------------------------- administration

    def call(self, op: str, key: str | None = None, **params: Any) -> dict:
        """One boto3 operation by its botocore name, answering botocore's dict.

        For tests and benchmarks that set buckets up (PutObject, CreateBucket...); nothing in
        s3s3 above the store calls it: the engines speak the Store protocol.
        """
        return self._send(lambda: self.boto.call(op, key, **params))


if TYPE_CHECKING:  # both are Stores, as mypy checks here

    def _is_a_store(endpoint: Endpoint, boto: BotoStore) -> tuple[Store, Store]:
        return endpoint, boto


def make_endpoints(
    cfgs: Sequence[EndpointConfig], *, bwlimit: BwTimetable = NO_BWLIMIT, workers: int
) -> list[Endpoint]:
    """One :class:`Endpoint` per configuration for one process: they share one bandwidth
    limiter (``bwlimit``, over every GET body they read), and each one's concurrency starts
    at ``workers`` (the most that may call it at once) and backs off on SlowDown."""
    bandwidth = bandwidth_limiter(bwlimit)
    return [
        Endpoint(cfg, pacing=EndpointPacing.for_endpoint(cfg, ceiling=workers, bandwidth=bandwidth))
        for cfg in cfgs
    ]
