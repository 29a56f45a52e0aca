"""The one table from an S3 error answer (code, HTTP status) to the error tree.

Both stores classify through :func:`classify_error`, so a 503 or a NoSuchBucket is the same
s3s3 error whichever sent the request. Pure: no I/O, no botocore.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from s3s3.errors import (
    EndpointError,
    FatalEndpointError,
    SourceChanged,
    SourceKeyMissing,
    TransientEndpointError,
)

if TYPE_CHECKING:
    from s3s3.config import EndpointConfig

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
        "RequestLimitExceeded",
        "RequestThrottled",
    }
)


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
    message = message or code
    text = f"{code} (HTTP {status}): {message}" if code else f"HTTP {status}: {message}"
    cls: type[EndpointError]
    if code == "NoSuchBucket" or (status == 404 and key is None):
        cls, text = FatalEndpointError, f"bucket does not exist: {text}"
    elif (code == "PreconditionFailed" or status == 412) and key is not None:
        # Only conditional requests (If-Match) get a 412: the object is another version.
        cls, text = SourceChanged, f"the object changed: {text}"
    elif code in MISSING_CODES and key is not None:
        cls, text = SourceKeyMissing, f"no such key: {text}"
    elif code in THROTTLE_CODES or status == 429:
        cls = TransientEndpointError
    # Before the 5xx rule: a 501 NotImplemented will not be implemented on a retry.
    elif code in FATAL_CODES or status in (401, 403):
        cls = FatalEndpointError
    elif status is not None and status >= 500:
        cls = TransientEndpointError
    else:
        cls = EndpointError
    return cls(text, op=op, endpoint=cfg.name, bucket=cfg.bucket, key=key, code=code, status=status)
