"""The lean store: the calls s3s3 makes once per object (GET, PUT of a bytes body, HEAD,
listing pages) over pooled ``http.client``, in model types.

Why: botocore spends about 2 ms of client CPU on a GET and a PUT of a 4 KiB object, most of
it in per-request machinery (event hooks, endpoint ruleset resolution, request
serialisation, response parsing with ``dateutil``), not in the network. The race on small
objects is won on client CPU per object, so the hot calls are sent here instead:

- the transport is the standard library's ``http.client``, the layer under urllib3 and
  botocore, with keep-alive connections kept in a small pool per endpoint
  (:class:`ConnectionPool`), the endpoint's connect and read timeouts, TLS verification
  and the CA bundle botocore would use (given by the boto3 store: the INI's ``ca_bundle``,
  then ``AWS_CA_BUNDLE``, the AWS profile, ``REQUESTS_CA_BUNDLE``). urllib3's pool and
  response wrappers cost ~0.3 ms of CPU per request on the benchmark machine, more than
  everything else here together;
- requests are signed by :mod:`s3s3.store.signing`, which produces byte for byte what
  botocore's ``S3SigV4Auth`` (with ``UNSIGNED-PAYLOAD``, as the botocore clients are
  configured) and ``HmacV1Auth`` (SigV2, over the resource ``/bucket/key`` as botocore
  signs it) produce, which took a 4 KiB copy from 0.86 to 0.68 ms of client CPU (``python
  -m bench options``); credentials are botocore's (boto3's public ``get_credentials``),
  frozen per request so that refreshable credentials are refreshed;
- the bucket's base URL (path-style or virtual-hosted, AWS endpoint resolution) is asked
  of botocore once, by presigning a probe URL, so both data paths address the same host;
- keys are URL-encoded as botocore encodes them (``quote(key, safe='/~')``), object listings
  are requested with ``encoding-type=url`` and decoded as botocore decodes them, and parsed
  with ElementTree, several times faster than botocore's parser;
- a GET's or HEAD's headers are read once, into an ``ObjectInfo`` and the
  ``ContentHeaders`` a copy carries, and a PUT writes those as they came: no botocore names
  in between;
- errors go through the table botocore's errors go through
  (:func:`s3s3.store.s3errors.classify_error`); network errors and timeouts, while sending
  or while reading a body, are :class:`~s3s3.errors.TransientEndpointError`. Nothing is
  retried here: the owner of the operation retries it (``s3s3.retry``). The one exception
  is a kept connection that the server had closed as the request went out: that request is
  sent once more on a fresh connection, as urllib3 does (every call here is idempotent).

ListMultipartUploads pages are sent here too (the start-up sweep of stale uploads makes
one per destination per run, and botocore's first call of an operation costs ~28 ms of CPU),
plain, without ``encoding-type=url``, which Ceph and Swift answer in ways that cannot be
decoded safely; except with SigV2, which signs the ``uploads`` sub-resource and
:mod:`s3s3.store.signing` signs none. Everything else is the boto3 store's: the other
multipart calls, streamed PUTs (botocore sends ``Expect: 100-continue``), deletes, bucket
calls, endpoints behind an HTTP proxy; the :class:`~s3s3.store.endpoint.Endpoint` decides
which, once. When a server answers with a redirect (an AWS bucket in another region), the
call fails before anything was consumed and :attr:`LeanStore.redirected` records it: the
endpoint hands the call, and every later one, to botocore, whose redirect handling applies.

This module imports no other store: it is given its base URL, region, credentials and TLS
trust.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import http.client
import logging
import os
import select
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote_plus, unquote_to_bytes, urlsplit

import botocore.httpsession
import botocore.utils

from s3s3 import __version__
from s3s3.config import EndpointConfig
from s3s3.errors import (
    EndpointError,
    FatalEndpointError,
    ResponseError,
    SourceKeyMissing,
    TransientEndpointError,
)
from s3s3.model import MD5_META, SOURCE_VERSION_META, ObjectInfo, clean_etag, etag_is_md5
from s3s3.store import signing
from s3s3.store.base import (
    META_PREFIX,
    NO_HEADERS,
    ContentHeaders,
    ObjectStream,
    Page,
    UploadPage,
    VersionPage,
    content_range_size,
    page_of,
    range_header,
    upload_page_of,
    version_page_of,
)
from s3s3.store.s3errors import classify_error

log = logging.getLogger(__name__)

__all__ = [
    "SIGV2",
    "ConnectionPool",
    "LeanBody",
    "LeanStore",
    "parse_listing",
    "parse_uploads",
    "proxy_for",
    "unquote_key",
]

#: What every request sends as User-Agent (SigV4 never signs it).
USER_AGENT = f"s3s3/{__version__}"

#: The ``signature_version`` values that mean SigV2.
SIGV2 = frozenset({"s3", "v2"})

#: Response headers a copy carries, by lower-case name: their wire name.
_CARRIED = {
    "content-type": "Content-Type",
    "content-encoding": "Content-Encoding",
    "content-disposition": "Content-Disposition",
    "content-language": "Content-Language",
    "cache-control": "Cache-Control",
    "expires": "Expires",
}
_MD5_HEADER = META_PREFIX + MD5_META
_SOURCE_VERSION_HEADER = META_PREFIX + SOURCE_VERSION_META

_REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
_REDIRECT_CODES = frozenset(
    {
        "PermanentRedirect",
        "TemporaryRedirect",
        "Redirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    }
)

#: Errors of the network or the peer (timeouts and resets are OSErrors): transient.
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


def proxy_for(url: str) -> str | None:
    """The proxy botocore would use for ``url`` from the environment, or None.

    The lean store connects directly, so an endpoint behind a proxy stays on botocore.
    """
    proxies = botocore.utils.get_environ_proxies(url)
    return proxies.get(urlsplit(url).scheme) if proxies else None


def host_header(scheme: str, hostname: str, port: int | None) -> str:
    """The Host header botocore signs: lower-case, default port left out, IPv6 bracketed."""
    host = hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    return host


# --------------------------------------------------------------------------- connections


class ConnectionPool:
    """Keep-alive connections to one host: reused last-in first-out, checked before reuse.

    At most ``max_idle`` connections are kept between requests; more may be open at once
    (the caller bounds concurrency). A kept connection the server has closed meanwhile is
    detected (it polls readable while idle) and replaced, as urllib3 does; one that fails
    on first use anyway is replaced once more by :meth:`exchange`. ``endpoint`` and
    ``bucket`` name the store in the error of a failed TLS handshake.
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int | None,
        *,
        max_idle: int,
        connect_timeout_s: float,
        read_timeout_s: float,
        verify: bool | str = True,
        endpoint: str = "",
        bucket: str = "",
    ) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port or (443 if scheme == "https" else 80)
        self._max_idle = max_idle
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._context = _ssl_context(verify) if scheme == "https" else None
        self._endpoint = endpoint
        self._bucket = bucket

    def __repr__(self) -> str:
        return f"ConnectionPool({self.scheme}://{self.host}:{self.port}, idle={len(self._idle)})"

    def exchange(
        self,
        method: str,
        target: str,
        headers: dict,
        body: bytes | None,
        *,
        op: str,
        key: str | None = None,
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        """Send one request; return ``(response, connection)`` once its headers are in.

        The connection goes back with :meth:`release` when the response is read to the end,
        or to :meth:`discard`. A network failure is raised as it is (OSError,
        HTTPException); a TLS handshake that fails (certificate, protocol: retrying cannot
        fix it) is a :class:`~s3s3.errors.FatalEndpointError` of ``op`` on ``key``.
        """
        conn, reused = self._acquire(op, key)
        try:
            conn.request(method, target, body=body, headers=headers)
            return conn.getresponse(), conn
        except ConnectionError:
            conn.close()
            if not reused:
                raise
        except BaseException:
            conn.close()
            raise
        # The server closed the kept connection as the request went out (its keep-alive
        # timeout): every call sent here is idempotent, so send it once more, fresh.
        conn = self._connect(op, key)
        try:
            conn.request(method, target, body=body, headers=headers)
            return conn.getresponse(), conn
        except BaseException:
            conn.close()
            raise

    def release(self, conn: http.client.HTTPConnection) -> None:
        """Keep a connection whose last response was read to the end."""
        if conn.sock is not None:  # None: the server said Connection: close
            with self._lock:
                if len(self._idle) < self._max_idle:
                    self._idle.append(conn)
                    return
        conn.close()

    @staticmethod
    def discard(conn: http.client.HTTPConnection) -> None:
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _acquire(self, op: str, key: str | None) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(op, key), False
            if not _is_dropped(conn.sock):
                return conn, True
            conn.close()

    def _connect(self, op: str, key: str | None) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._context is not None:
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self._context, timeout=self._connect_timeout_s
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self._connect_timeout_s)
        try:
            conn.connect()
        except ssl.SSLError as exc:  # the certificate or the protocol: not the network
            conn.close()
            raise FatalEndpointError(
                f"TLS failed: {exc}",
                op=op,
                endpoint=self._endpoint,
                bucket=self._bucket,
                key=key,
                code="TLS",
            ) from exc
        except BaseException:
            conn.close()
            raise
        sock = conn.sock
        sock.settimeout(self._read_timeout_s)
        # As the botocore clients: no Nagle delay (small requests), keep-alive probes.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return conn


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # ``verify`` comes from the boto3 store's tls_verify, as the botocore client's does (the
    # INI's ca_bundle, AWS_CA_BUNDLE, the AWS profile, REQUESTS_CA_BUNDLE); True: botocore's
    # own bundle (certifi's). A folder of hashed CA files is taken too, as botocore takes it.
    cert_path = botocore.httpsession.get_cert_path(verify)
    if os.path.isdir(cert_path):
        return ssl.create_default_context(capath=cert_path)
    return ssl.create_default_context(cafile=cert_path)


if hasattr(select, "poll"):

    def _is_dropped(sock) -> bool:
        """An idle keep-alive socket that polls readable was closed (or is out of step)."""
        if sock is None:
            return True
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
else:  # pragma: no cover - Windows

    def _is_dropped(sock) -> bool:
        return sock is None or bool(select.select([sock], [], [], 0)[0])


# --------------------------------------------------------------------------- bodies


class LeanBody:
    """The streamed body of a GET (a :class:`~s3s3.store.base.Body`).

    ``close()`` hands the connection back to the pool when the body was read to the end,
    and closes it otherwise (the rest of the body would still be on the wire). Errors while
    reading, and a body shorter than its Content-Length, are
    :class:`TransientEndpointError`.
    """

    def __init__(
        self,
        resp: http.client.HTTPResponse,
        conn,
        *,
        pool: ConnectionPool,
        store: LeanStore,
        key: str,
    ) -> None:
        self._resp = resp
        self._conn = conn
        self._pool = pool
        self._store = store
        self._key = key
        self._left = resp.length  # None when chunked

    def read(self, amt: int | None = None) -> bytes:
        try:
            data = self._resp.read() if amt is None or amt < 0 else self._resp.read(amt)
        except _NETWORK_ERRORS as exc:
            self._drop()
            raise self._store._network_error("GetObject", self._key, exc) from exc
        if self._left is not None:
            self._left -= len(data)
            if not data and amt and self._left > 0:
                self._drop()
                raise TransientEndpointError(
                    f"the connection closed with {self._left} bytes of the body unread",
                    op="GetObject",
                    endpoint=self._store.cfg.name,
                    bucket=self._store.cfg.bucket,
                    key=self._key,
                    code="connection",
                )
        if self._conn is not None and self._resp.isclosed():
            self._pool.release(self._conn)
            self._conn = None
        return data

    def close(self) -> None:
        if self._conn is None:
            return
        if self._resp.isclosed():
            self._pool.release(self._conn)
            self._conn = None
        else:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._pool.discard(self._conn)
            self._conn = None
        self._resp.close()

    def __enter__(self) -> LeanBody:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- the store


class LeanStore:
    """HEAD, GET, PUT of a bytes body and listing pages of one bucket, over http.client,
    signed as botocore signs.

    Thread-safe: share one per endpoint. It is given what it needs of botocore: the
    bucket's ``base_url`` (:meth:`BotoStore.object_base_url`), the ``region``, the
    ``credentials`` (botocore's, frozen per request; None: every request fails as botocore
    would, with NoCredentials) and the TLS ``verify`` value.
    """

    def __init__(
        self,
        cfg: EndpointConfig,
        *,
        base_url: str,
        region: str,
        credentials,
        verify: bool | str = True,
    ) -> None:
        self.cfg = cfg
        self._credentials = credentials
        self._region = region
        sigv2 = cfg.signature_version in SIGV2
        self._signer: signing.SigV2Signer | signing.SigV4Signer = (
            signing.SigV2Signer() if sigv2 else signing.SigV4Signer(region)
        )
        #: False with SigV2, which signs the ``uploads`` sub-resource (signing signs none).
        self.lists_uploads = not sigv2
        #: Set once a server answered with a redirect: the caller should use botocore.
        self.redirected = False
        parts = urlsplit(base_url)
        self.base_url = base_url
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._object_prefix = parts.path  # "/bucket/" or "/"; the quoted key follows
        # Bucket-level requests go to "/bucket" (path-style) or "/" (virtual-hosted), as
        # botocore sends them. SigV2 signs what is sent, but always names the bucket.
        self._bucket_path = parts.path.rstrip("/") or "/"
        self._virtual = self._bucket_path == "/"
        self._auth_bucket = "/" + quote(cfg.bucket.encode("utf-8"), safe="/~")
        self._host = host_header(parts.scheme, parts.hostname or "", parts.port)
        self._pool = ConnectionPool(
            parts.scheme,
            parts.hostname or "",
            parts.port,
            max_idle=cfg.max_pool_connections,
            connect_timeout_s=cfg.connect_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            verify=verify,
            endpoint=cfg.name,
            bucket=cfg.bucket,
        )

    def __repr__(self) -> str:
        return f"LeanStore({self.cfg.describe()}, {self.base_url})"

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def bucket(self) -> str:
        return self.cfg.bucket

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------- objects

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        path, auth_path, query = self._version_paths(key, version_id)
        try:
            resp, _ = self._request("HEAD", path, auth_path, op="HeadObject", key=key, query=query)
        except SourceKeyMissing:
            return None
        return _object_headers(key, resp.headers, carry=False)[0]

    def get(
        self,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ObjectStream:
        """GetObject (of bytes ``start``-``end`` only, only if it is still ``if_match``, and
        of version ``version_id``, where given); read the body and close it (or the stream)."""
        wire: dict[str, str] = {}
        ranged = range_header(start, end)
        if ranged is not None:
            wire["Range"] = ranged
        if if_match is not None:
            wire["If-Match"] = f'"{clean_etag(if_match)}"'
        path, auth_path, query = self._version_paths(key, version_id)
        resp, conn = self._request(
            "GET",
            path,
            auth_path,
            op="GetObject",
            key=key,
            query=query,
            stream=True,
            headers=wire,
        )
        info, headers = _object_headers(key, resp.headers, carry=True)
        whole = content_range_size(resp.headers.get("Content-Range"))
        if whole is not None:  # a ranged answer's Content-Length is the range's
            info = dataclasses.replace(info, size=whole)
        return ObjectStream(
            info, headers, LeanBody(resp, conn, pool=self._pool, store=self, key=key)
        )

    def put(
        self,
        key: str,
        body: bytes,
        *,
        size: int,
        headers: ContentHeaders = NO_HEADERS,
        md5: str | None = None,
    ) -> str:
        """PutObject of a bytes body, with the carried ``headers`` as they came."""
        wire = {"Content-Length": str(size), **headers.fields}
        if md5 is not None:
            wire["Content-MD5"] = base64.b64encode(bytes.fromhex(md5)).decode("ascii")
        resp, _ = self._request(
            "PUT", *self._object_paths(key), op="PutObject", key=key, headers=wire, body=body
        )
        return clean_etag(resp.headers.get("ETag"))

    # ------------------------------------------------------------------- listings

    def list_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        marker: str | None = None,
        start_after: str | None = None,
    ) -> Page:
        v1 = self.cfg.list_version == 1
        answer = self.list_answer(
            prefix, page_size=page_size, marker=marker, start_after=start_after
        )
        return page_of(answer, v1=v1)

    def list_answer(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        marker: str | None = None,
        start_after: str | None = None,
    ) -> dict:
        """One ListObjectsV2 page (ListObjects where ``list_version = 1``; ``marker`` is its
        continuation token or marker, ``start_after`` a key to start after) parsed into
        botocore's shape: Contents (Key, Size, ETag, LastModified), IsTruncated, KeyCount,
        NextContinuationToken or NextMarker…"""
        if self.cfg.list_version == 1:
            query = [("encoding-type", "url"), ("max-keys", str(page_size)), ("prefix", prefix)]
            after = marker if marker is not None else start_after
            if after is not None:
                query.append(("marker", after))
            return self._list("ListObjects", query, _parse_v1)
        query = [
            ("list-type", "2"),
            ("encoding-type", "url"),
            ("max-keys", str(page_size)),
            ("prefix", prefix),
        ]
        if marker is not None:
            query.append(("continuation-token", marker))
        elif start_after is not None:
            query.append(("start-after", start_after))
        return self._list("ListObjectsV2", query, _parse_v2)

    def list_uploads_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        key_marker: str | None = None,
        upload_id_marker: str | None = None,
    ) -> UploadPage:
        return upload_page_of(
            self.uploads_answer(
                prefix,
                page_size=page_size,
                key_marker=key_marker,
                upload_id_marker=upload_id_marker,
            )
        )

    def uploads_answer(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        key_marker: str | None = None,
        upload_id_marker: str | None = None,
    ) -> dict:
        """One ListMultipartUploads page parsed into botocore's shape: Uploads (Key,
        UploadId, Initiator, Owner, StorageClass, Initiated), IsTruncated, NextKeyMarker,
        NextUploadIdMarker… (:func:`parse_uploads`). Not with SigV2 (:attr:`lists_uploads`).
        """
        if not self.lists_uploads:
            raise ValueError(
                "ListMultipartUploads with SigV2 signs the uploads sub-resource, which the "
                "lean store does not sign: list uploads through botocore"
            )
        # As botocore sends it ("?uploads&prefix=…"), without encoding-type=url: Ceph 16.2
        # then encodes each Key but says nothing (no EncodingType), and Swift 2.30 says
        # EncodingType=url but leaves the markers and Prefix plain, so neither answer can be
        # decoded safely. Plain answers are what botocore reads, on every server.
        query: list[tuple[str, str | None]] = [
            ("uploads", None),
            ("prefix", prefix),
            ("max-uploads", str(page_size)),
        ]
        if key_marker is not None:
            query.append(("key-marker", key_marker))
        if upload_id_marker is not None:
            query.append(("upload-id-marker", upload_id_marker))
        return self._list("ListMultipartUploads", query, parse_uploads)

    def list_versions_page(
        self,
        prefix: str = "",
        *,
        page_size: int = 1000,
        key_marker: str | None = None,
        version_id_marker: str | None = None,
    ) -> VersionPage:
        """One ListObjectVersions page, in the server's order (:func:`parse_versions`)."""
        query: list[tuple[str, str | None]] = [
            ("versions", None),
            ("encoding-type", "url"),
            ("max-keys", str(page_size)),
            ("prefix", prefix),
        ]
        if key_marker is not None:
            query.append(("key-marker", key_marker))
            if version_id_marker is not None:
                query.append(("version-id-marker", version_id_marker))
        return version_page_of(self._list("ListObjectVersions", query, parse_versions))

    def _list(self, op: str, query, parse) -> dict:
        """GET the bucket with ``query`` (a value of None: the bare name, as ``uploads``),
        and ``parse`` the answer; an unreadable one is a transient XMLParseError."""
        qs = "&".join(
            name if value is None else f"{name}={botocore.utils.percent_encode(value)}"
            for name, value in query
        )
        # SigV2 resource: botocore's "/bucket/", trimmed as sent ("/bucket") path-style.
        auth_path = self._auth_bucket + ("/" if self._virtual else "")
        _, data = self._request("GET", self._bucket_path, auth_path, op=op, query=qs)
        try:
            return parse(data)
        except ResponseError as exc:
            raise TransientEndpointError(
                str(exc),
                op=op,
                endpoint=self.cfg.name,
                bucket=self.cfg.bucket,
                code="XMLParseError",
            ) from exc

    # ------------------------------------------------------------------- requests

    def _version_paths(self, key: str, version_id: str | None) -> tuple[str, str, str]:
        """The path, SigV2 resource and query of an object request, of ``version_id`` when
        given (a sub-resource SigV2 signs)."""
        path, auth_path = self._object_paths(key)
        if version_id is None:
            return path, auth_path, ""
        query = "versionId=" + botocore.utils.percent_encode(version_id)
        return path, f"{auth_path}?versionId={version_id}", query

    def _object_paths(self, key: str) -> tuple[str, str]:
        """The path sent, and the SigV2 resource (``/bucket/key``, as botocore signs it)."""
        quoted = quote(key.encode("utf-8"), safe="/~")  # botocore's {Key+} serialisation
        return self._object_prefix + quoted, f"{self._auth_bucket}/{quoted}"

    def _sign(
        self, method: str, target: str, headers: dict, auth_path: str, *, op: str, key: str | None
    ) -> dict:
        credentials = self._credentials.get_frozen_credentials() if self._credentials else None
        if credentials is None or credentials.access_key is None:
            raise FatalEndpointError(
                "no credentials: set aws_access_key_id and aws_secret_access_key, or the "
                "S3S3_* environment variables",
                op=op,
                endpoint=self.cfg.name,
                bucket=self.cfg.bucket,
                key=key,
                code="NoCredentials",
            )
        headers["Host"] = self._host
        if isinstance(self._signer, signing.SigV2Signer):
            signed = self._signer.sign(credentials, method, auth_path, headers)
        else:
            path, _, query = target.partition("?")
            signed = self._signer.sign(credentials, method, path, query, headers)
        signed["User-Agent"] = USER_AGENT
        return signed

    def _request(
        self,
        method: str,
        path: str,
        auth_path: str,
        *,
        op: str,
        key: str | None = None,
        query: str = "",
        headers: dict | None = None,
        body: bytes | None = None,
        stream: bool = False,
    ):
        """Send one request, once. Returns ``(response, body bytes)``, or ``(response,
        connection)`` with ``stream`` (the body is left to read); raises the tree's error."""
        target = path + ("?" + query if query else "")
        signed = self._sign(
            method, target, {} if headers is None else headers, auth_path, op=op, key=key
        )
        try:
            resp, conn = self._pool.exchange(method, target, signed, body, op=op, key=key)
        except _NETWORK_ERRORS as exc:
            raise self._network_error(op, key, exc) from exc
        if resp.status < 300 and stream:
            return resp, conn
        try:
            data = resp.read()
        except _NETWORK_ERRORS as exc:
            self._pool.discard(conn)
            raise self._network_error(op, key, exc) from exc
        self._pool.release(conn)
        if resp.status < 300:
            return resp, data
        raise self._status_error(resp, data, op, key)

    def _network_error(self, op: str, key: str | None, exc: BaseException):
        return TransientEndpointError(
            f"{type(exc).__name__}: {exc}",
            op=op,
            endpoint=self.cfg.name,
            bucket=self.cfg.bucket,
            key=key,
            code="connection",
        )

    def _status_error(self, resp, data: bytes, op: str, key: str | None) -> EndpointError:
        """The s3s3 error for a non-2xx answer, as botocore's would be mapped; a redirect
        is fatal here and recorded (:attr:`redirected`)."""
        code, message = _error_code_message(data)
        status = resp.status
        if status in _REDIRECT_STATUSES or code in _REDIRECT_CODES:
            self.redirected = True
            return FatalEndpointError(
                f"{op} answered {status} {code or resp.reason}: a redirect, left to "
                "botocore's redirect handling",
                op=op,
                endpoint=self.cfg.name,
                bucket=self.cfg.bucket,
                key=key,
                code=code or str(status),
                status=status,
            )
        if not code:
            # botocore's parser does the same for answers without an S3 error document.
            code, message = str(status), message or resp.reason or ""
        return classify_error(code, status, message, op=op, cfg=self.cfg, key=key)


# --------------------------------------------------------------------------- parsing


def _object_headers(key: str, message, *, carry: bool) -> tuple[ObjectInfo, ContentHeaders]:
    """A GetObject/HeadObject answer's headers, read once: what the object is, and (with
    ``carry``) the headers a copy carries, by wire name (repeated headers joined with
    ``, ``, as botocore joins them; empty content headers left out, as a copy leaves them)."""
    size = 0
    etag = modified = ""
    fields: dict[str, str] = {}
    for name, value in message.items():
        lname = name.lower()
        if lname.startswith(META_PREFIX):
            wire = lname
        else:
            wire = _CARRIED.get(lname)
            if wire is None:
                if lname == "content-length":
                    size = int(value or 0)
                elif lname == "etag":
                    etag = value
                elif lname == "last-modified":
                    modified = value
                continue
            if not value:
                continue
        if wire in fields:
            fields[wire] = f"{fields[wire]}, {value}"
        else:
            fields[wire] = value
    md5 = fields.get(_MD5_HEADER)
    source_version = fields.get(_SOURCE_VERSION_HEADER)
    if md5 is not None:
        md5 = md5.lower()
        if not etag_is_md5(md5):
            md5 = None
    info = ObjectInfo(
        key=key,
        size=size,
        etag=clean_etag(etag),
        last_modified=_parse_http_date(modified) if modified else None,
        md5=md5,
        source_version_id=source_version,
    )
    return info, ContentHeaders(fields) if carry and fields else NO_HEADERS


def _parse_v2(data: bytes) -> dict:
    # botocore decodes these V2 fields (besides the keys), and only these.
    return parse_listing(data, decode=("Delimiter", "Prefix", "StartAfter"))


def _parse_v1(data: bytes) -> dict:
    return parse_listing(data, decode=("Delimiter", "Marker", "NextMarker"))


def _parse_http_date(value: str) -> datetime | None:
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            return botocore.utils.parse_timestamp(value)
        except (TypeError, ValueError):
            return None


def _parse_iso_date(value: str | None) -> datetime | None:
    """``2024-01-31T12:00:00.000Z`` as an aware UTC datetime (fromisoformat is ~20x dateutil)."""
    if not value:
        return None
    if value.endswith("Z"):
        try:
            return datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return botocore.utils.parse_timestamp(value)


def unquote_key(value: str) -> str:
    """``urllib.parse.unquote_plus(value)``, which botocore decodes listings with, faster.

    Servers percent-encode every non-ASCII byte, so encoded keys are ASCII, and for ASCII
    text unquote_plus is exactly this byte-level decoding (half the CPU); anything else
    goes to unquote_plus itself.
    """
    if "%" not in value:
        return value.replace("+", " ")
    if value.isascii():
        return unquote_to_bytes(value.replace("+", " ")).decode("utf-8", "replace")
    return unquote_plus(value)


def _error_code_message(data: bytes) -> tuple[str, str]:
    """The Code and Message of an S3 error body; ``("", "")`` for anything unreadable.

    It never raises: it runs while an error is being reported.
    """
    if not data:
        return "", ""
    try:
        root = ET.fromstring(data)
    # LookupError, ValueError: an XML declaration naming an unknown or multi-byte encoding.
    except (ET.ParseError, LookupError, ValueError):
        return "", ""
    ns = _namespace(root.tag)
    return (root.findtext(ns + "Code") or "").strip(), (root.findtext(ns + "Message") or "")


def _namespace(tag: str) -> str:
    return tag[: tag.index("}") + 1] if tag.startswith("{") else ""


def parse_listing(data: bytes, *, decode: tuple[str, ...] = ()) -> dict:
    """A ListObjects/ListObjectsV2 answer as botocore's parsed dict (the fields s3s3 reads).

    Contents entries carry Key, Size (int), ETag (quoted, as sent) and LastModified (aware
    datetime). When the answer says ``EncodingType=url``, keys and the ``decode`` fields
    are decoded with ``unquote_plus``, exactly as botocore does.

    Raises :class:`~s3s3.errors.ResponseError` ("unreadable listing: ...") for an answer
    that cannot be read: not well-formed XML (or in an encoding expat cannot read), a
    Size, KeyCount or MaxKeys that is not an integer, a LastModified that is not a date.
    Nothing else escapes (fuzzed: fuzz/fuzz_listing.py).
    """
    try:
        return _parse_listing(data, decode)
    # ParseError: malformed XML; LookupError: unknown encoding; ValueError: int() of a
    # non-number, a bad date, a multi-byte encoding; OverflowError, RuntimeError: an epoch
    # LastModified beyond datetime's range (botocore.utils.parse_timestamp); ArithmeticError:
    # decimal.InvalidOperation from dateutil on a minute of 100+ digits.
    except (ET.ParseError, LookupError, ValueError, ArithmeticError, RuntimeError) as exc:
        raise ResponseError(f"unreadable listing: {str(exc)[:200]}") from exc


def _parse_listing(data: bytes, decode: tuple[str, ...]) -> dict:
    root = ET.fromstring(data)
    ns = _namespace(root.tag)
    t_contents, t_key, t_size = ns + "Contents", ns + "Key", ns + "Size"
    t_etag, t_modified = ns + "ETag", ns + "LastModified"
    out: dict = {}
    entries = []
    for child in root:
        if child.tag == t_contents:
            entries.append(child)
        elif len(child) == 0:  # CommonPrefixes, Owner… are not read
            name = child.tag[len(ns) :]
            text = child.text or ""
            if name == "IsTruncated":
                out[name] = text.strip().lower() == "true"
            elif name in ("KeyCount", "MaxKeys"):
                out[name] = int(text or 0)
            else:
                out[name] = text
    # findtext runs in C: cheaper per entry than visiting each field in Python.
    contents: list[dict[str, Any]] = [
        {
            "Key": entry.findtext(t_key) or "",
            "Size": int(entry.findtext(t_size) or 0),
            "ETag": entry.findtext(t_etag) or "",
            "LastModified": _parse_iso_date(entry.findtext(t_modified)),
        }
        for entry in entries
    ]
    if contents:
        out["Contents"] = contents
    if out.get("EncodingType") == "url":
        for item in contents:
            item["Key"] = unquote_key(item["Key"])
        for name in decode:
            if name in out:
                out[name] = unquote_key(out[name])
    out.setdefault("IsTruncated", False)
    return out


#: ListMultipartUploadsResult fields, by element name, as botocore's model types them.
_UPLOADS_TEXT = frozenset(
    {
        "Bucket",
        "KeyMarker",
        "UploadIdMarker",
        "NextKeyMarker",
        "NextUploadIdMarker",
        "Prefix",
        "Delimiter",
        "EncodingType",
    }
)
_UPLOAD_TEXT = frozenset({"Key", "UploadId", "StorageClass"})
_PRINCIPALS = frozenset({"Owner", "Initiator"})


def _local(tag) -> str:
    """An element's name without its namespace, as botocore's parser reads it."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def parse_uploads(data: bytes) -> dict:
    """A ListMultipartUploads answer as botocore's parsed dict.

    Bucket, KeyMarker, UploadIdMarker, NextKeyMarker, NextUploadIdMarker, Prefix, Delimiter,
    EncodingType (text), MaxUploads (int), IsTruncated (bool), and Uploads: Key, UploadId,
    StorageClass, Initiated (aware datetime), Owner and Initiator (ID, DisplayName); as in
    botocore's answer, a field is there only when the server sent it. Nothing is
    url-decoded, as botocore decodes nothing here: the lean client does not ask for
    ``encoding-type=url`` (see :meth:`LeanStore.uploads_answer`).

    Raises :class:`~s3s3.errors.ResponseError` ("unreadable upload listing: ...") for an
    answer that cannot be read (as :func:`parse_listing`); nothing else escapes (fuzzed:
    fuzz/fuzz_listing.py).
    """
    try:
        return _parse_uploads(data)
    # As parse_listing: the same calls (ElementTree, int, the date parsers) can fail.
    except (ET.ParseError, LookupError, ValueError, ArithmeticError, RuntimeError) as exc:
        raise ResponseError(f"unreadable upload listing: {str(exc)[:200]}") from exc


def parse_versions(data: bytes) -> dict:
    """A ListObjectVersions answer as botocore's parsed dict, and more: ``Entries`` holds
    every Version and DeleteMarker in the server's order (a marker has ``_marker``), which
    botocore's two lists lose. Entries carry Key, VersionId, IsLatest (bool), LastModified
    (aware datetime), and for versions ETag and Size (int). KeyMarker, NextKeyMarker,
    VersionIdMarker, NextVersionIdMarker, Prefix, EncodingType (text), MaxKeys (int),
    IsTruncated (bool). With ``EncodingType=url`` keys and key markers are decoded, as
    botocore decodes them.

    Raises :class:`~s3s3.errors.ResponseError` ("unreadable version listing: ...") for an
    answer that cannot be read, as :func:`parse_listing`.
    """
    try:
        return _parse_versions(data)
    except (ET.ParseError, LookupError, ValueError, ArithmeticError, RuntimeError) as exc:
        raise ResponseError(f"unreadable version listing: {str(exc)[:200]}") from exc


_VERSIONS_TEXT = frozenset(
    {
        "Name",
        "Prefix",
        "KeyMarker",
        "VersionIdMarker",
        "NextKeyMarker",
        "NextVersionIdMarker",
        "EncodingType",
        "Delimiter",
    }
)


def _parse_versions(data: bytes) -> dict:
    root = ET.fromstring(data)
    out: dict = {}
    entries: list[dict[str, Any]] = []
    for child in root:
        name = _local(child.tag)
        if name in ("Version", "DeleteMarker"):
            item: dict[str, Any] = {"_marker": name == "DeleteMarker"}
            for field_ in child:
                fname = _local(field_.tag)
                text = field_.text or ""
                if fname in ("Key", "VersionId", "ETag"):
                    item[fname] = text
                elif fname == "Size":
                    item[fname] = int(text or 0)
                elif fname == "IsLatest":
                    item[fname] = text.strip().lower() == "true"
                elif fname == "LastModified":
                    item[fname] = _parse_iso_date(text)
            entries.append(item)
        elif name in _VERSIONS_TEXT:
            out[name] = child.text or ""
        elif name == "MaxKeys":
            out[name] = int(child.text or 0)
        elif name == "IsTruncated":
            out[name] = (child.text or "").strip().lower() == "true"
    if out.get("EncodingType") == "url":
        for item in entries:
            if "Key" in item:
                item["Key"] = unquote_key(item["Key"])
        for name in ("KeyMarker", "NextKeyMarker", "Prefix", "Delimiter"):
            if name in out:
                out[name] = unquote_key(out[name])
    out["Entries"] = entries
    out.setdefault("IsTruncated", False)
    return out


def _parse_uploads(data: bytes) -> dict:
    root = ET.fromstring(data)
    out: dict = {}
    uploads = []
    for child in root:
        name = _local(child.tag)
        text = child.text or ""
        if name == "Upload":
            uploads.append(_parse_upload(child))
        elif name in _UPLOADS_TEXT:
            out[name] = text
        elif name == "MaxUploads":
            out[name] = int(text or 0)
        elif name == "IsTruncated":
            out[name] = text.strip().lower() == "true"
    if uploads:
        out["Uploads"] = uploads
    return out


def _parse_upload(element) -> dict:
    item: dict = {}
    for child in element:
        name = _local(child.tag)
        if name in _UPLOAD_TEXT:
            item[name] = child.text or ""
        elif name == "Initiated":
            item[name] = _parse_iso_date(child.text)
        elif name in _PRINCIPALS:
            item[name] = {
                field: sub.text or ""
                for sub in child
                if (field := _local(sub.tag)) in ("ID", "DisplayName")
            }
    return item
