"""The bucket job's last run as metrics: node_exporter's textfile format, and a Pushgateway.

``s3s3bucket`` runs from cron or a supervisord TICK and exits, so nothing can scrape it: it
leaves its last run in a file for node_exporter's textfile collector (written to a
temporary file and renamed over the old one, so a reader never sees half a file), and may
push the same to a Pushgateway. A stale job shows as a stale timestamp:
``s3s3bucket_last_success_timestamp_seconds`` is carried over from the previous file when a
run fails, and ``s3s3bucket_expected_period_seconds`` says how old it may get.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from s3s3.bucketjob.summary import JobSummary
from s3s3.redact import redact_url

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


def last_success_in(path: str | Path, source: str) -> float | None:
    """The last success a textfile written before records for ``source``; None when there
    is none or the file does not parse (it is replaced either way)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and sample.labels.get("source") == source:
                    return float(sample.value)
    except ValueError:
        log.warning("metrics file %s does not parse: replacing it", path)
    return None


def write_textfile(path: str | Path, run: Run) -> None:
    """Replace ``path`` with ``run``'s metrics, atomically (a temporary file renamed)."""
    registry = registry_for(run, last_success=last_success_in(path, run.source))
    write_to_textfile(str(path), registry)


def push(url: str, job: str, run: Run, *, last_success: float | None = None) -> None:
    """Push ``run``'s metrics to the Pushgateway at ``url`` (grouped by source); a failure
    is logged, never raised: the run's outcome is what it was."""
    registry = registry_for(run, last_success=last_success)
    try:
        push_to_gateway(url, job=job, registry=registry, grouping_key={"source": run.source})
    except OSError as exc:
        log.warning("pushing metrics to %s failed: %s", redact_url(url), exc)


__all__ = ["LAST_SUCCESS", "Run", "last_success_in", "push", "registry_for", "write_textfile"]
