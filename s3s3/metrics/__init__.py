"""Metrics and health: what ``s3s3listen``, ``s3s3intake`` and ``s3s3bucket`` show operators.

- :mod:`.listener` — :class:`~.listener.ListenerMetrics`, the replicator's observer and the
  gauges read when Prometheus scrapes;
- :mod:`.intake` — the push intakes' tallies as metrics;
- :mod:`.server` — the HTTP endpoint serving ``/metrics``, ``/healthz`` and ``/readyz``;
- :mod:`.bucketjob` — the bucket job's run, as node_exporter's textfile format and for a
  Pushgateway.

Every metric lives in a ``prometheus_client.CollectorRegistry`` of its owner, passed in,
never in the library's global registry: several listeners in one process stay apart. No
label ever holds an object key (a bucket can hold billions). The rooms watched here never
import this one: the scripts wire them together.
"""
