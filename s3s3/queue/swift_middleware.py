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
logger (``swift.common.utils.get_logger``) and never show a password. Its parts:
:mod:`.swift_requests` reads what a request writes, :mod:`.swift_options` checks the
section, :mod:`.swift_backlog` holds what waits for Redis; this module is the WSGI filter.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from s3s3.errors import MessageError
from s3s3.model import WorkItem
from s3s3.queue.messages import entry_fields, validate_key
from s3s3.queue.producer import add_entries
from s3s3.queue.redis_client import connect
from s3s3.queue.swift_backlog import UNAVAILABLE, VIA, Backlog, RedisHealth
from s3s3.queue.swift_options import SwiftOptions, options_from
from s3s3.queue.swift_requests import Write, timestamp_order, write_of
from s3s3.queue.tally import Tally

WsgiApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


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
        except UNAVAILABLE as exc:
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


__all__ = ["AnnounceMiddleware", "filter_factory"]
