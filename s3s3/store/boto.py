"""The boto3 store: a boto3 client per endpoint, made to work with Ceph RGW, Swift s3api and
AWS alike, behind the :class:`~s3s3.store.base.Store` protocol.

What differs from a plain ``boto3.client("s3")`` and why (see the README's compatibility
table):

- checksums are computed only when an operation requires them: botocore >= 1.36 otherwise
  sends ``aws-chunked`` bodies with CRC32 trailers, which Ceph Pacific (411) and Swift 2.30
  (501) refuse;
- payloads are not SHA-256 signed, so a GET body can be streamed into a PUT without seeking;
- SigV2 signs the path that is actually sent (botocore signs ``/bucket/`` but sends
  ``/bucket`` for bucket-level calls, which every real server rejects);
- DeleteObjects carries a Content-MD5, which Swift 2.30 and AWS require;
- botocore retries nothing (``total_max_attempts = 1``): the owner of an operation retries
  it through ``s3s3.retry``, once, so a key never sends attempts x attempts requests.

Every botocore exception is mapped here, at this one boundary (:func:`map_client_error`),
into the error tree; so are the errors of reading a GET body (:class:`BotoBody`), and an
s3s3 error that a streamed PUT's body raised inside botocore (a short source, a source
timeout, a cancelled copy) comes out as itself, not as the destination's failure.

TLS trust is decided once, in :func:`tls_verify`, for both data paths and as botocore
decides it: the endpoint's ``verify_tls``/``ca_bundle`` keys, then ``AWS_CA_BUNDLE``, the
AWS profile's ``ca_bundle``, ``REQUESTS_CA_BUNDLE``, and botocore's own CA bundle (certifi).
Credentials, for the lean store too, come through boto3's public API
(:meth:`BotoStore.credentials`).
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session
import urllib3.exceptions

from s3s3 import retry
from s3s3.config import EndpointConfig
from s3s3.errors import (
    ConfigError,
    EndpointError,
    FatalEndpointError,
    S3S3Error,
    SourceKeyMissing,
    TransientEndpointError,
)
from s3s3.model import (
    MD5_META,
    SOURCE_VERSION_META,
    ObjectInfo,
    UploadInfo,
    clean_etag,
    etag_is_md5,
)
from s3s3.store.base import (
    META_PREFIX,
    NO_HEADERS,
    VERSIONING_NEVER,
    ContentHeaders,
    DeleteFailures,
    ObjectStream,
    Page,
    Part,
    Readable,
    UploadPage,
    VersionPage,
    content_range_size,
    iter_uploads,
    page_of,
    range_header,
    upload_page_of,
    version_page_of,
)
from s3s3.store.s3errors import classify_error

log = logging.getLogger(__name__)

#: The key the bucket's base URL is presigned with; never requested.
PROBE_KEY = "s3s3-probe"

#: Carried headers by wire name, as botocore's GetObject answer and PutObject take them.
_PARAM_OF_HEADER = {
    "Content-Type": "ContentType",
    "Content-Encoding": "ContentEncoding",
    "Content-Disposition": "ContentDisposition",
    "Content-Language": "ContentLanguage",
    "Cache-Control": "CacheControl",
    "Expires": "Expires",
}

#: What a failed request or body read raised when the network, not the server, failed.
_TRANSIENT_BOTOCORE = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.UnseekableStreamError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


# --------------------------------------------------------------------------- handlers


def _sigv2_trim_auth_path(request, signature_version=None, **_):
    """Sign the path that is sent: botocore keeps ``/bucket/`` for ``/bucket`` (#4433)."""
    auth_path = getattr(request, "auth_path", None)
    if not auth_path or not auth_path.endswith("/") or auth_path == "/":
        return
    sent = urlsplit(request.url).path
    if not sent.endswith("/"):
        request.auth_path = auth_path.rstrip("/")


def _delete_objects_content_md5(params, **_):
    """DeleteObjects must carry Content-MD5 on Swift 2.30 and AWS; botocore sends CRC32."""
    body = params.get("body")
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        digest = base64.b64encode(hashlib.md5(body).digest()).decode("ascii")
        params["headers"]["Content-MD5"] = digest


def client_config(cfg: EndpointConfig) -> botocore.config.Config:
    """The botocore settings for one endpoint (pure; tested without a server)."""
    return botocore.config.Config(
        region_name=cfg.region,
        signature_version=cfg.signature_version,
        s3={"addressing_style": cfg.addressing_style, "payload_signing_enabled": False},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # One try: s3s3.retry is the one retry level (the owner of an operation retries it).
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=cfg.max_pool_connections,
        connect_timeout=cfg.connect_timeout_s,
        read_timeout=cfg.read_timeout_s,
        tcp_keepalive=True,
        parameter_validation=False,
    )


# --------------------------------------------------------------------------- sessions

_shared_sessions: tuple[botocore.session.Session, boto3.session.Session] | None = None
_session_lock = threading.Lock()


def _shared() -> tuple[botocore.session.Session, boto3.session.Session]:
    """The process's shared sessions (botocore's, and boto3's around it), made on first use;
    call with ``_session_lock`` held (sessions are not thread-safe)."""
    global _shared_sessions
    if _shared_sessions is None:
        core = botocore.session.Session()
        _shared_sessions = (core, boto3.session.Session(botocore_session=core))
    return _shared_sessions


def tls_verify(
    cfg: EndpointConfig, *, session: botocore.session.Session | None = None
) -> bool | str:
    """What both data paths verify certificates with: a CA bundle's path, True or False.

    As botocore resolves ``verify`` (``Session.create_client``, then the endpoint creator),
    with the endpoint's keys as the explicit value: ``verify_tls = False``, else its
    ``ca_bundle``; else ``AWS_CA_BUNDLE``; else ``ca_bundle`` in the AWS profile (``session``,
    default the shared one); else ``REQUESTS_CA_BUNDLE``; else True, botocore's bundle.
    A bundle from the environment or the profile that is empty or not a file is a
    :class:`ConfigError` naming where it came from (botocore would fail on first use).
    """
    if not cfg.verify_tls:
        return False
    if cfg.ca_bundle:
        return cfg.ca_bundle
    found = _environ_bundle("AWS_CA_BUNDLE")
    if found is None:
        profile = _profile_ca_bundle(session)
        if profile is not None:
            found = ("'ca_bundle' in the AWS profile", str(profile))
    if found is None:
        found = _environ_bundle("REQUESTS_CA_BUNDLE")
    if found is None:
        return True
    source, path = found
    if not path.strip():
        raise ConfigError(
            f"{source} is set but empty: name a PEM file of CAs, or unset it "
            f"(needed by [{cfg.name}])",
            section=cfg.name,
        )
    if not (Path(path).is_file() or Path(path).is_dir()):  # botocore takes a CA dir too
        raise ConfigError(
            f"{source} is {path!r}, which is not a readable file or folder "
            f"(needed by [{cfg.name}])",
            section=cfg.name,
        )
    return path


def _environ_bundle(name: str) -> tuple[str, str] | None:
    value = os.environ.get(name)
    return None if value is None else (f"the environment variable {name}", value)


def _profile_ca_bundle(session: botocore.session.Session | None) -> str | None:
    if session is not None:
        return session.get_config_variable("ca_bundle")
    with _session_lock:
        return _shared()[0].get_config_variable("ca_bundle")


def build_client(cfg: EndpointConfig, *, session: botocore.session.Session | None = None):
    """A boto3 S3 client for ``cfg`` with the compatibility handlers registered.

    Without ``session``, clients share one session per process: its loader keeps the S3
    model once parsed, so every client after the first costs ~5 ms instead of ~80 ms (a
    run with three endpoints starts 0.15 s sooner). Sessions are not thread-safe; clients
    are, so only the creation is serialised.
    """
    with _session_lock:
        if session is None:
            core, boto3_session = _shared()
        else:
            core, boto3_session = session, boto3.session.Session(botocore_session=session)
        # Resolved here, not left to botocore (verify=None), so that the lean store, which
        # asks tls_verify too, trusts exactly what the botocore client trusts.
        verify = tls_verify(cfg, session=core)
        client = boto3_session.client(
            "s3",
            endpoint_url=cfg.endpoint_url,
            aws_access_key_id=cfg.access_key,
            aws_secret_access_key=cfg.secret_key,
            verify=verify,
            config=client_config(cfg),
        )
    events = client.meta.events
    if cfg.signature_version == "s3":
        # Registered last so it runs after botocore has set auth_path.
        events.register_last("before-sign.s3", _sigv2_trim_auth_path)
    events.register("before-call.s3.DeleteObjects", _delete_objects_content_md5)
    return client


# --------------------------------------------------------------------------- errors


def map_client_error(
    exc: BaseException, *, op: str, cfg: EndpointConfig, key: str | None = None
) -> BaseException:
    """The s3s3 error for a botocore (or network) exception: raise what this returns,
    ``from exc``. Exceptions it does not recognise are returned unchanged."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = err.get("Message") or code or str(exc)
        return classify_error(code, status, message, op=op, cfg=cfg, key=key)
    if isinstance(exc, botocore.exceptions.HTTPClientError):
        inner = exc.kwargs.get("error")
        if isinstance(inner, S3S3Error):
            # Raised by a streamed body while botocore sent it (the source's read failed,
            # or the copy was cancelled): that error, not the destination's.
            return inner
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return FatalEndpointError(
            "no credentials: set aws_access_key_id and "
            "aws_secret_access_key, or the S3S3_* environment variables",
            op=op,
            endpoint=cfg.name,
            bucket=cfg.bucket,
            key=key,
            code="NoCredentials",
        )
    if isinstance(exc, botocore.exceptions.SSLError):
        return FatalEndpointError(
            f"TLS failed: {exc}", op=op, endpoint=cfg.name, bucket=cfg.bucket, key=key, code="TLS"
        )
    if isinstance(exc, _TRANSIENT_BOTOCORE):
        return TransientEndpointError(
            f"{type(exc).__name__}: {exc}",
            op=op,
            endpoint=cfg.name,
            bucket=cfg.bucket,
            key=key,
            code="connection",
        )
    return exc


class BotoBody:
    """A GET body of the boto3 store: botocore's ``StreamingBody``, whose read errors
    (timeouts, resets, a body shorter than its length) are errors of the tree."""

    def __init__(self, stream, *, cfg: EndpointConfig, key: str) -> None:
        self._stream = stream
        self._cfg = cfg
        self._key = key

    def read(self, amt: int | None = None) -> bytes:
        try:
            return self._stream.read(amt)
        except (botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise map_client_error(exc, op="GetObject", cfg=self._cfg, key=self._key) from exc

    def close(self) -> None:
        self._stream.close()


# --------------------------------------------------------------------------- the store


class BotoStore:
    """One bucket through a boto3 client: every :class:`~s3s3.store.base.Store` operation.

    The client is built on first use (or given) and shared by threads, as boto3 clients
    may be.
    """

    def __init__(self, cfg: EndpointConfig, *, client=None) -> None:
        self._cfg = cfg
        self._client = client
        self._lock = threading.Lock()
        # Recorded once: the server answered DeleteObjects with NotImplemented.
        self._single_deletes = False

    def __repr__(self) -> str:
        return f"BotoStore({self._cfg.describe()})"

    @property
    def cfg(self) -> EndpointConfig:
        return self._cfg

    @property
    def name(self) -> str:
        return self._cfg.name

    @property
    def bucket(self) -> str:
        return self._cfg.bucket

    @property
    def client(self):
        """The boto3 client (built on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = build_client(self._cfg)
        return self._client

    # ------------------------------------------------------------------- for the lean store

    def credentials(self) -> botocore.credentials.Credentials | None:
        """The credentials this client signs with, through public APIs: the endpoint's keys,
        else the shared session's chain (``boto3.Session.get_credentials``; refreshable
        ones stay refreshable: freeze them per request)."""
        if self._cfg.access_key is not None and self._cfg.secret_key is not None:
            return botocore.credentials.Credentials(self._cfg.access_key, self._cfg.secret_key)
        with _session_lock:
            return _shared()[1].get_credentials()

    def tls_verify(self) -> bool | str:
        """What this client verifies certificates with (:func:`tls_verify`)."""
        return tls_verify(self._cfg)

    @property
    def region(self) -> str:
        return self.client.meta.region_name or self._cfg.region

    @property
    def endpoint_url(self) -> str:
        """The URL requests go to (botocore's resolution for AWS)."""
        return self._cfg.endpoint_url or self.client.meta.endpoint_url

    def object_base_url(self) -> str:
        """The URL botocore sends this bucket's object requests to, up to the key.

        ``http://host:port/bucket/`` (path-style) or ``https://bucket.host/`` (virtual-hosted):
        presigning makes botocore run its whole endpoint resolution, without a request.
        """
        url = self.client.generate_presigned_url(
            "head_object", Params={"Bucket": self._cfg.bucket, "Key": PROBE_KEY}, ExpiresIn=60
        )
        parts = urlsplit(url)
        if not parts.path.endswith("/" + PROBE_KEY):
            raise ValueError(f"unexpected presigned URL form for bucket {self._cfg.bucket!r}")
        return f"{parts.scheme}://{parts.netloc}{parts.path[: -len(PROBE_KEY)]}"

    # ------------------------------------------------------------------- calls

    def call(self, op: str, key: str | None = None, **params: Any) -> dict:
        """One S3 operation on this bucket by its botocore name, errors mapped into the
        tree; the response is botocore's dict (for this module, and for tests)."""
        method = getattr(self.client, _snake(op))
        try:
            if key is None:
                return method(Bucket=self._cfg.bucket, **params)
            return method(Bucket=self._cfg.bucket, Key=key, **params)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise map_client_error(exc, op=op, cfg=self._cfg, key=key) from exc

    def check_bucket(self) -> None:
        self.call("HeadBucket")

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        try:
            resp = self.call("HeadObject", key, **_version_param(version_id))
        except SourceKeyMissing:
            return None
        return info_from_response(key, resp)

    def get(
        self,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ObjectStream:
        params: dict[str, Any] = _version_param(version_id)
        ranged = range_header(start, end)
        if ranged is not None:
            params["Range"] = ranged
        if if_match is not None:
            params["IfMatch"] = f'"{clean_etag(if_match)}"'
        resp = self.call("GetObject", key, **params)
        info = info_from_response(key, resp)
        whole = content_range_size(resp.get("ContentRange"))
        if whole is not None:  # a ranged answer's ContentLength is the range's
            info = dataclasses.replace(info, size=whole)
        return ObjectStream(
            info,
            content_headers_of(resp),
            BotoBody(resp["Body"], cfg=self._cfg, key=key),
        )

    def put(
        self,
        key: str,
        body: bytes | Readable,
        *,
        size: int,
        headers: ContentHeaders = NO_HEADERS,
        md5: str | None = None,
    ) -> str:
        params = put_params(headers)
        if md5 is not None:
            params["ContentMD5"] = base64.b64encode(bytes.fromhex(md5)).decode("ascii")
        resp = self.call("PutObject", key, Body=body, ContentLength=size, **params)
        return clean_etag(resp.get("ETag"))

    def create_upload(self, key: str, *, headers: ContentHeaders = NO_HEADERS) -> str:
        return self.call("CreateMultipartUpload", key, **put_params(headers))["UploadId"]

    def upload_part(
        self, key: str, upload_id: str, *, number: int, body: Readable, size: int
    ) -> Part:
        resp = self.call(
            "UploadPart", key, UploadId=upload_id, PartNumber=number, Body=body, ContentLength=size
        )
        return Part(number, resp.get("ETag") or "")

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> str:
        resp = self.call(
            "CompleteMultipartUpload",
            key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]},
        )
        return clean_etag(resp.get("ETag"))

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.call("AbortMultipartUpload", key, UploadId=upload_id)

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """Every part of the upload, page by page, each page retried under this endpoint's
        policy (the listing owns its pages)."""
        policy = retry.Policy.for_endpoint(self._cfg)
        parts: list[Part] = []
        marker = 0
        while True:
            params: dict[str, Any] = {"UploadId": upload_id, "MaxParts": 1000}
            if marker:
                params["PartNumberMarker"] = marker
            resp = retry.call(
                functools.partial(self.call, "ListParts", key, **params),
                policy=policy,
                what=f"listing the parts of upload {upload_id} of s3://{self.bucket}/{key} "
                f"on [{self.name}]",
            )
            page = [
                Part(int(p["PartNumber"]), str(p.get("ETag") or ""), int(p.get("Size") or 0))
                for p in resp.get("Parts") or ()
            ]
            parts.extend(page)
            following = int(resp.get("NextPartNumberMarker") or (page[-1].number if page else 0))
            if not resp.get("IsTruncated") or not page or following <= marker:
                return sorted(parts, key=lambda p: p.number)
            marker = following

    def replace_metadata(self, key: str, *, headers: ContentHeaders, if_match: str | None) -> str:
        params = put_params(headers)
        if if_match is not None:
            params["CopySourceIfMatch"] = f'"{clean_etag(if_match)}"'
        resp = self.call(
            "CopyObject",
            key,
            CopySource={"Bucket": self._cfg.bucket, "Key": key},
            MetadataDirective="REPLACE",
            **params,
        )
        return clean_etag((resp.get("CopyObjectResult") or {}).get("ETag"))

    def list_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        marker: str | None = None,
        start_after: str | None = None,
    ) -> Page:
        v1 = self._cfg.list_version == 1
        params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": page_size}
        if marker is not None:
            params["Marker" if v1 else "ContinuationToken"] = marker
        elif start_after is not None:
            params["Marker" if v1 else "StartAfter"] = start_after
        return page_of(self.call("ListObjects" if v1 else "ListObjectsV2", **params), v1=v1)

    def list_uploads_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        key_marker: str | None = None,
        upload_id_marker: str | None = None,
    ) -> UploadPage:
        return upload_page_of(
            self.call(
                "ListMultipartUploads",
                **uploads_params(prefix, page_size, key_marker, upload_id_marker),
            )
        )

    def list_uploads(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[UploadInfo]:
        return iter_uploads(
            functools.partial(self.list_uploads_page, prefix, page_size=page_size),
            name=self.name,
            policy=retry.Policy.for_endpoint(self._cfg),
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
        params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": page_size}
        if key_marker is not None:
            params["KeyMarker"] = key_marker
            if version_id_marker is not None:
                params["VersionIdMarker"] = version_id_marker
        return version_page_of(self.call("ListObjectVersions", **params))

    def versioning(self) -> str:
        return str(self.call("GetBucketVersioning").get("Status") or VERSIONING_NEVER)

    def delete(self, key: str) -> None:
        self.call("DeleteObject", key)

    def delete_many(self, keys: Sequence[str]) -> DeleteFailures:
        """DeleteObjects of ``keys`` (up to 1,000), quiet: the answer names only failures.

        A failure of the request itself is raised (the caller may retry the batch). Where
        the server does not implement DeleteObjects (501 NotImplemented), that is recorded
        once and the keys are deleted one request each from then on, each failure answered
        for its key.
        """
        if not self._single_deletes:
            try:
                resp = self.call(
                    "DeleteObjects",
                    Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
                )
            except EndpointError as exc:
                if exc.code != "NotImplemented" and exc.status != 501:
                    raise
                log.warning(
                    "[%s] does not implement DeleteObjects; deleting one key per request",
                    self.name,
                )
                self._single_deletes = True
            else:
                return {
                    err.get("Key", "?"): EndpointError(
                        f"{err.get('Code')}: {err.get('Message')}",
                        op="DeleteObjects",
                        endpoint=self.name,
                        bucket=self.bucket,
                        key=err.get("Key"),
                        code=err.get("Code"),
                    )
                    for err in resp.get("Errors") or ()
                }
        failures: DeleteFailures = {}
        for key in keys:
            try:
                self.delete(key)
            except EndpointError as exc:
                failures[key] = exc
        return failures


def uploads_params(
    prefix: str, page_size: int, key_marker: str | None, upload_id_marker: str | None
) -> dict[str, Any]:
    """ListMultipartUploads parameters, by botocore name."""
    params: dict[str, Any] = {"Prefix": prefix, "MaxUploads": page_size}
    if key_marker is not None:
        params["KeyMarker"] = key_marker
    if upload_id_marker is not None:
        params["UploadIdMarker"] = upload_id_marker
    return params


# --------------------------------------------------------------------------- translation


def _version_param(version_id: str | None) -> dict[str, Any]:
    return {} if version_id is None else {"VersionId": version_id}


def info_from_response(key: str, resp: dict) -> ObjectInfo:
    """What a botocore HeadObject/GetObject answer says about the object."""
    md5 = source_version = None
    for name, value in (resp.get("Metadata") or {}).items():
        if name.lower() == MD5_META:
            md5 = value.lower() if etag_is_md5(value.lower()) else None
        elif name.lower() == SOURCE_VERSION_META:
            source_version = value
    return ObjectInfo(
        key=key,
        size=int(resp.get("ContentLength") or 0),
        etag=clean_etag(resp.get("ETag")),
        last_modified=resp.get("LastModified"),
        md5=md5,
        source_version_id=source_version,
    )


def content_headers_of(resp: dict) -> ContentHeaders:
    """The headers a copy carries, from a botocore GetObject answer."""
    fields: dict[str, str] = {}
    for header, param in _PARAM_OF_HEADER.items():
        if param == "Expires":  # ExpiresString: as sent (botocore >= 1.36); Expires: parsed
            value = resp.get("ExpiresString") or resp.get("Expires")
        else:
            value = resp.get(param)
        if not value:
            continue
        if isinstance(value, datetime):
            value = email.utils.format_datetime(value.astimezone(timezone.utc), usegmt=True)
        fields[header] = str(value)
    for name, value in (resp.get("Metadata") or {}).items():
        fields[META_PREFIX + name.lower()] = value
    return ContentHeaders(fields)


def put_params(headers: ContentHeaders) -> dict[str, Any]:
    """The carried headers as PutObject / CreateMultipartUpload parameters."""
    params: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    cut = len(META_PREFIX)
    for name, value in headers.fields.items():
        if name.startswith(META_PREFIX):
            metadata[name[cut:]] = value
        else:
            params[_PARAM_OF_HEADER[name]] = value
    if metadata:
        params["Metadata"] = metadata
    return params


def _snake(op: str) -> str:
    out = []
    for i, ch in enumerate(op):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
