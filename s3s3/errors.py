"""The exceptions s3s3 raises, in one tree.

    S3S3Error
    ├── ConfigError            bad or missing configuration; names file, section, key, value
    ├── EndpointError          an S3 call failed; carries op, endpoint, bucket, key
    │   ├── FatalEndpointError     retrying cannot help: bad credentials, missing bucket, denied
    │   ├── TransientEndpointError throttling, 5xx, timeouts, connection resets (retried)
    │   └── SourceKeyMissing       the source key does not exist (deleted since it was announced)
    ├── TransferError          a copy could not be completed
    │   ├── CorruptedOnTransfer    the bytes written differ from the bytes read; the bad copy
    │   │                          was deleted
    │   ├── ObjectTooLarge         the object cannot be written with the destination's settings
    │   └── CopyCancelled          the copy was abandoned (shutdown past its grace); its
    │                              multipart upload, if any, was aborted
    ├── LockHeld               another run holds the bucket-job lock
    ├── MessageError           a work message could not be understood
    ├── ResponseError          a server's answer could not be read (malformed listing XML)
    ├── RedisFatal             Redis refused s3s3 for a reason retrying cannot fix
    └── BacklogFull            the stream is full and did not drain within the wait

Library exceptions (botocore, redis) are mapped at one boundary per module with
``raise X(...) from exc``; anything not recognised is re-raised unchanged.
"""

from __future__ import annotations


class S3S3Error(Exception):
    """Base of every error s3s3 raises on purpose."""


class ConfigError(S3S3Error):
    """Configuration that cannot be used.

    The message names the file, the section, the key and the offending value (never a
    secret's value), in the manner of Supervisor.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        where = []
        if section is not None:
            where.append(f"section '{section}'")
        if path is not None:
            where.append(f"file: '{path}'")
        if where:
            message = f"{message} in {where[0]}" + (f" ({where[1]})" if len(where) > 1 else "")
        super().__init__(message)
        self.path = path
        self.section = section
        self.key = key


class EndpointError(S3S3Error):
    """An S3 request failed.

    ``op`` is the operation (``GetObject``…), ``endpoint`` the config section name of the
    endpoint, ``code`` the S3 error code or a short cause such as ``timeout``.
    """

    def __init__(
        self,
        message: str,
        *,
        op: str,
        endpoint: str,
        bucket: str,
        key: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        self.op = op
        self.endpoint = endpoint
        self.bucket = bucket
        self.key = key
        self.code = code
        self.status = status
        target = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}"
        super().__init__(f"{op} {target} on [{endpoint}] failed: {message}")


class FatalEndpointError(EndpointError):
    """Retrying cannot help: fix credentials, bucket name or permissions."""


class TransientEndpointError(EndpointError):
    """The endpoint may answer later: throttled, 5xx, timed out or reset."""


class SourceKeyMissing(EndpointError):
    """The source key does not exist (any more)."""


class TransferError(S3S3Error):
    """A copy of one key could not be completed."""

    def __init__(self, message: str, *, key: str, src: str, dst: str) -> None:
        self.key = key
        self.src = src
        self.dst = dst
        super().__init__(f"copy {key!r} from [{src}] to [{dst}]: {message}")


class CorruptedOnTransfer(TransferError):
    """The destination does not hold the bytes that were read; the bad copy was deleted."""


class ObjectTooLarge(TransferError):
    """The object exceeds what the destination's settings allow (single PUT over 5 GiB)."""


class CopyCancelled(TransferError):
    """The copy was cancelled before it completed (shutdown past its grace period).

    Nothing was written: a multipart upload it had started was aborted (or the abort was
    attempted and logged), and a streamed PUT was broken off before the server committed it.
    """


class LockHeld(S3S3Error):
    """Another run holds the lock for this job."""


class MessageError(S3S3Error):
    """A work message that cannot be understood; the text says what was wrong."""


class ResponseError(S3S3Error):
    """A server's answer that cannot be read: not XML, or a field that is not what S3 sends.

    Raised by pure parsers that know no endpoint; the caller maps it to an EndpointError.
    """


class RedisFatal(S3S3Error):
    """Redis refused s3s3 for a reason retrying cannot fix (password, ACL)."""


class BacklogFull(S3S3Error):
    """The stream holds ``maxlen`` entries or more and did not drain within the wait.

    ``added`` is how many entries the call had added before it gave up.
    """

    def __init__(self, message: str, *, added: int = 0) -> None:
        super().__init__(message)
        self.added = added
