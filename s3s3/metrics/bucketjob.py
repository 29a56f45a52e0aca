"""The bucket job's last run as metrics: node_exporter's textfile format, and a Pushgateway.

``s3s3bucket`` runs from cron or a supervisord TICK and exits, so nothing can scrape it: it
leaves its last run in a file for node_exporter's textfile collector (written to a
temporary file and renamed over the old one, so a reader never sees half a file), and may
push the same to a Pushgateway (grouped by job and source; ``user:password@`` in its URL is
sent as basic auth and never logged). A stale job shows as a stale timestamp:
``s3s3bucket_last_success_timestamp_seconds`` is carried over from the previous file (or
from the Pushgateway, when there is no file) when a run fails, and
``s3s3bucket_expected_period_seconds`` says how old it may get. Nothing here raises for a
file that cannot be written or a push that fails: the run's exit status is the run's.
"""

from __future__ import annotations

import base64
import logging
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile
from prometheus_client.exposition import default_handler
from prometheus_client.parser import text_string_to_metric_families

from s3s3.bucketjob.summary import JobSummary
from s3s3.redact import redact, redact_url, url_secrets

log = logging.getLogger("s3s3.bucket")

LAST_SUCCESS = "s3s3bucket_last_success_timestamp_seconds"


@dataclass(frozen=True)
class Run:
    """One run of the bucket job: when, how it ended, and what it did (None when it could
    not start: a configuration or fatal error)."""

    source: str  # the source bucket (a label on every series: several jobs, one folder)
    started: float  # seconds since the epoch
    ended: float
    exit_status: int
    summary: JobSummary | None
    period_s: float = 3600.0

    @property
    def succeeded(self) -> bool:
        return self.exit_status == 0 and self.summary is not None and self.summary.ok


def registry_for(run: Run, *, last_success: float | None = None) -> CollectorRegistry:
    """The metrics of ``run``; ``last_success`` is the previous success's time, kept when
    this run failed."""
    registry = CollectorRegistry(auto_describe=True)

    def gauge(name: str, text: str, value: float, **labels: str) -> None:
        keys = ("source", *labels)
        Gauge(name, text, keys, registry=registry).labels(run.source, *labels.values()).set(value)

    gauge("s3s3bucket_last_run_start_timestamp_seconds", "When the last run started.", run.started)
    gauge("s3s3bucket_last_run_end_timestamp_seconds", "When the last run ended.", run.ended)
    gauge(
        "s3s3bucket_last_run_duration_seconds",
        "How long the last run took.",
        max(0.0, run.ended - run.started),
    )
    gauge(
        "s3s3bucket_last_run_success",
        "1 when the last run brought every destination in step.",
        1 if run.succeeded else 0,
    )
    gauge("s3s3bucket_last_run_exit_status", "The last run's exit status.", run.exit_status)
    gauge(
        "s3s3bucket_expected_period_seconds",
        "How often the job is meant to run ([metrics] period).",
        run.period_s,
    )
    success = run.ended if run.succeeded else last_success
    if success is not None:
        gauge(LAST_SUCCESS, "When a run last succeeded.", success)
    if run.summary is not None:
        objects = Gauge(
            "s3s3bucket_objects",
            "Keys of the last run by destination and outcome.",
            ("source", "destination", "outcome"),
            registry=registry,
        )
        written = Gauge(
            "s3s3bucket_bytes_written",
            "Bytes the last run wrote to a destination.",
            ("source", "destination"),
            registry=registry,
        )
        for d in run.summary.destinations:
            for outcome in ("listed", "copied", "skipped", "enqueued", "deleted", "failed"):
                objects.labels(run.source, d.name, outcome).set(getattr(d, outcome))
            written.labels(run.source, d.name).set(d.bytes_copied)
    return registry


def _families(path: str | Path):
    """The metric families of a textfile written before; empty when there is none or it
    does not parse (it is replaced either way)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    try:
        return list(text_string_to_metric_families(text))
    except ValueError:
        log.warning("metrics file %s does not parse: replacing it", path)
        return []


def last_success_in(path: str | Path, source: str) -> float | None:
    """The last success a textfile written before records for ``source``, or None."""
    return _last_success(_families(path), source)


def sources_in(path: str | Path) -> list[str]:
    """The source buckets a textfile written before speaks of (one, unless several jobs
    share a file): the label for a run that could not read its configuration."""
    found = {
        s.labels["source"]
        for family in _families(path)
        for s in family.samples
        if s.name == "s3s3bucket_last_run_exit_status" and "source" in s.labels
    }
    return sorted(found)


def _last_success(families, source: str, **labels: str) -> float | None:
    for family in families:
        for sample in family.samples:
            if sample.name != LAST_SUCCESS or sample.labels.get("source") != source:
                continue
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def write_textfile(path: str | Path, run: Run, *, last_success: float | None = None) -> None:
    """Replace ``path`` with ``run``'s metrics, atomically: prometheus_client writes a
    temporary file beside it (``PATH.<pid>.<thread>``, which node_exporter ignores, as it
    reads only ``*.prom``) and renames it over ``path``, removing it on failure.

    ``last_success`` defaults to the one the file being replaced holds."""
    if last_success is None:
        last_success = last_success_in(path, run.source)
    write_to_textfile(str(path), registry_for(run, last_success=last_success))


@dataclass(frozen=True)
class Gateway:
    """A Pushgateway URL split into where it is and the basic-auth credentials its
    userinfo carries (``http://user:password@host:9091``), which only :meth:`shown` and
    the request headers ever see."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    written: str = field(default="", repr=False, compare=False)  # as given, for shown()

    @classmethod
    def parse(cls, url: str) -> Gateway:
        if "://" not in url:
            url = "http://" + url  # as push_to_gateway itself assumes
        parts = urlsplit(url)
        if parts.username is None:
            return cls(url)
        netloc = parts.netloc.rpartition("@")[2]
        bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        password = unquote(parts.password) if parts.password is not None else None
        return cls(bare, unquote(parts.username), password, url)

    def shown(self) -> str:
        """The URL for a log line: the user name, no password."""
        return redact_url(self.written or self.url)

    def headers(self) -> dict[str, str]:
        if self.username is None:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def handler(self, url, method, timeout, headers, data):
        """push_to_gateway's handler: the default one, with the credentials."""
        headers.extend(self.headers().items())
        return default_handler(url, method, timeout, headers, data)


def pushed_last_success(
    gateway: Gateway, job: str, source: str, *, timeout_s: float
) -> float | None:
    """The last success the Pushgateway holds for ``job`` and ``source`` (from its
    ``/metrics``), or None."""
    request = urllib.request.Request(
        gateway.url.rstrip("/") + "/metrics", headers=gateway.headers()
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        text = answer.read().decode("utf-8")
    return _last_success(text_string_to_metric_families(text), source, job=job)


def push(
    url: str,
    job: str,
    run: Run,
    *,
    last_success: float | None = None,
    timeout_s: float = 10.0,
) -> bool:
    """Push ``run``'s metrics to the Pushgateway at ``url``, grouped by job and source,
    replacing what the group held; whether it worked. A failure is logged, never raised:
    the run's outcome is what it was.

    A failed run with no ``last_success`` known (no textfile) carries over the one the
    Pushgateway holds, so a failure there too shows as a stale timestamp, not as a job
    that never succeeded."""
    gateway = Gateway.parse(url)
    secrets = [gateway.password, *url_secrets(url)]
    try:
        if not run.succeeded and last_success is None:
            try:
                last_success = pushed_last_success(gateway, job, run.source, timeout_s=timeout_s)
            except (OSError, ValueError) as exc:
                log.warning(
                    "reading the last success from the Pushgateway %s failed: %s",
                    gateway.shown(),
                    redact(str(exc), secrets),
                )
        push_to_gateway(
            gateway.url,
            job=job,
            registry=registry_for(run, last_success=last_success),
            grouping_key={"source": run.source},
            timeout=timeout_s,
            handler=gateway.handler,
        )
    except (OSError, ValueError) as exc:  # refused, timed out, HTTP 4xx/5xx, a bad URL
        log.warning(
            "pushing metrics to the Pushgateway %s failed: %s",
            gateway.shown(),
            redact(str(exc), secrets),
        )
        return False
    return True


def publish(
    run: Run,
    *,
    textfile: str | Path | None = None,
    pushgateway: str | None = None,
    job: str = "s3s3bucket",
) -> None:
    """Leave ``run`` in ``textfile`` and push it to ``pushgateway``, where given; failures
    are logged, never raised (the run's exit status stays what the run made it)."""
    last_success = last_success_in(textfile, run.source) if textfile else None
    if textfile:
        try:
            write_textfile(textfile, run, last_success=last_success)
        except OSError as exc:
            log.warning("writing the metrics file %s failed: %s", textfile, exc)
    if pushgateway:
        push(pushgateway, job, run, last_success=last_success)


__all__ = [
    "LAST_SUCCESS",
    "Gateway",
    "Run",
    "last_success_in",
    "publish",
    "push",
    "pushed_last_success",
    "registry_for",
    "sources_in",
    "write_textfile",
]
