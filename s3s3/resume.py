"""Where an unfinished multipart copy keeps its progress, so a later copy of the same key
can resume it instead of starting over.

A :class:`UploadRecord` says which upload of which destination key was started from which
source version (bucket, key, ETag, size, last-modified) with which part size, and the md5
and size of each part the destination has acknowledged. :mod:`s3s3.transfer` writes it
when it creates an upload and after every part; it deletes it when the upload is
completed or aborted. On the next copy of that key to that destination, a record that
matches the source's version is checked against the upload itself (ListParts: a part
counts only where its ETag is the recorded md5 and its size the recorded size), and the
copy goes on from the first part that is missing.

Where it is kept (:class:`FileProgress`): one small JSON file per upload in a state
directory, written to a temporary name, flushed to disk and renamed over the old one, so
a kill -9 at any moment leaves either the previous record or the new one, never half a
file. Why a file and not the upload alone: ListParts gives the part ETags, but not the
source version the parts came from, nor the part size chosen; and why a file by default:
the bucket job runs without Redis, and both scripts on one host share the directory.

A fleet of listeners in stream mode, where another host may claim a job whose listener
died, keeps the records in Redis instead (:class:`RedisProgress`, ``upload_state =
redis``: the ``[pubsub]`` Redis): one string key per upload holding the same JSON, replaced
with one SET per part, expiring twice ``abort_uploads_after`` after its last write (the
stale sweep has aborted such an upload by then). A Redis that does not answer loses no
copy: a record that cannot be written is logged, one that cannot be read is a copy that
starts over.

Where: the destination's ``upload_state`` key (``s3s3.config``): by default
``$XDG_STATE_HOME/s3s3/uploads`` (``~/.local/state/s3s3/uploads``), a directory, ``redis``,
or ``none`` to keep no progress (a failed multipart copy then aborts its upload, as before
resuming existed). Nothing here talks to S3.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis

    from s3s3.config import EndpointConfig, RedisConfig
    from s3s3.model import ObjectInfo

log = logging.getLogger(__name__)

#: The record format; a record of another version is ignored (the copy starts over).
RECORD_VERSION = 1


@dataclass(frozen=True)
class PartRecord:
    """A part the destination acknowledged: its number, the md5 (hex) of its bytes and
    its size."""

    number: int
    md5: str
    size: int


@dataclass(frozen=True)
class SourceVersion:
    """The source object an upload was started from."""

    bucket: str
    key: str
    etag: str
    size: int
    last_modified: str  # ISO 8601, or "" when the source gave none

    @classmethod
    def of(cls, bucket: str, info: ObjectInfo) -> SourceVersion:
        modified = info.last_modified.isoformat() if info.last_modified else ""
        return cls(bucket, info.key, info.etag, info.size, modified)


@dataclass(frozen=True)
class UploadRecord:
    """One multipart upload in progress, as s3s3 started it."""

    endpoint: str  # the destination's URL ("" for AWS)
    bucket: str
    key: str  # the destination key
    upload_id: str
    source: SourceVersion
    part_size: int
    parts: tuple[PartRecord, ...] = ()
    #: Failed tries of parts in place, over every copy attempt of this upload: the
    #: in-place retries of all of them together stay within the destination's attempts.
    part_failures: int = 0
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    @property
    def bytes_done(self) -> int:
        return sum(p.size for p in self.parts)

    def with_part(self, part: PartRecord) -> UploadRecord:
        others = tuple(p for p in self.parts if p.number != part.number)
        return replace(self, parts=tuple(sorted((*others, part), key=lambda p: p.number)))

    def matches(self, source: SourceVersion, part_size: int) -> bool:
        """Whether this upload was started from ``source`` with ``part_size`` parts (an
        ETag or a time the source did not give on one side counts as a difference)."""
        return self.source == source and self.part_size == part_size and bool(source.etag)

    def to_json(self) -> str:
        return json.dumps({"version": RECORD_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UploadRecord | None:
        """The record in ``text``, or None when it is not one this version wrote."""
        try:
            data = json.loads(text)
            if data.pop("version", None) != RECORD_VERSION:
                return None
            data["source"] = SourceVersion(**data["source"])
            data["parts"] = tuple(PartRecord(**p) for p in data["parts"])
            return cls(**data)
        except (ValueError, TypeError, KeyError):
            return None


class ProgressStore(Protocol):
    """Where upload records survive the process."""

    def load(self, endpoint: str, bucket: str, key: str) -> UploadRecord | None:
        """The record of the upload of ``key`` to that bucket, if one is kept."""

    def save(self, record: UploadRecord) -> None:
        """Keep ``record``, replacing the one of the same destination key."""

    def delete(self, endpoint: str, bucket: str, key: str) -> None:
        """Forget the upload of ``key`` (a missing record is no error)."""

    def records(self) -> Iterator[UploadRecord]:
        """Every record kept."""


def record_name(endpoint: str, bucket: str, key: str) -> str:
    """A file name for one destination key: any key, of any length, fits in it."""
    digest = hashlib.sha256("\0".join((endpoint, bucket, key)).encode("utf-8")).hexdigest()
    return f"{digest}.json"


def record_for(text: str, endpoint: str, bucket: str, key: str) -> UploadRecord | None:
    """The record ``text`` holds, if it is one of this destination key (a file or Redis key
    whose name collided, or that was edited, is not)."""
    record = UploadRecord.from_json(text)
    if record is None or (record.endpoint, record.bucket, record.key) != (endpoint, bucket, key):
        return None
    return record


class FileProgress:
    """Upload records as JSON files in ``directory`` (created on the first save)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"FileProgress({str(self.directory)!r})"

    def _path(self, endpoint: str, bucket: str, key: str) -> Path:
        return self.directory / record_name(endpoint, bucket, key)

    def load(self, endpoint: str, bucket: str, key: str) -> UploadRecord | None:
        try:
            text = self._path(endpoint, bucket, key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read upload progress in %s: %s", self.directory, exc)
            return None
        return record_for(text, endpoint, bucket, key)

    def save(self, record: UploadRecord) -> None:
        """Write ``record`` atomically: a temporary file, flushed to disk, renamed over the
        old one. One small write per part; a failure to write is logged, not raised (the
        copy goes on, and can only start over if it is interrupted)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(record.to_json())
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._path(record.endpoint, record.bucket, record.key))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning(
                "cannot keep the progress of upload %s of s3://%s/%s in %s: %s",
                record.upload_id,
                record.bucket,
                record.key,
                self.directory,
                exc,
            )

    def delete(self, endpoint: str, bucket: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(endpoint, bucket, key).unlink()

    def records(self) -> Iterator[UploadRecord]:
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError:
            return
        for path in paths:
            try:
                record = UploadRecord.from_json(path.read_text(encoding="utf-8"))
            except OSError:
                continue
            if record is not None:
                yield record


#: Where :class:`RedisProgress` keeps each record (``{hash}``: :func:`record_name`'s).
REDIS_KEY_PREFIX = "s3s3:upload:"
#: How long a Redis record outlives its last write where ``abort_uploads_after = 0``.
REDIS_TTL_DEFAULT_S = 30 * 86400.0


class RedisProgress:
    """Upload records in Redis, one JSON string key each, shared by every host."""

    def __init__(self, client: redis.Redis, *, ttl_s: float) -> None:
        # redis-py only here: a process whose uploads keep their progress in files (the
        # bucket job, by default) does not pay its 50 ms import at start-up.
        import redis

        self._client = client
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._errors: type[Exception] = redis.RedisError

    def __repr__(self) -> str:
        return "RedisProgress()"

    @staticmethod
    def key_of(endpoint: str, bucket: str, key: str) -> str:
        return REDIS_KEY_PREFIX + record_name(endpoint, bucket, key).removesuffix(".json")

    def load(self, endpoint: str, bucket: str, key: str) -> UploadRecord | None:
        try:
            raw = self._client.get(self.key_of(endpoint, bucket, key))
        except self._errors as exc:
            log.warning("cannot read upload progress from Redis (the copy starts over): %s", exc)
            return None
        if raw is None:
            return None
        return record_for(_text(raw), endpoint, bucket, key)

    def save(self, record: UploadRecord) -> None:
        try:
            self._client.set(
                self.key_of(record.endpoint, record.bucket, record.key),
                record.to_json(),
                px=self._ttl_ms,
            )
        except self._errors as exc:
            log.warning(
                "cannot keep the progress of upload %s of s3://%s/%s in Redis: %s",
                record.upload_id,
                record.bucket,
                record.key,
                exc,
            )

    def delete(self, endpoint: str, bucket: str, key: str) -> None:
        try:
            self._client.delete(self.key_of(endpoint, bucket, key))
        except self._errors as exc:
            log.warning("cannot drop upload progress in Redis (it expires): %s", exc)

    def records(self) -> Iterator[UploadRecord]:
        try:
            for name in self._client.scan_iter(match=REDIS_KEY_PREFIX + "*", count=1000):
                raw = self._client.get(name)
                record = UploadRecord.from_json(_text(raw)) if raw else None
                if record is not None:
                    yield record
        except self._errors as exc:
            log.warning("cannot list upload progress in Redis: %s", exc)


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


@functools.lru_cache(maxsize=16)
def _redis_client(cfg: RedisConfig) -> redis.Redis:
    """One client (and connection pool) per Redis configuration, made on first use."""
    import redis

    options: dict = {"socket_connect_timeout": 5, "socket_timeout": 10}
    if cfg.password:
        options["password"] = cfg.password
    if cfg.ssl_ca_certs and cfg.url.startswith("rediss://"):
        options["ssl_ca_certs"] = cfg.ssl_ca_certs
    return redis.Redis.from_url(cfg.url, **options)


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/s3s3/uploads``, or ``~/.local/state/s3s3/uploads``."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "s3s3" / "uploads"


def progress_for(cfg: EndpointConfig) -> ProgressStore | None:
    """The progress store of uploads to ``cfg``'s bucket, or None with ``upload_state =
    none``."""
    if cfg.upload_state == "none":
        return None
    if cfg.upload_state == "redis":
        if cfg.upload_state_redis is None:  # an EndpointConfig made without load()
            return FileProgress(default_state_dir())
        ttl_s = 2 * cfg.abort_uploads_after_s or REDIS_TTL_DEFAULT_S
        return RedisProgress(_redis_client(cfg.upload_state_redis), ttl_s=ttl_s)
    return FileProgress(
        Path(cfg.upload_state).expanduser() if cfg.upload_state else default_state_dir()
    )
