"""Putting a script's metrics together: the registry, what it reads, and the server.

``s3s3listen`` and ``s3s3intake`` call these when ``[metrics]`` gives them an address, so
that the scripts stay thin and the rooms watched never import this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from s3s3 import __version__
from s3s3.config import Settings
from s3s3.listener.counters import Counters
from s3s3.metrics.listener import ListenerMetrics
from s3s3.metrics.server import MetricsServer
from s3s3.queue.contract import Mode
from s3s3.queue.tally import Tally

if TYPE_CHECKING:
    import redis

    from s3s3.listener.daemon import Listener

#: Seconds a backlog reading may wait on Redis: a scrape must not hang on a Redis away.
BACKLOG_TIMEOUT_S = 2.0


@dataclass
class ServedListener:
    """A listener's metrics server, bound to the listener once it exists."""

    metrics: ListenerMetrics
    settings: Settings
    server: MetricsServer | None = None
    _client: redis.Redis | None = field(default=None, repr=False)

    def start(self, listener: Listener) -> None:
        """Serve, reading ``listener``'s state (and the stream's backlog) when asked."""
        backlog = None
        if Mode(self.settings.redis.mode) is Mode.STREAM:
            from s3s3.queue.redis_client import connect
            from s3s3.queue.stream.status import ShardedStatus, read_sharded_status

            client = connect(
                self.settings.redis,
                socket_timeout=BACKLOG_TIMEOUT_S,
                socket_connect_timeout=BACKLOG_TIMEOUT_S,
            )
            self._client = client
            cfg = self.settings.redis

            def backlog() -> ShardedStatus:
                return read_sharded_status(client, cfg)

        self.metrics.bind(listener.running, backlog)

        def readiness() -> Sequence[str]:
            running = listener.running()
            if running is None:
                return ["not replicating: starting (checking endpoints) or stopping"]
            return running.problems()

        assert self.settings.metrics.listen is not None
        self.server = MetricsServer(
            self.metrics.registry,
            self.settings.metrics.listen,
            readiness=readiness,
            what="s3s3listen",
        ).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self._client is not None:
            self._client.close()


def listener_metrics(
    settings: Settings, counters: Counters
) -> tuple[ListenerMetrics, ServedListener]:
    """The metrics of a listener run with ``settings`` (its observer) and their server,
    started later with :meth:`ServedListener.start`."""
    rcfg = settings.redis
    info = {"mode": rcfg.mode}
    if Mode(rcfg.mode) is Mode.STREAM:
        info.update(stream=rcfg.stream, group=rcfg.group, consumer=rcfg.consumer or "")
    else:
        info.update(channel=rcfg.channel)
    metrics = ListenerMetrics(
        source=settings.source.name,
        destinations=[d.name for d in settings.destinations],
        counters=counters,
        info=info,
    )
    return metrics, ServedListener(metrics, settings)


class TallyCollector(Collector):
    """The push intakes' :class:`Tally` as ``s3s3_intake_*`` counters, read when scraped,
    and Redis's state as the intakes find it."""

    NAMES = {
        "requests": ("s3s3_intake_requests", "Requests (HTTP) and messages (AMQP) by answer."),
        "records": ("s3s3_intake_records", "Records pushed, by what became of them."),
        "outages": ("s3s3_intake_redis_outages", "Times Redis stopped taking entries."),
    }

    def __init__(self, tally: Tally, redis_problem: Callable[[], str | None]) -> None:
        self.tally = tally
        self.redis_problem = redis_problem

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        families: dict[tuple[str, tuple[str, ...]], CounterMetricFamily] = {}
        for (name, labels), value in sorted(self.tally.snapshot().items()):
            metric, text = self.NAMES.get(name, (f"s3s3_intake_{name}", name))
            keys = tuple(k for k, _ in labels)
            family = families.get((metric, keys))
            if family is None:
                family = families[(metric, keys)] = CounterMetricFamily(metric, text, labels=keys)
            family.add_metric([v for _, v in labels], value)
        yield from families.values()
        yield GaugeMetricFamily(
            "s3s3_redis_up",
            "1 when Redis takes the intake's entries.",
            value=0 if self.redis_problem() else 1,
        )


def intake_server(
    settings: Settings, tally: Tally, redis_problem: Callable[[], str | None]
) -> MetricsServer:
    """The (unstarted) server of ``s3s3intake``'s metrics, at ``[metrics] intake``."""
    assert settings.metrics.intake is not None
    registry = CollectorRegistry(auto_describe=True)
    Gauge("s3s3_build_info", "The s3s3 version.", ("version",), registry=registry).labels(
        __version__
    ).set(1)
    registry.register(TallyCollector(tally, redis_problem))

    def readiness() -> Sequence[str]:
        problem = redis_problem()
        return [problem] if problem else []

    return MetricsServer(registry, settings.metrics.intake, readiness=readiness, what="s3s3intake")


__all__ = ["ServedListener", "TallyCollector", "intake_server", "listener_metrics"]
