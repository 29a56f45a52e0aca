"""What a request the Swift proxy serves asks to write, read from its WSGI environment
before it is served: the object write (PUT, POST, COPY, DELETE; account, container, key)
and Swift's ``X-Timestamp`` as the order of the entry that announces it.

Pure: no Redis, no Swift, no I/O; :mod:`.swift_middleware` announces what this reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from s3s3.model import COPY, DELETE

#: s3api keeps the parts of multipart uploads in ``<bucket>+segments``.
SEGMENTS_SUFFIX = "+segments"
#: Swift's reserved namespace (object versioning's hidden containers) starts with NUL.
RESERVED_PREFIX = "\x00"
API_VERSIONS = ("v1", "v1.0")
WRITE_METHODS = ("PUT", "POST", "DELETE", "COPY")


@dataclass(frozen=True)
class Write:
    """An object write a request asks for, read from the request before it is served.

    ``account``, ``container`` and ``key`` are real text (UTF-8 decoded), not WSGI strings.
    """

    op: str
    account: str
    container: str
    key: str
    event: str


def wsgi_to_text(value: str) -> str | None:
    """A WSGI string (each byte of the path as one latin-1 character) as the text its bytes
    spell in UTF-8; None when they spell none (Swift refuses such paths itself)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


def object_path(path_info: str) -> tuple[str, str, str] | None:
    """``(account, container, object)`` of ``/v1/ACCOUNT/CONTAINER/OBJECT``, or None for any
    other path (the account or a container, /info, /auth, an S3 path s3api did not
    translate). ``path_info`` is the WSGI string, already percent-decoded by the server."""
    parts = path_info.split("/", 4)
    if len(parts) != 5 or parts[0] or parts[1] not in API_VERSIONS:
        return None
    decoded = [wsgi_to_text(p) for p in parts[2:]]
    account, container, key = decoded
    if not account or not container or not key:
        return None
    return account, container, key


def _copy_destination(env: Mapping[str, Any], account: str) -> tuple[str, str, str] | None:
    """Where a COPY writes: ``Destination: CONTAINER/OBJECT`` (percent-encoded, as Swift's
    copy middleware reads it) and ``Destination-Account``, else the request's account."""
    destination = env.get("HTTP_DESTINATION")
    if not destination:
        return None
    dest_account = env.get("HTTP_DESTINATION_ACCOUNT")
    if dest_account:
        account_text = _unquoted(dest_account)
        if not account_text:
            return None
        account = account_text
    text = _unquoted(destination)
    if text is None:
        return None
    container, _, key = text.removeprefix("/").partition("/")
    if not container or not key:
        return None
    return account, container, key


def _unquoted(value: str) -> str | None:
    try:
        return unquote_to_bytes(value.encode("latin-1")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


def _put_event(env: Mapping[str, Any]) -> str:
    if env.get("swift.source") == "SSC" or env.get("HTTP_X_COPY_FROM"):
        return "ObjectCreated:Copy"  # the copy middleware's write, or a PUT above it
    query = dict(parse_qsl(env.get("QUERY_STRING") or "", keep_blank_values=True))
    if query.get("multipart-manifest") == "put":
        return "ObjectCreated:CompleteMultipartUpload"  # an SLO manifest
    return "ObjectCreated:Put"


def write_of(env: Mapping[str, Any]) -> Write | None:
    """The object write ``env`` asks for, or None when it asks for none."""
    method = env.get("REQUEST_METHOD")
    if method not in WRITE_METHODS:
        return None
    path = object_path(env.get("PATH_INFO") or "")
    if path is None:
        return None
    account, container, key = path
    if method == "COPY":
        destination = _copy_destination(env, account)
        if destination is None:
            return None  # the copy middleware answers 412
        return Write(COPY, *destination, "ObjectCreated:Copy")
    if method == "DELETE":
        return Write(DELETE, account, container, key, "ObjectRemoved:Delete")
    if method == "POST":
        return Write(COPY, account, container, key, "ObjectCreated:Post")
    return Write(COPY, account, container, key, _put_event(env))


def timestamp_order(value: object) -> tuple[int, float] | None:
    """Swift's ``X-Timestamp`` (``1700000000.12345``, maybe with an ``_<hex>`` offset) as
    ``(sequence in nanoseconds, seconds since the epoch)``, or None when it reads as none.

    Swift orders every write of an object by it (the newest timestamp wins), so it is the
    order the listener should keep. Timestamps have 10 µs steps: an offset (rare: object
    versioning) is added below that, capped, so it orders writes of one step.
    """
    if not isinstance(value, str) or len(value) > 64:
        return None
    normal, _, offset = value.strip().partition("_")
    whole, _, fraction = normal.partition(".")
    if not (whole.isascii() and whole.isdigit()) or len(fraction) > 9:
        return None
    if fraction and not (fraction.isascii() and fraction.isdigit()):
        return None
    sequence = int(whole) * 1_000_000_000 + int(fraction.ljust(9, "0"))
    if offset:
        try:
            sequence += min(int(offset, 16), 9_999)
        except ValueError:
            return None
    return sequence, float(normal)


__all__ = [
    "Write",
    "object_path",
    "timestamp_order",
    "write_of",
    "wsgi_to_text",
]
