"""Making a Redis connection from ``[pubsub]`` settings (URL, password, TLS, a single
server or a Redis Cluster), and the one table of which Redis errors retrying can fix and
which it cannot.

Every module that sorts Redis errors (the link, the intakes, the bucket job's lock) uses
:data:`FATAL_ERRORS` and :data:`TRANSIENT_ERRORS` from here; none keeps a list of its own.
This module makes clients and never sends a command: no connection is made until a
caller's first one.
"""

from __future__ import annotations

import threading
from typing import Any, TypeAlias

import redis
import redis.cluster
import redis.exceptions

from s3s3.config import RedisConfig, redis_url_problem
from s3s3.errors import ConfigError, RedisFatal
from s3s3.redact import redact, redact_url

#: Retrying cannot fix these.
FATAL_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.NoPermissionError,
)
#: The server may answer later: lost connection, timeout, loading, failover, cluster change.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError, TTL exhausted
    redis.exceptions.TryAgainError,  # a slot being migrated
    redis.exceptions.SlotNotCoveredError,  # a master lost and no replica promoted yet
    OSError,
)

#: A single server or a Redis Cluster: both take the same commands on one slot.
RedisClient: TypeAlias = "redis.Redis | redis.cluster.RedisCluster"


def is_cluster(client: Any) -> bool:
    return isinstance(client, redis.cluster.RedisCluster)


def connect(cfg: RedisConfig, **kwargs) -> redis.Redis:
    """A Redis client for ``cfg``; no connection is made until the first command.

    ``kwargs`` go to redis-py (for instance ``socket_timeout``). Health checks keep an idle
    blocking read from hanging on a dead connection. With ``cfg.cluster`` the client is a
    :class:`redis.cluster.RedisCluster` (typed as ``redis.Redis``: it takes the same
    commands, each on the node serving its key's slot).
    """
    options = {
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        **kwargs,
    }
    if cfg.password:
        options["password"] = cfg.password
    if cfg.ssl_ca_certs and cfg.url.startswith("rediss://"):
        options["ssl_ca_certs"] = cfg.ssl_ca_certs
    # load() has checked the URL already; a RedisConfig built by hand is checked here, so a
    # bad URL is a ConfigError naming it (masked), never redis-py's ValueError.
    problem = redis_url_problem(cfg.url)
    if problem:
        raise ConfigError(f"Redis URL {cfg.safe_url!r} {problem}")
    try:
        if cfg.cluster:
            return _LazyCluster(cfg, options)  # type: ignore[return-value]
        return redis.Redis.from_url(cfg.url, **options)
    except ValueError as exc:
        raise ConfigError(
            f"Redis URL {cfg.safe_url!r}: {redact(str(exc), cfg.secrets())}"
        ) from None


def refused(safe_url: str, exc: BaseException) -> RedisFatal:
    """The error for Redis refusing s3s3 (password, ACL): retrying cannot fix it.

    The URL and redis-py's message are redacted: a URL given with ``?password=`` keeps it
    in the query, which a plain userinfo mask leaves alone."""
    return RedisFatal(
        f"Redis at {redact_url(safe_url)} refused s3s3: {type(exc).__name__}: {redact(str(exc))}"
    )


class _LazyCluster(redis.cluster.RedisCluster):
    """A RedisCluster that asks for the cluster's slot map on its first command, not when
    made, as ``redis.Redis`` does: the callers' loops that retry an unreachable Redis then
    retry an unreachable cluster too (redis-py's constructor would raise outside them)."""

    def __init__(self, cfg: RedisConfig, options: dict) -> None:
        retry = options.pop("retry", None)
        if retry is not None:
            # A cluster takes its retry policy itself, not for each node's connection.
            options["retry"] = retry
        if cfg.cluster_nodes:
            options["startup_nodes"] = [
                redis.cluster.ClusterNode(host, port) for host, port in cfg.cluster_nodes
            ]
        self.__dict__["_lazy"] = (cfg, options)
        self.__dict__["_lazy_lock"] = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        # Only reached for an attribute the instance lacks: before the real __init__ (or
        # while it runs: other threads wait for it; its own lookups see the truth).
        if (
            self.__dict__.get("_lazy") is None
            or name.startswith("_lazy")
            or self.__dict__.get("_lazy_owner") == threading.get_ident()
        ):
            raise AttributeError(name)
        with self.__dict__["_lazy_lock"]:
            lazy = self.__dict__.get("_lazy")
            if lazy is not None:
                cfg, options = lazy
                self.__dict__["_lazy_owner"] = threading.get_ident()
                try:
                    redis.cluster.RedisCluster.__init__(self, url=cfg.url, **dict(options))
                except redis.exceptions.RedisClusterException as exc:
                    # "cannot be connected", a slot map missing slots: the cluster may
                    # answer later, like a server that is down.
                    raise redis.exceptions.ClusterError(
                        f"Redis Cluster at {cfg.safe_url}: {redact(str(exc), cfg.secrets())}"
                    ) from None
                finally:
                    self.__dict__["_lazy_owner"] = None
                self.__dict__["_lazy"] = None
        return object.__getattribute__(self, name)

    def close(self) -> None:
        if self.__dict__.get("_lazy") is None:
            super().close()

    def __del__(self) -> None:
        if self.__dict__.get("_lazy") is None:
            super().__del__()

    def __repr__(self) -> str:
        lazy = self.__dict__.get("_lazy")
        if lazy is not None:
            return f"<RedisCluster {lazy[0].safe_url} (not connected yet)>"
        return super().__repr__()
