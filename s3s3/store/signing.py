"""Request signatures for the lean data path: S3 SigV4 (unsigned payload) and SigV2.

Why not botocore's signers: on a 4 KiB copy, botocore's ``S3SigV4Auth`` was a third of the
lean path's client CPU. Most of it is not cryptography but machinery around it: an
``AWSRequest`` and an ``HTTPHeaders`` (an ``email.message.Message``) per request, the URL
split and re-split, four HMACs to derive the same signing key again for every request, and
``strftime`` twice. The signatures themselves are small, fixed algorithms:

- **SigV4** (``AWS4-HMAC-SHA256``): the signing key depends only on the secret, the day,
  the region and the service, so it is derived once a day and kept; each request costs one
  SHA-256 of the canonical request and one HMAC. The payload is never hashed:
  ``X-Amz-Content-SHA256: UNSIGNED-PAYLOAD``, as the botocore clients are configured
  (Content-MD5 and the ETag check guard the bytes).
- **SigV2** (``AWS access:signature``, HMAC-SHA1 over method, Content-MD5, Content-Type,
  Date, the ``x-amz-*`` headers and the resource ``/bucket/key``).

Each produces exactly what botocore's ``S3SigV4Auth`` / ``HmacV1Auth`` produce for the
requests the lean client sends (no query parameters that SigV2 signs, no streamed checksum
trailers); ``tests/test_signing.py`` checks that header for header, byte for byte, under a
frozen clock. Each call takes the credentials to sign with (botocore's frozen credentials:
``access_key``, ``secret_key``, ``token``), so refreshable credentials stay refreshed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from email.utils import formatdate

__all__ = ["SigV2Signer", "SigV4Signer", "UNSIGNED_PAYLOAD"]

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

#: Headers botocore leaves out of a SigV4 signature (hop-by-hop, tracing, User-Agent).
SIGV4_UNSIGNED_HEADERS = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)

#: Headers the signers set themselves; a caller's copies are replaced (as on a retry).
_V4_OWN = frozenset({"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"})
_V2_OWN = frozenset({"authorization", "date", "x-amz-security-token"})


def _without(headers: dict, names: frozenset) -> dict:
    return {name: value for name, value in headers.items() if name.lower() not in names}


class _PerSecond:
    """A clock reading formatted once a second: the requests of a second share it."""

    def __init__(self, fmt) -> None:
        self._fmt = fmt
        # (second, text), replaced as a whole, so a thread reads either pair.
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, now: float) -> str:
        second = int(now)
        last = self._last
        if last[0] != second:
            last = (second, self._fmt(second))
            self._last = last
        return last[1]


class SigV4Signer:
    """Signs S3 requests with SigV4 and an unsigned payload; thread-safe."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self._region = region
        self._service = service
        # (secret, day) -> signing key, one entry: replaced as a whole, so a thread reads
        # either the old pair or the new one.
        self._key_cache: tuple[str, str, bytes] | None = None
        self._timestamp = _PerSecond(
            lambda second: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        )

    def __repr__(self) -> str:
        return f"SigV4Signer(region={self._region!r}, service={self._service!r})"

    def sign(
        self, creds, method: str, path: str, query: str, headers: dict, *, now: float | None = None
    ) -> dict:
        """The headers to send: ``headers`` (which must hold ``Host``) plus X-Amz-Date,
        X-Amz-Content-SHA256, X-Amz-Security-Token (temporary credentials) and
        Authorization.

        ``path`` is sent as is (already percent-encoded; S3 paths are not normalised) and
        ``query`` is the encoded query string, without ``?``.
        """
        stamp = self._timestamp(time.time() if now is None else now)
        day = stamp[:8]
        out = _without(headers, _V4_OWN)
        out["X-Amz-Date"] = stamp
        if creds.token:
            out["X-Amz-Security-Token"] = creds.token
        out["X-Amz-Content-SHA256"] = UNSIGNED_PAYLOAD

        signed: dict[str, list[str]] = {}
        for name, value in out.items():
            lname = name.lower()
            if lname not in SIGV4_UNSIGNED_HEADERS:
                signed.setdefault(lname, []).append(" ".join(str(value).split()))
        names = sorted(signed)
        signed_names = ";".join(names)
        canonical = "\n".join(
            (
                method.upper(),
                path,
                _canonical_query(query),
                "".join(f"{n}:{','.join(signed[n])}\n" for n in names),
                signed_names,
                UNSIGNED_PAYLOAD,
            )
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256",
                stamp,
                scope,
                hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
            )
        )
        signature = hmac.new(
            self._signing_key(creds.secret_key, day), string_to_sign.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return out

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._key_cache
        if cached is not None and cached[0] == secret and cached[1] == day:
            return cached[2]
        key = hmac.new(f"AWS4{secret}".encode(), day.encode("utf-8"), hashlib.sha256).digest()
        for part in (self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
        self._key_cache = (secret, day, key)
        return key


def _canonical_query(query: str) -> str:
    """botocore's canonical query for a URL's query string: pairs as sent, sorted."""
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{name}={value}" for name, value in pairs)


class SigV2Signer:
    """Signs S3 requests with SigV2 (``HmacV1``); thread-safe.

    The resource signed is ``auth_path`` (``/bucket/key`` whatever the addressing style),
    with no sub-resource: the lean client sends no query parameter that SigV2 signs.
    """

    def __init__(self) -> None:
        self._date = _PerSecond(lambda second: formatdate(second, usegmt=True))

    def __repr__(self) -> str:
        return "SigV2Signer()"

    def sign(
        self, creds, method: str, auth_path: str, headers: dict, *, now: float | None = None
    ) -> dict:
        """The headers to send: ``headers`` plus Date, X-Amz-Security-Token (temporary
        credentials) and Authorization."""
        out = _without(headers, _V2_OWN)
        out["Date"] = self._date(time.time() if now is None else now)
        if creds.token:
            out["x-amz-security-token"] = creds.token
        standard: dict[str, list[str]] = {"content-md5": [], "content-type": [], "date": []}
        amz: dict[str, list[str]] = {}
        for name, value in out.items():
            lname = name.lower()
            if lname in standard:
                standard[lname].append(str(value).strip())
            elif lname.startswith("x-amz-"):
                amz.setdefault(lname, []).append(str(value).strip())
        lines = [method.upper()]
        lines += ["\n".join(values) for values in standard.values()]
        lines += [f"{name}:{','.join(amz[name])}" for name in sorted(amz)]
        lines.append(auth_path)
        digest = hmac.new(
            creds.secret_key.encode("utf-8"), "\n".join(lines).encode("utf-8"), hashlib.sha1
        ).digest()
        out["Authorization"] = f"AWS {creds.access_key}:{base64.b64encode(digest).decode()}"
        return out
