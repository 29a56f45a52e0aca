"""A Swift proxy middleware that announces object writes to the listener's Redis Stream.

OpenStack Swift sends no notifications; this filter in the proxy's pipeline stands in for
them. After the backend answered 2xx to an object PUT, POST (metadata), COPY or DELETE in
the configured accounts and containers, it adds one stream entry
(:func:`~s3s3.queue.messages.entry_fields`, ``via = swift``) for ``s3s3listen`` in stream
mode: the bucket is the container, so ``[source] bucket_name`` filters as usual, and the
listener compares before copying (a retried request announces twice). Swift's
``X-Timestamp`` of the write becomes the entry's sequence (nanoseconds), so an announcement
that arrives after a later one for the same key is dropped as stale by the listener.

In proxy-server.conf::

    [pipeline:main]
    pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats
        bulk tempurl s3api tempauth copy slo s3s3 dlo versioned_writes symlink
        proxy-logging proxy-server

    [filter:s3s3]
    paste.filter_factory = s3s3.queue.swift_middleware:filter_factory
    redis_url = redis://127.0.0.1:6379/0
    stream = s3s3:{backup}:stream
    accounts = AUTH_test

Where it sits, and why: right after ``slo``, which is after s3api, the auth middleware and
``copy``.

- After **s3api and auth**, an S3 request arrives translated, as ``/v1/AUTH_.../bucket/key``;
  before s3api it would not be recognised at all. Requests auth refuses are never 2xx.
- After **copy**, every server-side copy (native ``COPY`` with ``Destination``, ``PUT`` with
  ``X-Copy-From``, s3api's CopyObject) arrives as the plain PUT that writes the destination
  (``swift.source = SSC``, announced as ``ObjectCreated:Copy``) with the status of that PUT.
  (Placed before copy, ``COPY`` and ``X-Copy-From`` are understood too.)
- After **slo**, an SLO manifest PUT arrives as the manifest write itself, with its real
  status. s3api completes a multipart upload with ``?multipart-manifest=put&heartbeat=on``:
  above slo that request is answered ``202 Accepted`` at once and succeeds or fails in the
  body, minutes later. Below slo the manifest PUT is announced (``ObjectCreated:
  CompleteMultipartUpload``) once it is written. An SLO delete arrives as one DELETE per
  segment and one for the manifest.
- After **bulk** (which is early in the pipeline), bulk deletes and archive extraction arrive
  as one subrequest per object.
- Before **versioned_writes** and **symlink**, an overwrite in a versioned container is one
  write of the key, not also the archive copy into a hidden container.

What is never announced: GET, HEAD and other methods; account and container requests;
s3api's ``*+segments`` containers (multipart parts, upload markers); Swift's reserved
(``\\x00``-prefixed) containers; writes answered other than 2xx; objects removed by the
object-expirer (``X-Delete-At``), which bypasses the proxy. The periodic bucket job repairs
whatever real time misses.

Options (``[filter:s3s3]``): ``redis_url`` (or ``url``), ``password``, ``ssl_ca_certs``,
``stream`` (default ``s3s3:{backup}:stream``, ``[pubsub]``'s default), ``maxlen`` (the
stream's bound, default 1,000,000), ``accounts`` and ``containers`` (comma-separated; empty
means all), ``require_announce`` (default false), ``queue_size`` (default 10,000), ``timeout``
(Redis socket timeout, default 2 s) and ``retry_max`` (the writer's longest wait between
tries, default 5 s). Any other option (except Swift's ``log_*``) is a configuration error.

Redis down: by default the client's request is never failed or delayed. Announcements go
to a bounded queue in memory that one background writer drains; while Redis cannot take
them the writer keeps them and retries (logged once per outage); when the queue is full an
announcement is dropped, counted and logged, and the bucket job repairs it. With
``require_announce = true`` the XADD is done in the request instead, after the backend's
write, and a failure answers ``503`` to the client, whose retry writes and announces again.

Swift's proxy runs under eventlet with threads, sockets and select patched (time is not):
the writer is a green thread, and it waits on a condition or an event, never in
``time.sleep``, which would stall the whole proxy. The producer's back-pressure wait is not
used here for the same reason: a full stream counts as Redis unavailable.

This module imports redis and the ground floor, never boto3 or botocore, and runs on the
interpreter Swift runs on (Debian's python3 with python3-redis 4.3). Logs go to the proxy's
logger (``swift.common.utils.get_logger``) and never show a password.
"""

from __future__ import annotations

import collections
import importlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from s3s3.config import (
    MAX_STREAM_LEN,
    RedisConfig,
    redis_url_problem,
    to_bool,
    to_float,
    to_int,
    to_list,
)
from s3s3.errors import BacklogFull, ConfigError, MessageError
from s3s3.model import COPY, DELETE, WorkItem
from s3s3.queue.announce import sort_failure
from s3s3.queue.messages import entry_fields, validate_key
from s3s3.queue.outage import Outage
from s3s3.queue.producer import add_entries
from s3s3.queue.redis_client import connect
from s3s3.queue.tally import Tally
from s3s3.redact import redact_url

VIA = "swift"
#: s3api keeps the parts of multipart uploads in ``<bucket>+segments``.
SEGMENTS_SUFFIX = "+segments"
#: Swift's reserved namespace (object versioning's hidden containers) starts with NUL.
RESERVED_PREFIX = "\x00"
API_VERSIONS = ("v1", "v1.0")
WRITE_METHODS = ("PUT", "POST", "DELETE", "COPY")

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

#: Entries per XADD round trip of the writer.
WRITE_BATCH = 100
#: The writer's first wait after a failure; it doubles up to ``retry_max``.
RETRY_BASE_S = 0.1

WsgiApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


# --------------------------------------------------------------------------- options


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


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Write:
    """An object write a request asks for, read from the request before it is served.

    ``account``, ``container`` and ``key`` are real text (UTF-8 decoded), not WSGI strings.
    """

    op: str
    account: str
    container: str
    key: str
    event: str


def wsgi_to_text(value: str) -> str | None:
    """A WSGI string (each byte of the path as one latin-1 character) as the text its bytes
    spell in UTF-8; None when they spell none (Swift refuses such paths itself)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


def object_path(path_info: str) -> tuple[str, str, str] | None:
    """``(account, container, object)`` of ``/v1/ACCOUNT/CONTAINER/OBJECT``, or None for any
    other path (the account or a container, /info, /auth, an S3 path s3api did not
    translate). ``path_info`` is the WSGI string, already percent-decoded by the server."""
    parts = path_info.split("/", 4)
    if len(parts) != 5 or parts[0] or parts[1] not in API_VERSIONS:
        return None
    decoded = [wsgi_to_text(p) for p in parts[2:]]
    account, container, key = decoded
    if not account or not container or not key:
        return None
    return account, container, key


def _copy_destination(env: Mapping[str, Any], account: str) -> tuple[str, str, str] | None:
    """Where a COPY writes: ``Destination: CONTAINER/OBJECT`` (percent-encoded, as Swift's
    copy middleware reads it) and ``Destination-Account``, else the request's account."""
    destination = env.get("HTTP_DESTINATION")
    if not destination:
        return None
    dest_account = env.get("HTTP_DESTINATION_ACCOUNT")
    if dest_account:
        account_text = _unquoted(dest_account)
        if not account_text:
            return None
        account = account_text
    text = _unquoted(destination)
    if text is None:
        return None
    container, _, key = text.removeprefix("/").partition("/")
    if not container or not key:
        return None
    return account, container, key


def _unquoted(value: str) -> str | None:
    try:
        return unquote_to_bytes(value.encode("latin-1")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


def _put_event(env: Mapping[str, Any]) -> str:
    if env.get("swift.source") == "SSC" or env.get("HTTP_X_COPY_FROM"):
        return "ObjectCreated:Copy"  # the copy middleware's write, or a PUT above it
    query = dict(parse_qsl(env.get("QUERY_STRING") or "", keep_blank_values=True))
    if query.get("multipart-manifest") == "put":
        return "ObjectCreated:CompleteMultipartUpload"  # an SLO manifest
    return "ObjectCreated:Put"


def write_of(env: Mapping[str, Any]) -> Write | None:
    """The object write ``env`` asks for, or None when it asks for none."""
    method = env.get("REQUEST_METHOD")
    if method not in WRITE_METHODS:
        return None
    path = object_path(env.get("PATH_INFO") or "")
    if path is None:
        return None
    account, container, key = path
    if method == "COPY":
        destination = _copy_destination(env, account)
        if destination is None:
            return None  # the copy middleware answers 412
        return Write(COPY, *destination, "ObjectCreated:Copy")
    if method == "DELETE":
        return Write(DELETE, account, container, key, "ObjectRemoved:Delete")
    if method == "POST":
        return Write(COPY, account, container, key, "ObjectCreated:Post")
    return Write(COPY, account, container, key, _put_event(env))


def timestamp_order(value: object) -> tuple[int, float] | None:
    """Swift's ``X-Timestamp`` (``1700000000.12345``, maybe with an ``_<hex>`` offset) as
    ``(sequence in nanoseconds, seconds since the epoch)``, or None when it reads as none.

    Swift orders every write of an object by it (the newest timestamp wins), so it is the
    order the listener should keep. Timestamps have 10 µs steps: an offset (rare: object
    versioning) is added below that, capped, so it orders writes of one step.
    """
    if not isinstance(value, str) or len(value) > 64:
        return None
    normal, _, offset = value.strip().partition("_")
    whole, _, fraction = normal.partition(".")
    if not (whole.isascii() and whole.isdigit()) or len(fraction) > 9:
        return None
    if fraction and not (fraction.isascii() and fraction.isdigit()):
        return None
    sequence = int(whole) * 1_000_000_000 + int(fraction.ljust(9, "0"))
    if offset:
        try:
            sequence += min(int(offset, 16), 9_999)
        except ValueError:
            return None
    return sequence, float(normal)


# --------------------------------------------------------------------------- Redis state


class RedisHealth:
    """Whether Redis takes announcements, as the writer and the requests find it: logs the
    first failure of an outage and the recovery, once each, and counts outages."""

    def __init__(self, cfg: RedisConfig, *, log: Any, tally: Tally, consequence: str) -> None:
        self.cfg = cfg
        self.log = log
        self.tally = tally
        self.consequence = consequence
        self._outage = Outage()

    def describe(self, exc: BaseException) -> str:
        return str(sort_failure(self.cfg, exc, detail=True))

    def down(self, exc: BaseException) -> None:
        if self._outage.failed() == 1:
            self.tally.add("outages", intake=VIA)
            self.log.warning(
                "s3s3: Redis at %s cannot take announcements (%s); %s",
                self.cfg.safe_url,
                self.describe(exc),
                self.consequence,
            )

    def up(self) -> None:
        ended = self._outage.recovered()
        if ended is not None and ended.failures:
            self.log.warning(
                "s3s3: Redis at %s takes announcements again, after %.1fs and %d failed tries",
                self.cfg.safe_url,
                ended.lasted_s,
                ended.failures,
            )


#: What a write to Redis may raise that is Redis being away or full, not a bug here.
_UNAVAILABLE = (redis.RedisError, OSError, BacklogFull)


class Backlog:
    """Announcements waiting for Redis: a bounded queue in memory and the one writer that
    drains it, in order, in batches.

    An entry leaves the queue only once it is in the stream, so at most ``size`` wait,
    whatever the writer is doing. :meth:`offer` never blocks: on a full queue it drops the
    announcement, counts it and logs the first of a run of drops. The writer starts with
    the first offer (in the process serving requests: Swift may load the pipeline before
    forking its workers) and retries with a capped, doubling wait while Redis is away.
    """

    def __init__(
        self,
        client: redis.Redis,
        cfg: RedisConfig,
        *,
        size: int,
        health: RedisHealth,
        tally: Tally,
        log: Any,
        retry_max_s: float,
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.size = size
        self.health = health
        self.tally = tally
        self.log = log
        self.retry_max_s = retry_max_s
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._setup()

    def _setup(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._entries: collections.deque[dict[str, str]] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropping = 0  # announcements dropped since the queue last had room

    def offer(self, fields: dict[str, str]) -> bool:
        """Queue one entry for the writer; False (counted, logged) when the queue is full."""
        self._start()
        with self._cond:
            if len(self._entries) >= self.size:
                self._dropping += 1
                first = self._dropping == 1
            else:
                self._entries.append(fields)
                self._cond.notify()
                return True
        self.tally.add("records", outcome="dropped", intake=VIA)
        if first:
            self.log.warning(
                "s3s3: the queue of announcements waiting for Redis is full (%d): dropping "
                "announcements until it has room, the first for key %r in %s; the bucket "
                "job repairs what is dropped",
                self.size,
                fields.get("key"),
                fields.get("bucket"),
            )
        return False

    def pending(self) -> int:
        """Announcements waiting for Redis now."""
        with self._cond:
            return len(self._entries)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the writer (what still waits is lost); for tests and shutdown."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _start(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._start_lock:
            if self._pid == pid:
                return
            if self._pid is not None:
                self._setup()  # a forked child: the parent's writer did not come along
            self._thread = threading.Thread(
                target=self._run, name="s3s3-swift-announcer", daemon=True
            )
            self._thread.start()
            self._pid = pid

    def _next_batch(self) -> list[dict[str, str]]:
        with self._cond:
            while not self._entries and not self._stop.is_set():
                self._cond.wait()
            return list(itertools.islice(self._entries, WRITE_BATCH))

    def _remove(self, count: int) -> None:
        if count <= 0:
            return
        with self._cond:
            for _ in range(min(count, len(self._entries))):
                self._entries.popleft()
            dropped, self._dropping = self._dropping, 0
        self.tally.add("records", count, outcome="queued", intake=VIA)
        if dropped:
            self.log.warning(
                "s3s3: the queue of announcements has room again; %d were dropped while it "
                "was full",
                dropped,
            )

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                add_entries(self.client, self.cfg, batch, wait_s=0.0)
            except BacklogFull as exc:
                self._remove(exc.added)
                failure: BaseException | None = exc
            except _UNAVAILABLE as exc:
                failure = exc
            except Exception:
                # A bug, not an outage: these entries would fail the same way forever.
                self.log.exception("s3s3: %d announcements could not be written", len(batch))
                with self._cond:
                    for _ in range(min(len(batch), len(self._entries))):
                        self._entries.popleft()
                self.tally.add("records", len(batch), outcome="dropped", intake=VIA)
                continue
            else:
                self._remove(len(batch))
                failure = None
            if failure is None:
                failures = 0
                self.health.up()
                continue
            failures += 1
            self.health.down(failure)
            window = min(self.retry_max_s, RETRY_BASE_S * 2.0 ** min(failures - 1, 60))
            # Event.wait is green under eventlet; time.sleep would stall the proxy.
            self._stop.wait(window)


# --------------------------------------------------------------------------- middleware


class _Started:
    """The response of the app below: its status and headers, and the body still to send."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.exc_info: Any = None
        self.written: list[bytes] = []

    def __call__(self, status: str, headers: list, exc_info: Any = None) -> Callable:
        self.status, self.headers, self.exc_info = status, headers, exc_info
        return self.written.append


class _Body:
    """Chunks already read from a body, then the rest of it; closing closes the original."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], original: Iterable[bytes]):
        self.head = head
        self.rest = rest
        self.original = original

    def __iter__(self) -> Iterator[bytes]:
        yield from self.head
        yield from self.rest

    def close(self) -> None:
        _close(self.original)


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _call_below(app: WsgiApp, env: dict) -> tuple[_Started, Iterable[bytes]]:
    """Call ``app`` until it has given its status (some apps, proxy-logging among them,
    call ``start_response`` only with the first chunk of the body)."""
    started = _Started()
    body = app(env, started)
    if started.status is not None and not started.written:
        return started, body
    head = list(started.written)
    rest = iter(body)
    try:
        while started.status is None:
            head.append(next(rest))
    except StopIteration:
        pass
    except BaseException:
        _close(body)
        raise
    if started.status is None:
        _close(body)
        raise RuntimeError("the application below the s3s3 filter never called start_response")
    return started, _Body(head, rest, body)


_UNANNOUNCED_BODY = (
    b"s3s3: the object was written, but its replication could not be announced "
    b"(Redis is unavailable); retry the request\n"
)


class AnnounceMiddleware:
    """The WSGI filter: serves every request through ``app`` and announces the object
    writes of :meth:`SwiftOptions.covers` that ``app`` answered 2xx.

    ``client`` replaces the Redis client made from the options; ``tally``
    receives the counts (``records`` by outcome: queued, dropped, unavailable, bad;
    ``requests`` by status; ``outages``).
    """

    def __init__(
        self,
        app: WsgiApp,
        options: SwiftOptions,
        *,
        log: Any = None,
        tally: Tally | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        self.app = app
        self.options = options
        self.log = log if log is not None else logging.getLogger("s3s3.intake")
        self.tally = tally if tally is not None else Tally()
        self.client = client if client is not None else _client(options)
        consequence = (
            "writes are answered 503 until it is back (require_announce)"
            if options.require_announce
            else f"announcements wait in memory (at most {options.queue_size:,}) and are "
            "dropped beyond that; the bucket job repairs what is dropped"
        )
        self.health = RedisHealth(
            options.redis, log=self.log, tally=self.tally, consequence=consequence
        )
        self.backlog: Backlog | None = None
        if not options.require_announce:
            self.backlog = Backlog(
                self.client,
                options.redis,
                size=options.queue_size,
                health=self.health,
                tally=self.tally,
                log=self.log,
                retry_max_s=options.retry_max_s,
            )
        self._check_position()

    def describe(self) -> str:
        return self.options.describe()

    def __call__(self, env: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        write = write_of(env)
        if write is None or not self.options.covers(write):
            return self.app(env, start_response)
        # Read now: the app below may rewrite the environment (copy turns COPY into PUT).
        started, body = _call_below(self.app, env)
        status = started.status or ""
        if status.startswith("2") and not self._announce(write, env):
            _close(body)
            self.tally.add("requests", intake=VIA, status="503")
            start_response(
                "503 Service Unavailable",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(_UNANNOUNCED_BODY))),
                ],
            )
            return [_UNANNOUNCED_BODY]
        self.tally.add("requests", intake=VIA, status=status[:3])
        start_response(status, started.headers, started.exc_info)
        return body

    def _announce(self, write: Write, env: Mapping[str, Any]) -> bool:
        """Announce ``write``; False only when ``require_announce`` and Redis cannot take it."""
        order = timestamp_order(env.get("HTTP_X_TIMESTAMP"))
        try:
            key = validate_key(write.key)
        except MessageError as exc:  # a key no S3 store can hold (over 1,024 bytes)
            self.tally.add("records", outcome="bad", intake=VIA)
            self.log.warning("s3s3: not announced, %s in %s: %s", write.op, write.container, exc)
            return True
        item = WorkItem(
            write.op,
            key,
            bucket=write.container,
            event=write.event,
            sequence=order[0] if order else None,
            event_time=order[1] if order else time.time(),
        )
        fields = entry_fields(item, via=VIA)
        if self.backlog is not None:
            self.backlog.offer(fields)
            return True
        try:
            add_entries(self.client, self.options.redis, [fields], wait_s=0.0)
        except _UNAVAILABLE as exc:
            self.health.down(exc)
            self.tally.add("records", outcome="unavailable", intake=VIA)
            return False
        self.health.up()
        self.tally.add("records", outcome="queued", intake=VIA)
        return True

    def _check_position(self) -> None:
        """Warn when the pipeline below holds what should be above (see the docstring)."""
        below = _classes_below(self.app)
        if "S3ApiMiddleware" in below:
            self.log.warning(
                "s3s3: the s3s3 filter sits before s3api in the pipeline and will not see "
                "S3 requests: place it after s3api, the auth filter, copy and slo"
            )
        elif "StaticLargeObject" in below:
            self.log.warning(
                "s3s3: the s3s3 filter sits before slo in the pipeline: multipart uploads "
                "completed through s3api would be announced before they are written; place "
                "it right after slo"
            )


def _classes_below(app: object, limit: int = 64) -> list[str]:
    """The class names of the WSGI filters below, following each one's ``app``."""
    names: list[str] = []
    seen: set[int] = set()
    while app is not None and id(app) not in seen and len(names) < limit:
        seen.add(id(app))
        names.append(type(app).__name__)
        app = getattr(app, "app", None)
    return names


def _client(options: SwiftOptions) -> redis.Redis:
    # One quiet retry replaces a pooled connection that went stale across a Redis restart
    # (without it the first write after the restart would fail); redis-py's own retries
    # with backoff would hold a request up while Redis is away.
    return connect(
        options.redis,
        socket_timeout=options.timeout_s,
        socket_connect_timeout=options.timeout_s,
        retry=Retry(NoBackoff(), 1),
    )


def _proxy_logger(conf: Mapping[str, str]) -> Any:
    """The proxy's logger when Swift is importable (its handlers, its log_* options)."""
    try:
        utils = importlib.import_module("swift.common.utils")
    except ImportError:
        return logging.getLogger("s3s3.intake")
    return utils.get_logger(dict(conf), log_route="s3s3")


def filter_factory(
    global_conf: Mapping[str, str], **local_conf: str
) -> Callable[[WsgiApp], AnnounceMiddleware]:
    """paste.deploy's entry point: ``paste.filter_factory =
    s3s3.queue.swift_middleware:filter_factory`` in a ``[filter:...]`` section."""
    options = options_from(local_conf, conf_file=global_conf.get("__file__"))
    log = _proxy_logger({**global_conf, **local_conf})

    def make(app: WsgiApp) -> AnnounceMiddleware:
        middleware = AnnounceMiddleware(app, options, log=log)
        log.info("s3s3: announcing object writes to %s", middleware.describe())
        return middleware

    return make


__all__ = [
    "AnnounceMiddleware",
    "Backlog",
    "RedisHealth",
    "SwiftOptions",
    "Write",
    "filter_factory",
    "object_path",
    "options_from",
    "timestamp_order",
    "write_of",
    "wsgi_to_text",
]
