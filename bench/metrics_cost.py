"""What the listener's metrics cost per copy, measured in-process: ``python -m bench.metrics_cost``.

The end-to-end W2/W7 runs with the metrics on and off carry the server's noise (several
percent between rounds on two shared cores), more than the 3% the metrics may cost. This
times what the metrics add to one key's copy exactly: the observer's hooks the replicator
calls (one ``copied`` per destination and one ``finished``), against the no-op observer, and
what one scrape of ``/metrics`` costs (collected in the listener's process). Set beside the
client CPU per event that W7 measures, it bounds the cost.
"""

from __future__ import annotations

import argparse
import json
import time

from prometheus_client import generate_latest

from s3s3.listener.counters import Counters
from s3s3.listener.observer import NoObserver
from s3s3.listener.replicator import JobResult
from s3s3.metrics.listener import ListenerMetrics
from s3s3.model import CopyResult, Outcome


def per_copy_ns(observer, destinations: list[str], n: int) -> float:
    """Nanoseconds of hooks per key copied to every destination."""
    results = [
        CopyResult("k", d, Outcome.COPIED, size=4096, duration_s=0.01, bytes_read=4096)
        for d in destinations
    ]
    job = JobResult("k", "copy", Outcome.COPIED, size=4096, destinations=tuple(destinations))
    times = [time.time() - 0.05]
    t0 = time.perf_counter_ns()
    for _ in range(n):
        for d, r in zip(destinations, results, strict=True):
            observer.copied(d, r)
        observer.finished(job, times)
    return (time.perf_counter_ns() - t0) / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__)
    p.add_argument("--copies", type=int, default=200_000)
    p.add_argument("--destinations", type=int, default=2)
    args = p.parse_args(argv)
    names = [f"dest{i}" for i in range(args.destinations)]
    metrics = ListenerMetrics(source="source", destinations=names, counters=Counters())
    per_copy_ns(metrics, names, 1000)  # warm up
    on = min(per_copy_ns(metrics, names, args.copies) for _ in range(5))
    off = min(per_copy_ns(NoObserver(), names, args.copies) for _ in range(5))
    t0 = time.perf_counter()
    scrapes = 200
    for _ in range(scrapes):
        size = len(generate_latest(metrics.registry))
    scrape_ms = (time.perf_counter() - t0) / scrapes * 1000
    print(
        json.dumps(
            {
                "destinations": args.destinations,
                "hooks_ns_per_key": round(on),
                "no_op_observer_ns_per_key": round(off),
                "metrics_ns_per_key": round(on - off),
                "scrape_ms": round(scrape_ms, 3),
                "scrape_bytes": size,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
