"""A boto3 client per endpoint, made to work with Ceph RGW, Swift s3api and AWS alike.

What differs from a plain ``boto3.client("s3")`` and why (see the README's compatibility
table):

- checksums are computed only when an operation requires them: botocore >= 1.36 otherwise
  sends ``aws-chunked`` bodies with CRC32 trailers, which Ceph Pacific (411) and Swift 2.30
  (501) refuse;
- payloads are not SHA-256 signed, so a GET body can be streamed into a PUT without seeking;
- SigV2 signs the path that is actually sent (botocore signs ``/bucket/`` but sends
  ``/bucket`` for bucket-level calls, which every real server rejects);
- DeleteObjects carries a Content-MD5, which Swift 2.30 and AWS require;
- retries are botocore's ``standard`` mode: throttling, 5xx, timeouts and connection errors
  are retried with capped exponential backoff and jitter; anything else is mapped by
  :func:`map_client_error` and is fatal when retrying cannot help.

The calls made once per object (GetObject, PutObject of a bytes body, HeadObject, listing
pages) go through :meth:`Endpoint.fast_call`, which sends them with the lean client of
:mod:`s3s3.store.lean` (same signing, addressing and error table, a fraction of botocore's
CPU) unless the endpoint says ``data_path = botocore``.

TLS trust is decided once, in :func:`tls_verify`, for both data paths and as botocore
decides it: the endpoint's ``verify_tls``/``ca_bundle`` keys, then ``AWS_CA_BUNDLE``, the
AWS profile's ``ca_bundle``, ``REQUESTS_CA_BUNDLE``, and botocore's own CA bundle (certifi).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from s3s3.config import EndpointConfig
from s3s3.errors import (
    ConfigError,
    EndpointError,
    FatalEndpointError,
    SourceKeyMissing,
    TransientEndpointError,
)
from s3s3.model import MD5_META, ObjectInfo, UploadInfo, clean_etag, etag_is_md5
from s3s3.store import lean as rawhttp

log = logging.getLogger(__name__)

#: Metadata key s3s3 writes where the ETag is not the md5 (multipart uploads).

#: Error codes retrying cannot help with.
FATAL_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "InvalidBucketName",
        "AllBucketsPublicAccessBlocked",
        "AuthorizationHeaderMalformed",
        "InvalidToken",
        "ExpiredToken",
        "AccountProblem",
        "403",
        "InvalidRequest",
        "PermanentRedirect",
        "NotImplemented",
        "MethodNotAllowed",
        "InvalidArgument",
    }
)
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "InternalError",
        "503",
        "500",
        "502",
        "504",
        "TooManyRequests",
    }
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
        retries={"mode": "standard", "max_attempts": cfg.max_attempts},
        max_pool_connections=cfg.max_pool_connections,
        connect_timeout=cfg.connect_timeout_s,
        read_timeout=cfg.read_timeout_s,
        tcp_keepalive=True,
        parameter_validation=False,
    )


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


_shared_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


def _shared_boto3_session() -> boto3.session.Session:
    """The process's shared session, made on first use; call with ``_session_lock`` held."""
    global _shared_session
    if _shared_session is None:
        _shared_session = boto3.session.Session()
    return _shared_session


def _profile_ca_bundle(session: botocore.session.Session | None) -> str | None:
    if session is not None:
        return session.get_config_variable("ca_bundle")
    with _session_lock:  # sessions are not thread-safe
        return _shared_boto3_session()._session.get_config_variable("ca_bundle")


def build_client(cfg: EndpointConfig, *, session: boto3.session.Session | None = None):
    """A boto3 S3 client for ``cfg`` with the compatibility handlers registered.

    Without ``session``, clients share one session per process: its loader keeps the S3
    model once parsed, so every client after the first costs ~5 ms instead of ~80 ms (a
    run with three endpoints starts 0.15 s sooner). Sessions are not thread-safe; clients
    are, so only the creation is serialised.
    """
    with _session_lock:
        session = session or _shared_boto3_session()
        # Resolved here, not left to botocore (verify=None), so that the lean client, which
        # asks tls_verify too, trusts exactly what the botocore client trusts.
        verify = tls_verify(cfg, session=session._session)
        client = session.client(
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
    exc: Exception, *, op: str, cfg: EndpointConfig, key: str | None = None
) -> Exception:
    """Turn a botocore exception into the s3s3 error that says whether to retry.

    Returns the exception to raise (``raise map_client_error(...) from exc``). Exceptions
    that are not botocore's are returned unchanged.
    """
    kw = dict(op=op, endpoint=cfg.name, bucket=cfg.bucket, key=key)
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = err.get("Message") or code or str(exc)
        return classify_error(code, status, message, op=op, cfg=cfg, key=key)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return FatalEndpointError(
            "no credentials: set aws_access_key_id and "
            "aws_secret_access_key, or the S3S3_* environment variables",
            code="NoCredentials",
            **kw,
        )
    if isinstance(exc, (botocore.exceptions.SSLError,)):
        return FatalEndpointError(f"TLS failed: {exc}", code="TLS", **kw)
    if isinstance(
        exc,
        (
            botocore.exceptions.ConnectionError,
            botocore.exceptions.HTTPClientError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.IncompleteReadError,
            botocore.exceptions.ResponseStreamingError,
            botocore.exceptions.UnseekableStreamError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return TransientEndpointError(f"{type(exc).__name__}: {exc}", code="connection", **kw)
    return exc


def classify_error(
    code: str,
    status: int | None,
    message: str,
    *,
    op: str,
    cfg: EndpointConfig,
    key: str | None = None,
) -> EndpointError:
    """The s3s3 error for an S3 error answer: the one table both data paths use."""
    kw = dict(op=op, endpoint=cfg.name, bucket=cfg.bucket, key=key)
    message = message or code
    text = f"{code} (HTTP {status}): {message}" if code else f"HTTP {status}: {message}"
    if code == "NoSuchBucket" or (status == 404 and key is None):
        return FatalEndpointError(f"bucket does not exist: {text}", code=code, status=status, **kw)
    if code in MISSING_CODES and key is not None:
        return SourceKeyMissing(f"no such key: {text}", code=code, status=status, **kw)
    if code in THROTTLE_CODES:
        return TransientEndpointError(text, code=code, status=status, **kw)
    # Before the 5xx rule: a 501 NotImplemented will not be implemented on a retry.
    if code in FATAL_CODES or status in (401, 403):
        return FatalEndpointError(text, code=code, status=status, **kw)
    if status is not None and status >= 500:
        return TransientEndpointError(text, code=code, status=status, **kw)
    return EndpointError(text, code=code, status=status, **kw)


# --------------------------------------------------------------------------- endpoint


class Endpoint:
    """One configured bucket on one S3 server, with the calls s3s3 makes on it.

    The client is built lazily and shared by threads (boto3 clients are thread-safe), and
    so is the lean client of :attr:`raw`.
    """

    def __init__(self, cfg: EndpointConfig, client=None) -> None:
        self.cfg = cfg
        self._client = client
        self._raw = None
        # False once the lean client is ruled out: data_path = botocore, a proxy, a redirect.
        self._raw_usable = cfg.data_path == "raw"
        self._raw_lock = threading.Lock()

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
        if self._client is None:
            self._client = build_client(self.cfg)
        return self._client

    @property
    def raw(self):
        """The lean client (:class:`s3s3.store.lean.RawClient`), or None where botocore is used."""
        if self._raw is None and self._raw_usable:
            with self._raw_lock:
                if self._raw is None and self._raw_usable:
                    self._raw = self._build_raw()
        return self._raw

    def _build_raw(self):
        url = self.cfg.endpoint_url or self.client.meta.endpoint_url
        if rawhttp.proxy_for(url):
            self._raw_usable = False
            log.info("[%s] goes through a proxy: object calls use botocore", self.name)
            return None
        try:
            return rawhttp.RawClient(self.cfg, self.client)
        except botocore.exceptions.BotoCoreError as exc:
            # No credentials, say: botocore's own calls will raise the mapped error.
            log.debug(
                "[%s] lean client unavailable (%s): object calls use botocore", self.name, exc
            )
            self._raw_usable = False
            return None

    def fast_call(self, op: str, key: str | None = None, **params):
        """:meth:`call` for the per-object operations, through the lean client when it can.

        GetObject (``Body`` is streamed: read it, then close it), PutObject with a bytes
        ``Body``, HeadObject, and ListObjectsV2/ListObjects pages; anything else, and every
        call when ``data_path = botocore``, goes to :meth:`call`. The response dict holds
        the fields s3s3 reads, in botocore's shape; errors are the same s3s3 errors.
        """
        raw = self.raw
        if raw is not None:
            try:
                return raw.call(op, key, **params)
            except rawhttp.NeedsBotocore as exc:
                if exc.permanent:
                    log.info("[%s] %s; object calls use botocore from now on", self.name, exc)
                    self._raw_usable = False
                    self._raw = None
        return self.call(op, key, **params)

    def call(self, op: str, key: str | None = None, **params):
        """Run one S3 operation on this bucket, mapping botocore errors to s3s3's."""
        method = getattr(self.client, _snake(op))
        try:
            return method(
                Bucket=self.cfg.bucket, **({"Key": key} if key is not None else {}), **params
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise map_client_error(exc, op=op, cfg=self.cfg, key=key) from exc

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, ETag and s3s3 md5, or None when it does not exist."""
        try:
            resp = self.fast_call("HeadObject", key)
        except SourceKeyMissing:
            return None
        return info_from_head(key, resp)

    def check_bucket(self) -> None:
        """Fail fast, with a fatal error, on bad credentials or a missing bucket."""
        self.call("HeadBucket")

    def delete(self, key: str) -> None:
        self.call("DeleteObject", key)

    def list_uploads(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[UploadInfo]:
        """Every multipart upload in progress under ``prefix``, page by page.

        Pages follow NextKeyMarker/NextUploadIdMarker; where a truncated page leaves them
        empty (Swift 2.30 does, with small pages) the last upload listed gives them. A page
        that would not move the markers on ends the listing rather than loop.

        Pages go through the lean client (:meth:`fast_call`): this runs once per destination
        on every start-up, and botocore's first ListMultipartUploads of a process costs
        ~28 ms of CPU. SigV2 endpoints, and ``data_path = botocore``, use botocore.
        """
        params: dict = {"Prefix": prefix, "MaxUploads": page_size}
        while True:
            resp = self.fast_call("ListMultipartUploads", **params)
            uploads = resp.get("Uploads") or []
            for item in uploads:
                yield UploadInfo(
                    key=item.get("Key", ""),
                    upload_id=item.get("UploadId", ""),
                    initiator=str((item.get("Initiator") or {}).get("ID") or ""),
                    initiated=item.get("Initiated"),
                )
            if not resp.get("IsTruncated") or not uploads:
                return
            markers = (
                resp.get("NextKeyMarker") or uploads[-1].get("Key", ""),
                resp.get("NextUploadIdMarker") or uploads[-1].get("UploadId", ""),
            )
            if markers == (params.get("KeyMarker"), params.get("UploadIdMarker")):
                log.warning(
                    "[%s] ListMultipartUploads does not page on past %r; listing stops there",
                    self.name,
                    markers[0],
                )
                return
            params["KeyMarker"], params["UploadIdMarker"] = markers


def info_from_head(key: str, resp: dict) -> ObjectInfo:
    meta = {k.lower(): v for k, v in (resp.get("Metadata") or {}).items()}
    md5 = meta.get(MD5_META)
    return ObjectInfo(
        key=key,
        size=int(resp.get("ContentLength") or 0),
        etag=clean_etag(resp.get("ETag")),
        last_modified=resp.get("LastModified"),
        md5=md5.lower() if md5 and etag_is_md5(md5.lower()) else None,
    )


def _snake(op: str) -> str:
    out = []
    for i, ch in enumerate(op):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
