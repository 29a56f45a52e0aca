"""The lock that keeps two runs of the bucket job on one source bucket from overlapping.

Cron and supervisord start ``s3s3bucket`` on a timer, whether or not the last run has
finished. The lock is taken per source endpoint and bucket:

- ``redis``: ``SET key token NX PX ttl`` on the ``[pubsub]`` Redis, so runs on different
  hosts exclude each other. A thread renews it every third of the TTL while the run goes
  on; it is released by a Lua compare-and-delete, so a run never removes a lock that
  expired and was taken by another. If a renewal finds the lock taken by someone else,
  :attr:`RedisLock.lost` is set and the run stops taking work.
- ``local``: ``fcntl.flock`` on a file in ``lock_dir``; the kernel releases it when the
  process dies, so nothing goes stale. It protects one host only.
- ``auto`` (the default): Redis when it answers a PING, the local lock otherwise.
- ``none``: no lock.

Which lock was used is logged at INFO.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from .config import BucketConfig, EndpointConfig
from .errors import LockHeld, S3S3Error

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

# KEYS[1] = lock key, ARGV[1] = our token (, ARGV[2] = new TTL in ms)
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class LockUnavailable(S3S3Error):
    """``lock = redis`` was configured and Redis cannot be reached."""


def lock_name(source: EndpointConfig) -> str:
    """A short, stable name for the source endpoint and bucket (URL and bucket hashed)."""
    ident = f"{source.endpoint_url or 'aws'}|{source.region}|{source.bucket}"
    return hashlib.sha1(ident.encode("utf-8")).hexdigest()[:20]


def redis_key(source: EndpointConfig) -> str:
    # The hash tag puts the key on one Redis Cluster slot; it is per source bucket.
    return f"s3s3:lock:{{{lock_name(source)}}}"


def lock_path(source: EndpointConfig, lock_dir: str) -> Path:
    return Path(lock_dir) / f"s3s3bucket-{lock_name(source)}.lock"


def _token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class RedisLock:
    """A Redis lock held under a random token, renewed in a thread until released."""

    kind = "redis"

    def __init__(self, client: redis.Redis, key: str, *, ttl_s: float, what: str = "",
                 lost: threading.Event | None = None) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self.what = what or key
        self.token = _token()
        self.lost = lost or threading.Event()  # set when a renewal finds the lock gone
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def describe(self) -> str:
        return f"Redis lock {self.key}"

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockHeld` naming the holder."""
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            holder = self.client.get(self.key)
            ttl_ms = self.client.pttl(self.key)
            holder_text = holder.decode("utf-8", "replace") if holder else "?"
            raise LockHeld(f"another s3s3bucket run holds the lock for {self.what} "
                           f"(Redis key {self.key}, holder {holder_text}, expires in "
                           f"{max(ttl_ms, 0) / 1000:.0f} s); not starting")
        self._renewer = threading.Thread(target=self._renew_loop, name="lock-renew",
                                         daemon=True)
        self._renewer.start()

    def renew(self) -> bool:
        """Extend the TTL; False when the lock is no longer ours."""
        return bool(self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    def _renew_loop(self) -> None:
        from redis import RedisError  # imported here: a local lock never needs redis-py

        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.renew():
                    log.error("lost %s: it expired or was taken by another run; stopping",
                              self.describe())
                    self.lost.set()
                    return
            except RedisError as exc:
                # The lock lives on until its TTL; try again at the next interval.
                log.warning("could not renew %s: %s", self.describe(), exc)

    def release(self) -> None:
        from redis import RedisError

        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except RedisError as exc:
            log.warning("could not release %s (it expires by itself): %s",
                        self.describe(), exc)


class FileLock:
    """``fcntl.flock`` on a file; released by the kernel when the process ends."""

    kind = "local"

    def __init__(self, path: Path, *, what: str = "") -> None:
        self.path = Path(path)
        self.what = what or str(path)
        self._fd: int | None = None

    def describe(self) -> str:
        return f"local lock {self.path}"

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockUnavailable(f"cannot open lock file {self.path}: {exc} (set lock_dir "
                                  "in [bucket])") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "?"
            os.close(fd)
            raise LockHeld(f"another s3s3bucket run holds the lock for {self.what} "
                           f"(file {self.path}, holder {holder}); not starting") from None
        # The holder's name, for the message of a run that is refused.
        os.ftruncate(fd, 0)
        os.pwrite(fd, _token().encode("utf-8"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # The file stays: unlinking a lock file lets two runs lock two different files.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class NoLock:
    kind = "none"

    def describe(self) -> str:
        return "no lock (lock = none)"

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


@contextlib.contextmanager
def job_lock(source: EndpointConfig, cfg: BucketConfig,
             redis_factory: Callable[[], redis.Redis] | None, *,
             lost: threading.Event | None = None) -> Iterator[object]:
    """Hold the lock ``cfg.lock`` asks for over the ``with`` block; yields the lock.

    ``redis_factory`` makes the Redis client (None: no Redis configured). ``lost`` is set
    if a Redis lock is found taken by another run while held. Raises :class:`LockHeld`
    when another run holds it, :class:`LockUnavailable` when ``lock = redis`` and Redis
    does not answer.
    """
    lock = choose_lock(source, cfg, redis_factory, lost=lost)
    lock.acquire()
    log.info("holding %s", lock.describe())
    try:
        yield lock
    finally:
        lock.release()


def choose_lock(source: EndpointConfig, cfg: BucketConfig,
                redis_factory: Callable[[], redis.Redis] | None, *,
                lost: threading.Event | None = None):
    what = f"s3://{source.bucket} on {source.endpoint_url or 'AWS'}"
    if cfg.lock == "none":
        return NoLock()
    if cfg.lock in ("auto", "redis"):
        problem = "no Redis configured"
        if redis_factory is not None:
            from redis import RedisError

            client = redis_factory()
            try:
                client.ping()
                return RedisLock(client, redis_key(source), ttl_s=cfg.lock_ttl_s, what=what,
                                 lost=lost)
            except RedisError as exc:
                problem = f"{type(exc).__name__}: {exc}"
        if cfg.lock == "redis":
            raise LockUnavailable(f"lock = redis, but Redis does not answer ({problem})")
        log.warning("Redis does not answer (%s); using a local lock, which does not exclude "
                    "runs on other hosts", problem)
    return FileLock(lock_path(source, cfg.lock_dir), what=what)
