"""The listener's metrics: :class:`ListenerMetrics` watches the replicator (it is its
observer) and reads the rest when Prometheus scrapes.

Counted as it happens, in the worker threads: each destination's copy, skip and delete, the
bytes written and read, how long copies take, each failed try, and the replication lag of
every finished job (from its event's time, or from when its entry entered the stream, to
the copy verified at every destination). Read at scrape time, costing nothing between
scrapes: the listener's totals (:class:`~s3s3.listener.counters.Counters`), the jobs in
hand, which endpoints are down, whether Redis answers, and, in stream mode, the backlog in
Redis (read at most every ``backlog_ttl_s`` and with a short timeout, so that a scrape
never waits on a Redis that is away). With sharded streams the backlog series are the
totals over every stream (so dashboards and alerts read the same names), and
``s3s3_stream_shard_*`` gauges, labelled by ``stream``, say where the backlog is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from s3s3 import __version__
from s3s3.errors import is_retryable
from s3s3.listener.counters import Counters
from s3s3.listener.daemon import Running
from s3s3.listener.replicator import JobResult
from s3s3.model import CopyResult, Outcome
from s3s3.queue.stream.status import ShardedStatus, StreamStatus

log = logging.getLogger("s3s3.metrics")

#: Seconds; up to AWS's 15-minute replication SLA and past it, for the lag alert.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)
#: Seconds one copy takes: small objects in milliseconds, large ones in minutes.
COPY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

#: Counters of :class:`Counters` exposed as they are: (field, metric name, help).
_TOTALS = (
    ("received", "s3s3_events_received_total", "Events taken from the intake."),
    ("coalesced", "s3s3_coalesced_events_total", "Events folded into a job already waiting."),
    ("stale", "s3s3_stale_events_total", "Events at or below what was already applied."),
    ("retried", "s3s3_retries_total", "Jobs scheduled again after a failed try."),
    ("bad_messages", "s3s3_bad_messages_total", "Messages that did not parse (dead-lettered)."),
    ("ignored_events", "s3s3_ignored_events_total", "Events of kinds s3s3 does not act on."),
    ("dead_lettered", "s3s3_dead_lettered_total", "Entries moved to the dead-letter stream."),
    ("handed_back", "s3s3_handed_back_total", "Entries handed back unfinished at shutdown."),
    ("dropped", "s3s3_dropped_events_total", "Pub/sub events dropped (no room to hold them)."),
)


class ListenerMetrics:
    """One listener's metrics, in ``registry`` (its own unless given one).

    ``destinations`` are the destination names, so their series exist from the start (a
    rate over a series that appears late misses its first increase). :meth:`bind` gives it
    what the gauges read once the listener runs.
    """

    def __init__(
        self,
        *,
        source: str,
        destinations: Sequence[str],
        counters: Counters,
        info: dict[str, str] | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.clock = clock
        r = self.registry
        self.objects = Counter(
            "s3s3_objects",
            "Keys brought in step at a destination, by outcome.",
            ("destination", "outcome"),
            registry=r,
        )
        self.bytes_written = Counter(
            "s3s3_bytes_written", "Bytes written to a destination.", ("destination",), registry=r
        )
        self.bytes_read = Counter(
            "s3s3_source_bytes_read", "Bytes read from the source.", registry=r
        )
        self.copy_seconds = Histogram(
            "s3s3_copy_duration_seconds",
            "Seconds one copy to one destination took.",
            ("destination",),
            buckets=COPY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "s3s3_copy_errors",
            "Failed tries against an endpoint (the source is named too).",
            ("endpoint", "retryable"),
            registry=r,
        )
        self.lag = Histogram(
            "s3s3_replication_lag_seconds",
            "From the event (or its entry entering the stream) to the key verified at every "
            "destination.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.destinations = tuple(destinations)
        # Each destination's series, made once: a hook then updates a child it holds
        # instead of looking it up (and taking the family's lock) on every copy.
        self._children: dict[str, _Children] = {}
        for name in self.destinations:
            self._child(name)
        Gauge("s3s3_build_info", "The s3s3 version.", ("version",), registry=r).labels(
            __version__
        ).set(1)
        if info:
            keys = sorted(info)
            Gauge("s3s3_listener_info", "What this listener reads.", keys, registry=r).labels(
                *(info[k] for k in keys)
            ).set(1)
        self._gauges = _Gauges(source, counters)
        r.register(self._gauges)

    def bind(
        self,
        running: Callable[[], Running | None],
        backlog: Callable[[], StreamStatus | ShardedStatus] | None = None,
        *,
        backlog_ttl_s: float = 5.0,
    ) -> None:
        """Read the listener's state from ``running`` and, in stream mode, the backlog from
        ``backlog`` (at most every ``backlog_ttl_s``) when scraped."""
        self._gauges.running = running
        self._gauges.backlog = _Cached(backlog, backlog_ttl_s) if backlog is not None else None

    def _child(self, destination: str) -> _Children:
        children = self._children.get(destination)
        if children is None:  # a name not given at start: made once, then held too
            objects = self.objects
            children = self._children[destination] = _Children(
                copied=objects.labels(destination, "copied"),
                skipped=objects.labels(destination, "skipped"),
                deleted=objects.labels(destination, "deleted"),
                missing=objects.labels(destination, "missing"),
                failed=objects.labels(destination, "failed"),
                bytes_written=self.bytes_written.labels(destination),
                copy_seconds=self.copy_seconds.labels(destination),
            )
        return children

    # --- the Observer hooks (s3s3.listener.observer), from worker threads: a metric's
    # failure must never become the copy's, so each hook swallows (and logs) its own.

    def copied(self, destination: str, result: CopyResult) -> None:
        try:
            children = self._child(destination)
            if result.outcome is Outcome.COPIED:
                children.copied.inc()
                children.bytes_written.inc(result.size)
                children.copy_seconds.observe(result.duration_s)
            else:
                children.skipped.inc()
            if result.bytes_read:
                self.bytes_read.inc(result.bytes_read)
        except Exception:
            log.debug("counting a copy to %s failed", destination, exc_info=True)

    def deleted(self, destination: str) -> None:
        try:
            self._child(destination).deleted.inc()
        except Exception:
            log.debug("counting a delete at %s failed", destination, exc_info=True)

    def failed(self, destination: str, exc: BaseException) -> None:
        try:
            self.errors.labels(destination, "true" if is_retryable(exc) else "false").inc()
        except Exception:
            log.debug("counting a failed try at %s failed", destination, exc_info=True)

    def finished(self, result: JobResult, event_times: Sequence[float]) -> None:
        try:
            if result.outcome is Outcome.MISSING or result.outcome is Outcome.FAILED:
                # A failed job may have finished some destinations: those were counted.
                missing = result.outcome is Outcome.MISSING
                for name in self.destinations:
                    if name not in result.destinations:
                        children = self._child(name)
                        (children.missing if missing else children.failed).inc()
                return  # no lag: the key is not in step everywhere
            if not event_times:
                return
            now = self.clock()
            for at in event_times:
                self.lag.observe(max(0.0, now - at))
        except Exception:
            log.debug("counting a finished job failed", exc_info=True)


@dataclass(frozen=True)
class _Children:
    """One destination's series (prometheus_client children)."""

    copied: Any
    skipped: Any
    deleted: Any
    missing: Any
    failed: Any
    bytes_written: Any
    copy_seconds: Any


class _Cached:
    """A reading of the backlog, kept ``ttl_s``; a failed reading is None, kept as long."""

    def __init__(self, read: Callable[[], StreamStatus | ShardedStatus], ttl_s: float) -> None:
        self.read = read
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._value: StreamStatus | ShardedStatus | None = None

    def get(self) -> StreamStatus | ShardedStatus | None:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                try:
                    self._value = self.read()
                except Exception as exc:  # Redis away: the gauges say so, the scrape goes on
                    log.debug("reading the stream's backlog failed: %s", type(exc).__name__)
                    self._value = None
                self._at = time.monotonic()
            return self._value


class _Gauges(Collector):
    """What is read at scrape time: the totals, the state of the listener, the backlog."""

    def __init__(self, source: str, counters: Counters) -> None:
        self.source = source
        self.counters = counters
        self.running: Callable[[], Running | None] = lambda: None
        self.backlog: _Cached | None = None

    def describe(self) -> list:
        return []  # read when collected: nothing is known before the listener runs

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        totals = self.counters.snapshot()
        for field, name, text in _TOTALS:
            family = CounterMetricFamily(name.removesuffix("_total"), text)
            family.add_metric([], totals.get(field, 0))
            yield family
        state = self.running()
        if state is not None:
            jobs = GaugeMetricFamily(
                "s3s3_jobs",
                "Work in hand: held = events taken and not yet reported back to the intake; "
                "queued_or_running = keys with work (queued, running, held for an endpoint "
                "down, or waiting to retry).",
                labels=("state",),
            )
            jobs.add_metric(["held"], state.replicator.held)
            jobs.add_metric(["queued_or_running"], state.replicator.jobs)
            yield jobs
            yield GaugeMetricFamily(
                "s3s3_copies_running", "Copier calls running now.", value=state.replicator.running
            )
            up = GaugeMetricFamily(
                "s3s3_endpoint_up",
                "1 when the endpoint answers, 0 while it is down (jobs for it are held).",
                labels=("endpoint", "role"),
            )
            up.add_metric(
                [state.source, "source"], 0 if state.source in state.replicator.down else 1
            )
            for name in state.destinations:
                up.add_metric([name, "destination"], 0 if name in state.replicator.down else 1)
            yield up
            limits = GaugeMetricFamily(
                "s3s3_endpoint_requests_limit",
                "Requests s3s3 allows in flight toward the endpoint now: halved on 503 "
                "SlowDown, raised again while it answers.",
                labels=("endpoint", "role"),
            )
            for name, limit in state.replicator.request_limits.items():
                role = "source" if name == state.source else "destination"
                limits.add_metric([name, role], limit)
            yield limits
            yield GaugeMetricFamily(
                "s3s3_redis_up", "1 when Redis answers the listener.", value=int(state.redis_up)
            )
        if self.backlog is None:
            return
        backlog = self.backlog.get()
        if backlog is None:
            return
        if isinstance(backlog, ShardedStatus):
            yield from _backlog(backlog.total)
            if backlog.sharded:
                yield from _shards(backlog)
        else:
            yield from _backlog(backlog)


def _shards(status: ShardedStatus) -> Iterator[GaugeMetricFamily]:
    """Per stream, where the totals of :func:`_backlog` come from."""
    parts = (*status.shards, *status.retired)
    for name, text, value in (
        ("s3s3_stream_shard_length", "Entries in each stream of the shards.", "length"),
        ("s3s3_stream_shard_pending", "Pending entries in each stream of the shards.", "pending"),
        (
            "s3s3_stream_shard_oldest_pending_age_seconds",
            "Age of the oldest unacknowledged entry of each stream of the shards (0 with none).",
            "age",
        ),
        ("s3s3_stream_shard_dead_letters", "Dead letters of each shard.", "dead"),
    ):
        family = GaugeMetricFamily(name, text, labels=("stream",))
        for part in parts:
            reading = {
                "length": part.length,
                "pending": part.pending,
                "age": part.oldest_unfinished_age_s or 0.0,
                "dead": part.dead_letters,
            }[value]
            family.add_metric([part.stream], reading)
        yield family


def _backlog(s: StreamStatus) -> Iterator[GaugeMetricFamily]:
    yield GaugeMetricFamily("s3s3_stream_length", "Entries in the stream.", value=s.length)
    if s.undelivered is not None:
        yield GaugeMetricFamily(
            "s3s3_stream_undelivered",
            "Entries the group has not given to a consumer yet.",
            value=s.undelivered,
        )
    yield GaugeMetricFamily(
        "s3s3_stream_pending", "Entries given to a consumer and not acknowledged.", value=s.pending
    )
    yield GaugeMetricFamily(
        "s3s3_oldest_pending_age_seconds",
        "Age of the oldest entry not acknowledged yet, delivered or not (0 with none).",
        value=s.oldest_unfinished_age_s or 0.0,
    )
    yield GaugeMetricFamily(
        "s3s3_stream_consumers", "Consumers in the group.", value=len(s.consumers)
    )
    yield GaugeMetricFamily(
        "s3s3_dead_letters", "Entries in the dead-letter stream.", value=s.dead_letters
    )


__all__ = ["COPY_BUCKETS", "LAG_BUCKETS", "ListenerMetrics"]
