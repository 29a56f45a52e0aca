"""W12: the no-op bucket job over a versioned bucket, next to W4's unversioned one.

    python bench/versions_noop.py [--keys 10000] [--versions 3] [--runs 5]

Starts its own Ceph RGW and fills two sources with ``--keys`` keys of 4 KiB: one versioned
bucket where each key has ``--versions`` versions, and one unversioned bucket (W4's shape).
It brings a destination of each in step once (versioning Enabled on the versioned one), then
runs the no-op job ``--runs`` times for each in turn, alternated, in this process. Each run
reports its wall time and the requests s3s3 sent (every request of both stores goes through
the endpoint's pacing, which is counted here). The in-process time leaves out the Python
start-up that W4's ``s3s3bucket`` wall time includes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class _Counted:
    """Counts the requests an endpoint sends through its pacing."""

    def __init__(self, pacing) -> None:
        self._send = pacing.send
        self.count = 0
        self._lock = threading.Lock()
        pacing.send = self.send

    def send(self, request):
        with self._lock:
            self.count += 1
        return self._send(request)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="versions_noop", description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--versions", type=int, default=3)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from s3s3.bucketjob.options import JobOptions
    from s3s3.bucketjob.runner import sync_buckets
    from s3s3.store.endpoint import Endpoint
    from servers import ceph_rgw
    from tests.conftest import endpoint_config, raw_client

    with tempfile.TemporaryDirectory(prefix="s3s3-w12-") as tmp:
        work = Path(tmp)
        info = ceph_rgw.start(work / "ceph", tls=False)
        try:
            client = raw_client(info)
            for bucket in ("vsrc", "vdst", "usrc", "udst"):
                client.create_bucket(Bucket=bucket)
            for bucket in ("vsrc", "vdst"):
                client.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                )
            body = b"x" * 4096
            began = time.monotonic()
            with ThreadPoolExecutor(32) as pool:
                for n in range(args.versions):
                    list(
                        pool.map(
                            lambda i, n=n: client.put_object(
                                Bucket="vsrc", Key=f"k/{i:06d}", Body=body + bytes([n])
                            ),
                            range(args.keys),
                        )
                    )
                list(
                    pool.map(
                        lambda i: client.put_object(Bucket="usrc", Key=f"k/{i:06d}", Body=body),
                        range(args.keys),
                    )
                )
            print(f"filled in {time.monotonic() - began:.0f} s", file=sys.stderr)

            def ep(bucket: str, name: str) -> Endpoint:
                return Endpoint(endpoint_config(info, bucket, name=name))

            kinds = {
                "versioned (--versions)": ("vsrc", "vdst", JobOptions(versions=True)),
                "unversioned (W4 shape)": ("usrc", "udst", JobOptions()),
            }
            for src, dst, options in kinds.values():
                sync_buckets(ep(src, "source"), [ep(dst, "dest")], options)
            rows: dict[str, list[tuple[float, int, int]]] = {k: [] for k in kinds}
            for _ in range(args.runs):
                for kind, (src, dst, options) in kinds.items():
                    s, d = ep(src, "source"), ep(dst, "dest")
                    counts = [_Counted(s.pacing), _Counted(d.pacing)]
                    started = time.monotonic()
                    summary = sync_buckets(s, [d], options).destinations[0]
                    wall = time.monotonic() - started
                    if summary.copied or summary.failed:
                        raise SystemExit(f"{kind}: not a no-op: {summary.line()}")
                    rows[kind].append((wall, counts[0].count, counts[1].count))
        finally:
            ceph_rgw.stop(work / "ceph")
    print(
        f"no-op bucket job over {args.keys:,} keys ({args.versions} versions each where "
        f"versioned), {args.runs} alternated runs in-process; load average at the end "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    for kind, runs in rows.items():
        wall = sorted(r[0] for r in runs)
        print(
            f"{kind}: {statistics.median(wall):.3f} s ({wall[0]:.3f}-{wall[-1]:.3f}), "
            f"requests source {runs[0][1]}, destination {runs[0][2]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
