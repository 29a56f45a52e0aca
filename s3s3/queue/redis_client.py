"""Making a Redis connection from ``[pubsub]`` settings (URL, password, TLS), and the one
table of which Redis errors retrying can fix and which it cannot.

Every module that sorts Redis errors (the link, the intakes, the bucket job's lock) uses
:data:`FATAL_ERRORS` and :data:`TRANSIENT_ERRORS` from here; none keeps a list of its own.
This module makes clients and never sends a command: no connection is made until a
caller's first one.
"""

from __future__ import annotations

import redis
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
    redis.exceptions.ClusterError,
    OSError,
)


def connect(cfg: RedisConfig, **kwargs) -> redis.Redis:
    """A Redis client for ``cfg``; no connection is made until the first command.

    ``kwargs`` go to redis-py (for instance ``socket_timeout``). Health checks keep an idle
    blocking read from hanging on a dead connection.
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
