"""The locks that keep two runs of the bucket job on one source bucket from overlapping.

Cron and supervisord start ``s3s3bucket`` on a timer, whether or not the last run has
finished. The locks are taken per source endpoint and bucket:

- the local lock: ``fcntl.flock`` on a file in ``lock_dir``; the kernel releases it when
  the process dies, so nothing goes stale. It excludes runs on this host only.
- the Redis lock: ``SET key token NX PX ttl`` on the ``[pubsub]`` Redis, so runs on
  different hosts exclude each other. A thread renews it every third of the TTL while the
  run goes on; it is released by a Lua compare-and-delete, so a run never removes a lock
  that expired and was taken by another. If a renewal finds the lock taken by someone
  else, :attr:`RedisLock.lost` is set and the run stops taking work.

``[bucket] lock`` says which are held:

- ``auto`` (the default): the local lock always, and the Redis lock as well when Redis
  answers. Two runs on one host never overlap, whatever Redis does. While Redis is down,
  runs on *different* hosts are not excluded from each other: each holds only its own
  local lock (a warning says so). Use ``lock = redis`` where that must never happen.
- ``redis``: the local lock and the Redis lock; a run does not start when Redis does not
  answer.
- ``local``: the local lock only.
- ``none``: no lock.

The local lock is taken first, then the Redis lock; they are released in reverse. A wrong
password or an ACL refusal (NOAUTH, WRONGPASS, NOPERM) is not an outage: the run stops with
:class:`~s3s3.errors.RedisFatal` instead of falling back. Which locks are held is logged
at INFO.

The locks decide nothing about the run itself: a lock found lost sets the event the run
stops on. Redis errors are sorted by the one table in :mod:`s3s3.queue.redis_client`.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from s3s3.config import BucketConfig, EndpointConfig
from s3s3.errors import LockHeld, LockUnavailable, RedisFatal
from s3s3.redact import redact

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)


class LockMode(str, enum.Enum):
    """``[bucket] lock``: which locks a run holds (see the module doc).

    A ``str``, so that the INI's value converts as it is: ``LockMode(cfg.lock)``.
    """

    AUTO = "auto"  # the local lock, and the Redis lock when Redis answers
    REDIS = "redis"  # the local lock and the Redis lock, or no run
    LOCAL = "local"  # the local lock only
    NONE = "none"  # no lock

    def __str__(self) -> str:
        return self.value

    @property
    def wants_redis(self) -> bool:
        return self is LockMode.AUTO or self is LockMode.REDIS


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

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        ttl_s: float,
        what: str = "",
        lost: threading.Event | None = None,
    ) -> None:
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
            if isinstance(holder, bytes):
                holder = holder.decode("utf-8", "replace")
            holder_text = holder or "?"
            raise LockHeld(
                f"another s3s3bucket run holds the lock for {self.what} "
                f"(Redis key {self.key}, holder {holder_text}, expires in "
                f"{max(ttl_ms, 0) / 1000:.0f} s); not starting"
            )
        self._renewer = threading.Thread(target=self._renew_loop, name="lock-renew", daemon=True)
        self._renewer.start()

    def renew(self) -> bool:
        """Extend the TTL; False when the lock is no longer ours."""
        return bool(self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    def _renew_loop(self) -> None:
        from redis import RedisError  # imported here: a local lock never needs redis-py

        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.renew():
                    log.error(
                        "lost %s: it expired or was taken by another run; stopping", self.describe()
                    )
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
            log.warning("could not release %s (it expires by itself): %s", self.describe(), exc)


class FileLock:
    """``fcntl.flock`` on a file; released by the kernel when the process ends."""

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
            raise LockUnavailable(
                f"cannot open lock file {self.path}: {exc} (set lock_dir in [bucket])"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "?"
            os.close(fd)
            raise LockHeld(
                f"another s3s3bucket run holds the lock for {self.what} "
                f"(file {self.path}, holder {holder}); not starting"
            ) from None
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
    """``lock = none``: nothing is held."""

    def describe(self) -> str:
        return "no lock (lock = none)"

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


@contextlib.contextmanager
def job_lock(
    source: EndpointConfig,
    cfg: BucketConfig,
    redis_factory: Callable[[], redis.Redis] | None,
    *,
    lost: threading.Event | None = None,
    redis_url: str | None = None,
) -> Iterator[RedisLock | FileLock | NoLock]:
    """Hold the locks ``cfg.lock`` asks for over the ``with`` block.

    The local lock is taken first (``auto``, ``redis``, ``local``), then the Redis lock
    (``auto`` when Redis answers, ``redis``); they are released in reverse. Yields the
    lock that reaches furthest: the Redis lock when held, else the local one (or
    :class:`NoLock`).

    ``redis_factory`` makes the Redis client (None: no Redis configured); ``redis_url``
    names that Redis in messages and must come with its secrets masked
    (``RedisConfig.safe_url``). ``lost`` is set if the Redis lock is found taken by
    another run while held. Raises :class:`LockHeld` when another run holds either lock,
    :class:`RedisFatal` when Redis refuses s3s3 (password, ACL), and
    :class:`LockUnavailable` when ``lock = redis`` and Redis does not answer.
    """
    mode = LockMode(cfg.lock)
    if mode is LockMode.NONE:
        log.info("holding %s", NoLock().describe())
        yield NoLock()
        return
    with contextlib.ExitStack() as held:
        local = FileLock(lock_path(source, cfg.lock_dir), what=_what(source))
        local.acquire()
        held.callback(local.release)
        log.info("holding %s", local.describe())
        widest: RedisLock | FileLock = local
        if mode.wants_redis:
            shared = _redis_lock(source, cfg, redis_factory, lost=lost, redis_url=redis_url)
            if shared is not None and _acquire_redis_lock(shared, cfg, redis_url):
                held.callback(shared.release)
                log.info("holding %s", shared.describe())
                widest = shared
        yield widest


def choose_lock(
    source: EndpointConfig,
    cfg: BucketConfig,
    redis_factory: Callable[[], redis.Redis] | None,
    *,
    lost: threading.Event | None = None,
    redis_url: str | None = None,
) -> RedisLock | FileLock | NoLock:
    """The lock that reaches furthest of those ``cfg.lock`` asks for, not yet taken: the
    Redis lock when Redis answers (``auto``, ``redis``), else the local lock, or
    :class:`NoLock`. (:func:`job_lock` holds the local lock as well.)"""
    mode = LockMode(cfg.lock)
    if mode is LockMode.NONE:
        return NoLock()
    if mode.wants_redis:
        shared = _redis_lock(source, cfg, redis_factory, lost=lost, redis_url=redis_url)
        if shared is not None:
            return shared
    return FileLock(lock_path(source, cfg.lock_dir), what=_what(source))


def _what(source: EndpointConfig) -> str:
    return f"s3://{source.bucket} on {source.endpoint_url or 'AWS'}"


def _redis_lock(
    source: EndpointConfig,
    cfg: BucketConfig,
    redis_factory: Callable[[], redis.Redis] | None,
    *,
    lost: threading.Event | None,
    redis_url: str | None,
) -> RedisLock | None:
    """The Redis lock, not yet taken, when Redis answers a PING; None (``auto``) when it
    does not."""
    if redis_factory is None:
        _no_redis(cfg, "no Redis configured")
        return None
    from redis import RedisError  # imported here: a local lock never needs redis-py

    client = redis_factory()
    try:
        client.ping()
    except RedisError as exc:
        _raise_if_refused(exc, client, redis_url)
        _no_redis(cfg, _problem(exc, client))
        return None
    return RedisLock(client, redis_key(source), ttl_s=cfg.lock_ttl_s, what=_what(source), lost=lost)


def _acquire_redis_lock(lock: RedisLock, cfg: BucketConfig, redis_url: str | None) -> bool:
    """Take ``lock``; False (``auto``) when Redis stopped answering since the PING."""
    from redis import RedisError

    try:
        lock.acquire()
    except RedisError as exc:
        _raise_if_refused(exc, lock.client, redis_url)
        _no_redis(cfg, _problem(exc, lock.client))
        return False
    return True


def _no_redis(cfg: BucketConfig, problem: str) -> None:
    """``lock = redis``: an error; ``auto``: a warning, and the local lock alone."""
    if LockMode(cfg.lock) is LockMode.REDIS:
        raise LockUnavailable(f"lock = redis, but Redis does not answer ({problem})")
    log.warning(
        "Redis does not answer (%s); holding the local lock only, which does not "
        "exclude runs on other hosts (set lock = redis where they must never "
        "overlap)",
        problem,
    )


def _raise_if_refused(exc: Exception, client: redis.Redis, redis_url: str | None) -> None:
    """A wrong password or an ACL refusal is a mistake to fix, not an outage to ride out:
    falling back to the local lock would let runs on other hosts overlap for good."""
    # Imported here, as redis-py is: a run with a local lock never loads either (~65 ms).
    from s3s3.queue.redis_client import FATAL_ERRORS, refused

    if isinstance(exc, FATAL_ERRORS):
        reason = str(refused(redis_url or _client_url(client), exc)).rstrip(". ")
        message = (
            f"{reason}; not falling back to a local lock (a refused password or ACL "
            "is not an outage)"
        )
        raise RedisFatal(redact(message, _secrets(client))) from exc


def _problem(exc: Exception, client: redis.Redis) -> str:
    return redact(f"{type(exc).__name__}: {exc}", _secrets(client))


def _secrets(client: redis.Redis) -> list[str]:
    # What the client authenticates with, however it was given (URL, query, INI key).
    from s3s3.queue.redis_client import client_secrets

    return client_secrets(client)


def _client_url(client: redis.Redis) -> str:
    """Where ``client`` connects, without user or password (for callers that give no URL)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a Redis Cluster: many nodes, no one URL
        return "a Redis Cluster"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    scheme = "rediss" if pool.connection_class.__name__ == "SSLConnection" else "redis"
    return f"{scheme}://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
