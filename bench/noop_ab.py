"""A/B of the no-op bucket job between checkouts: is a change to the start-up or the listing
path measurable?

    python bench/noop_ab.py [--runs 10] [--keys 10000] CHECKOUT [CHECKOUT ...]

Starts its own Ceph RGW, fills a source bucket with ``--keys`` objects of 4 KiB, brings a
destination in step once, then runs ``python -m s3s3.scripts.bucket`` (a no-op: the listings
and nothing else) from each checkout in turn, ``--runs`` rounds, alternated so that a drift
in the machine's load falls on every checkout alike. Prints the median (min-max) wall time
and client CPU (getrusage of the child) per checkout. Every checkout reads the same INI,
so it holds only keys that the oldest checkout knows.

W4 in ``python -m bench`` measures the same run against the peers; this measures s3s3
against itself, with more runs, which is what a small difference needs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _one_run(checkout: Path, ini: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.bucket", "--config", str(ini), "-q"],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: s3s3bucket exited {done.returncode}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="noop_ab", description=__doc__.splitlines()[0])
    p.add_argument("checkouts", nargs="+", type=Path)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--keys", type=int, default=10_000)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import boto3
    import botocore.config

    from servers import ceph_rgw

    with tempfile.TemporaryDirectory(prefix="s3s3-noop-ab-") as tmp:
        work = Path(tmp)
        info = ceph_rgw.start(work / "ceph", tls=False)
        try:
            client = boto3.client(
                "s3",
                endpoint_url=info["endpoint_url"],
                aws_access_key_id=info["access_key"],
                aws_secret_access_key=info["secret_key"],
                region_name=info["region"],
                config=botocore.config.Config(
                    s3={"addressing_style": "path"}, max_pool_connections=32
                ),
            )
            client.create_bucket(Bucket="src")
            client.create_bucket(Bucket="dst")
            with ThreadPoolExecutor(32) as pool:
                list(
                    pool.map(
                        lambda i: client.put_object(
                            Bucket="src", Key=f"k/{i:06d}", Body=b"x" * 4096
                        ),
                        range(args.keys),
                    )
                )
            sections = []
            for name, bucket in (("source", "src"), ("dest1", "dst")):
                sections.append(
                    f"[{name}]\nbucket_name = {bucket}\n"
                    f"endpoint_url = {info['endpoint_url']}\n"
                    f"aws_access_key_id = {info['access_key']}\n"
                    f"aws_secret_access_key = {info['secret_key']}\n"
                )
            ini = work / "s3s3.ini"
            ini.write_text("".join(sections) + f"[bucket]\nlock = local\nlock_dir = {work}\n")
            _one_run(args.checkouts[0], ini)  # the copy that brings dst in step
            rows: dict[Path, list[tuple[float, float]]] = {c: [] for c in args.checkouts}
            for _ in range(args.runs):
                for checkout in args.checkouts:
                    rows[checkout].append(_one_run(checkout, ini))
        finally:
            ceph_rgw.stop(work / "ceph")
    print(
        f"s3s3bucket no-op over {args.keys:,} keys, {args.runs} alternated runs each; "
        f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for checkout, runs in rows.items():
        wall = sorted(r[0] for r in runs)
        cpu = sorted(r[1] for r in runs)
        print(
            f"{checkout}: wall {statistics.median(wall):.3f} s ({wall[0]:.3f}-{wall[-1]:.3f}), "
            f"client CPU {statistics.median(cpu):.3f} s ({cpu[0]:.3f}-{cpu[-1]:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
