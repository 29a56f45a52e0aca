"""The exceptions s3s3 raises, in one tree.

    S3S3Error                  every error says .retryable and .scope (KEY, ENDPOINT, PROCESS)
    ├── ConfigError            bad or missing configuration; names file, section, key, value
    ├── EndpointError          an S3 call failed; carries op, endpoint, bucket, key
    │   ├── FatalEndpointError     retrying cannot help: bad credentials, missing bucket, denied
    │   ├── TransientEndpointError throttling, 5xx, timeouts, connection resets (retryable)
    │   ├── SourceKeyMissing       the source key does not exist (deleted since it was announced)
    │   └── SourceChanged          a conditional read (If-Match) found another version: the
    │                              range cannot be read again, the whole copy can (retryable)
    ├── ResponseError          a server's answer could not be read (malformed listing XML)
    ├── ListingOrderError      a listing is not in ascending UTF-8 byte order of keys
    ├── TransferError          a copy could not be completed
    │   ├── CorruptedOnTransfer    the bytes written differ from the bytes read; the bad copy
    │   │                          was deleted (retryable: the next copy reads again)
    │   ├── ObjectTooLarge         the object cannot be written with the destination's settings
    │   ├── LeftBehind             a destination fell too far behind the others sharing one
    │   │                          read of the source; it reads on its own (retryable)
    │   └── CopyCancelled          the copy was abandoned (shutdown past its grace); its
    │                              multipart upload, if any, was aborted
    ├── ShortRead              the source's body ended before its length (retryable)
    ├── LockHeld               another run holds the bucket-job lock
    ├── LockUnavailable        ``lock = redis`` was configured and Redis cannot be reached
    ├── MessageError           a work message could not be understood
    ├── RedisFatal             Redis refused s3s3 for a reason retrying cannot fix
    ├── BrokerRefused          the AMQP broker refused s3s3 (credentials, vhost, permissions)
    ├── BacklogFull            the stream is full and did not drain within the wait
    ├── NotReplicated          wait_replicas: too few replicas confirmed a batch in time
    └── QueueUnavailable       an intake cannot queue work now: Redis is unreachable or the
                               stream is full (retryable: the sender retries, nothing is lost)

``retryable`` says whether the same operation may succeed later without anyone changing
anything; ``scope`` says what the failure concerns: one ``KEY`` (count it, go on), one
``ENDPOINT`` (every key through it is affected: the listener's breaker holds them), or the
``PROCESS`` (stop). Both are class defaults that an instance may override where the same
class covers both cases (an S3 error code known only at run time).

Library exceptions (botocore, redis, OSError) are mapped at one boundary per module with
``raise X(...) from exc``; anything not recognised is re-raised unchanged, and counts as not
retryable: an unknown failure is a bug to see, not to retry.
"""

from __future__ import annotations

import enum


class Scope(enum.Enum):
    """What a failure concerns, from the smallest to the largest."""

    KEY = "key"
    ENDPOINT = "endpoint"
    PROCESS = "process"


class S3S3Error(Exception):
    """Base of every error s3s3 raises on purpose."""

    retryable: bool = False
    scope: Scope = Scope.PROCESS


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

    scope = Scope.ENDPOINT

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
        scope: Scope | None = None,
    ) -> None:
        if scope is not None:
            self.scope = scope
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

    retryable = True


class SourceKeyMissing(EndpointError):
    """The source key does not exist (any more)."""

    scope = Scope.KEY


class SourceChanged(EndpointError):
    """The source object is no longer the version a copy began with (HTTP 412 to a GET
    with ``If-Match``): a part cannot be re-read from it, nor an upload resumed.

    Retryable for the copy as a whole, which starts over from the new version; the
    in-place retry of a part does not retry it.
    """

    retryable = True
    scope = Scope.KEY


class TransferError(S3S3Error):
    """A copy of one key could not be completed."""

    scope = Scope.KEY

    def __init__(self, message: str, *, key: str, src: str, dst: str) -> None:
        self.key = key
        self.src = src
        self.dst = dst
        super().__init__(f"copy {key!r} from [{src}] to [{dst}]: {message}")


class CorruptedOnTransfer(TransferError):
    """The destination does not hold the bytes that were read; the bad copy was deleted."""

    retryable = True


class ShortRead(S3S3Error):
    """The source's body ended before the length it announced (a connection cut short)."""

    retryable = True
    scope = Scope.ENDPOINT


class ObjectTooLarge(TransferError):
    """The object exceeds what the destination's settings allow (single PUT over 5 GiB)."""


class LeftBehind(TransferError):
    """A destination fell further behind the others sharing one read of the source than the
    shared buffer holds (``fanout_buffer``), so it left the shared read; its copy is made
    again with a read of its own (:mod:`s3s3.fanout`)."""

    retryable = True
    scope = Scope.KEY


class CopyCancelled(TransferError):
    """The copy was cancelled before it completed (shutdown past its grace period).

    Nothing was written: a multipart upload it had started was aborted (or the abort was
    attempted and logged), and a streamed PUT was broken off before the server committed it.
    """

    retryable = True
    scope = Scope.PROCESS


class LockHeld(S3S3Error):
    """Another run holds the lock for this job."""

    retryable = True


class LockUnavailable(S3S3Error):
    """``lock = redis`` was configured and Redis cannot be reached."""

    retryable = True


class ListingOrderError(S3S3Error):
    """A listing is not in strictly ascending UTF-8 byte order of keys.

    ``side`` is 0 for the source and ``i + 1`` for destination ``i``.
    """

    scope = Scope.ENDPOINT

    def __init__(self, side: int, previous: str, key: str) -> None:
        self.side = side
        self.previous = previous
        self.key = key
        what = "the source listing" if side == 0 else f"destination listing {side - 1}"
        problem = (
            f"repeats {key!r}"
            if key == previous
            else f"is not in UTF-8 byte order: {key!r} came after {previous!r}"
        )
        super().__init__(
            f"{what} {problem}; a merge of unordered listings would copy and delete the wrong keys"
        )


class MessageError(S3S3Error):
    """A work message that cannot be understood; the text says what was wrong."""

    scope = Scope.KEY


class ResponseError(S3S3Error):
    """A server's answer that cannot be read: not XML, or a field that is not what S3 sends.

    Raised by pure parsers that know no endpoint; the caller maps it to an EndpointError.
    """

    scope = Scope.ENDPOINT


class RedisFatal(S3S3Error):
    """Redis refused s3s3 for a reason retrying cannot fix (password, ACL)."""


class BrokerRefused(S3S3Error):
    """The AMQP broker refused s3s3 for a reason retrying cannot fix: bad credentials, a
    vhost that does not exist, no permission on the queue or exchange."""


class BacklogFull(S3S3Error):
    """The stream holds ``maxlen`` entries or more and did not drain within the wait.

    ``added`` is how many entries the call had added before it gave up.
    """

    retryable = True

    def __init__(self, message: str, *, added: int = 0) -> None:
        super().__init__(message)
        self.added = added


class NotReplicated(S3S3Error):
    """``[pubsub] wait_replicas``: a batch of stream entries reached fewer replicas than
    asked within ``wait_timeout``. It is on the master, not yet safe from a failover; the
    producer does not count it sent. ``added`` is what earlier batches of the call added.
    """

    retryable = True

    def __init__(self, message: str, *, added: int = 0) -> None:
        super().__init__(message)
        self.added = added


class QueueUnavailable(S3S3Error):
    """An intake could not add work to the stream now (Redis unreachable, or the stream at
    its maxlen): the event was not accepted, and its sender should send it again."""

    retryable = True
    scope = Scope.ENDPOINT


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` (an s3s3 error) may succeed if tried again; anything else may not."""
    return isinstance(exc, S3S3Error) and exc.retryable


def scope_of(exc: BaseException) -> Scope:
    """What ``exc`` concerns; an exception s3s3 does not know stops the process."""
    return exc.scope if isinstance(exc, S3S3Error) else Scope.PROCESS
