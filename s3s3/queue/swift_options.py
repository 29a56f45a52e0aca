"""The Swift middleware's section of proxy-server.conf (``[filter:s3s3]``), checked: which
Redis and stream, which accounts and containers are announced, and what happens while Redis
is away. A wrong option is a :class:`~s3s3.errors.ConfigError` naming it and the file.

The options are listed in :mod:`.swift_middleware`'s docstring, where operators read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3s3.config import (
    MAX_STREAM_LEN,
    RedisConfig,
    redis_url_problem,
    to_bool,
    to_float,
    to_int,
    to_list,
)
from s3s3.errors import ConfigError
from s3s3.queue.swift_backlog import RETRY_BASE_S
from s3s3.queue.swift_requests import RESERVED_PREFIX, SEGMENTS_SUFFIX, Write
from s3s3.redact import redact_url

KNOWN_OPTIONS = (
    "redis_url",
    "url",
    "password",
    "ssl_ca_certs",
    "stream",
    "maxlen",
    "accounts",
    "containers",
    "require_announce",
    "queue_size",
    "timeout",
    "retry_max",
)


@dataclass(frozen=True)
class SwiftOptions:
    """The filter's section of proxy-server.conf, checked."""

    redis: RedisConfig
    accounts: frozenset[str] = frozenset()
    containers: frozenset[str] = frozenset()
    require_announce: bool = False
    queue_size: int = 10_000
    timeout_s: float = 2.0
    retry_max_s: float = 5.0

    def covers(self, write: Write) -> bool:
        """Whether ``write`` is in the configured accounts and containers (and not s3api's
        segments or a reserved container, which are never announced)."""
        if write.container.endswith(SEGMENTS_SUFFIX) or write.container.startswith(RESERVED_PREFIX):
            return False
        if self.accounts and write.account not in self.accounts:
            return False
        return not self.containers or write.container in self.containers

    def describe(self) -> str:
        """What is announced where, without a secret."""
        accounts = ", ".join(sorted(self.accounts)) or "all"
        containers = ", ".join(sorted(self.containers)) or "all"
        return (
            f"stream {self.redis.stream} at {self.redis.safe_url}, accounts: {accounts}, "
            f"containers: {containers}, "
            + (
                "require_announce: a write Redis cannot take is answered 503"
                if self.require_announce
                else f"queue of {self.queue_size:,} while Redis is away"
            )
        )


def options_from(local_conf: Mapping[str, str], *, conf_file: str | None = None) -> SwiftOptions:
    """The options of the filter's section; :class:`ConfigError` names what is wrong."""
    where = "in the s3s3 filter section" + (f" (file: {conf_file!r})" if conf_file else "")

    def error(text: str) -> ConfigError:
        return ConfigError(f"{text} {where}")

    # Swift adds "__name__" (the section's name); its own log_* options are its logger's.
    unknown = sorted(
        k for k in local_conf if k not in KNOWN_OPTIONS and not k.startswith(("log_", "__"))
    )
    if unknown:
        raise error(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(KNOWN_OPTIONS)})"
        )
    if "redis_url" in local_conf and "url" in local_conf:
        raise error("'redis_url' and 'url' are alternatives; set one")
    url_key = "url" if "url" in local_conf else "redis_url"
    url = (local_conf.get(url_key) or RedisConfig.url).strip()
    problem = redis_url_problem(url)
    if problem:
        raise error(f"value {redact_url(url)!r} for {url_key!r} {problem}")
    ca_certs = (local_conf.get("ssl_ca_certs") or "").strip() or None
    if ca_certs and not Path(ca_certs).is_file():
        raise error(f"value {ca_certs!r} for 'ssl_ca_certs' is not a readable file")

    def number(key: str, convert: Callable[[str], Any], default, low, high):
        raw = local_conf.get(key)
        if raw is None or not raw.strip():
            return default
        try:
            value = convert(raw)
        except ValueError as exc:
            raise error(f"value {raw!r} for {key!r} {exc}") from None
        if not low <= value <= high:
            raise error(f"value {raw!r} for {key!r} is not between {low} and {high}")
        return value

    raw_require = local_conf.get("require_announce")
    try:
        require = to_bool(raw_require) if raw_require and raw_require.strip() else False
    except ValueError as exc:
        raise error(f"value {raw_require!r} for 'require_announce' {exc}") from None
    stream = (local_conf.get("stream") or "").strip() or RedisConfig.stream
    redis_cfg = RedisConfig(
        url=url,
        password=local_conf.get("password") or None,
        ssl_ca_certs=ca_certs,
        mode="stream",
        stream=stream,
        maxlen=number("maxlen", to_int, RedisConfig.maxlen, 1, MAX_STREAM_LEN),
    )
    return SwiftOptions(
        redis=redis_cfg,
        accounts=frozenset(to_list(local_conf.get("accounts") or "")),
        containers=frozenset(to_list(local_conf.get("containers") or "")),
        require_announce=require,
        queue_size=number("queue_size", to_int, 10_000, 1, 10_000_000),
        timeout_s=number("timeout", to_float, 2.0, 0.01, 300.0),
        retry_max_s=number("retry_max", to_float, 5.0, RETRY_BASE_S, 3600.0),
    )


__all__ = ["SwiftOptions", "options_from"]
