"""The limits, measured: ``python -m bench.limits [--quick]``.

Against two moto servers it starts itself (source and destination), it measures what each
limit lets through, set beside the limit:

- ``bwlimit``: several objects copied at once through endpoints sharing one limiter
  (``make_endpoints``); the rate is the bytes read from the source over the wall time;
- ``tpslimit``: HEADs from several threads toward one endpoint for a few seconds; the rate
  is the requests the destination answered over the time from the first to the last;
- SlowDown: copies toward a destination behind ``tests/faultproxy.py`` that answers a share
  of the PUTs with 503 SlowDown for a while, then none; the lowest concurrency limit
  reached and the seconds from the last SlowDown until the limit is back at ``workers``.

One JSON object on standard output. Run it on a quiet machine, as every benchmark here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import botocore.config

from s3s3.config import EndpointConfig, MiB, describe_rate, to_bwlimit
from s3s3.errors import TransientEndpointError
from s3s3.store.endpoint import make_endpoints
from s3s3.transfer import copy_object
from servers import moto_server
from tests.faultproxy import FaultProxy


def client(info: dict):
    return boto3.client(
        "s3",
        endpoint_url=info["endpoint_url"],
        aws_access_key_id=info["access_key"],
        aws_secret_access_key=info["secret_key"],
        region_name=info["region"],
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )


def endpoint_cfg(info: dict, bucket: str, name: str) -> EndpointConfig:
    return EndpointConfig(
        name=name,
        bucket=bucket,
        endpoint_url=info["endpoint_url"],
        region=info["region"],
        access_key=info["access_key"],
        secret_key=info["secret_key"],
    )


def measure_bwlimit(src: EndpointConfig, dst: EndpointConfig, keys: list[str], rate: str) -> dict:
    endpoints = make_endpoints([src, dst], bwlimit=to_bwlimit(rate), workers=len(keys))
    started = time.monotonic()
    with ThreadPoolExecutor(len(keys)) as pool:
        results = list(
            pool.map(lambda k: copy_object(endpoints[0], endpoints[1], k, force=True), keys)
        )
    elapsed = time.monotonic() - started
    limit = to_bwlimit(rate).slots[0].rate_bytes_s or 0.0
    measured = sum(r.bytes_read for r in results) / elapsed
    return {
        "bwlimit": rate,
        "limit_bytes_s": limit,
        "measured_bytes_s": round(measured),
        "measured_over_limit": round(measured / limit, 4),
        "seconds": round(elapsed, 3),
        "shown": describe_rate(measured),
    }


def measure_tpslimit(dst: EndpointConfig, key: str, tps: float, seconds: float) -> dict:
    with FaultProxy(dst.endpoint_url or "") as proxy:
        (ep,) = make_endpoints(
            [dataclasses.replace(dst, endpoint_url=proxy.url, tpslimit=tps)], workers=8
        )
        deadline = time.monotonic() + seconds

        def loop() -> None:
            while time.monotonic() < deadline:
                ep.head(key)

        threads = [threading.Thread(target=loop) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        heads = sorted(at for at, method, _ in proxy.requests if method == "HEAD")
    measured = (len(heads) - 1) / (heads[-1] - heads[0])
    return {
        "tpslimit": tps,
        "requests": len(heads),
        "measured_per_s": round(measured, 3),
        "measured_over_limit": round(measured / tps, 4),
    }


def measure_slowdown(
    src: EndpointConfig, dst: EndpointConfig, keys: list[str], *, workers: int, storm_s: float
) -> dict:
    with FaultProxy(dst.endpoint_url or "") as proxy:
        proxy.fail_code = "SlowDown"
        storm_until = time.monotonic() + storm_s
        last_slowdown = [0.0]

        def fail(method: str, path: str) -> bool:
            if method == "PUT" and time.monotonic() < storm_until and random.random() < 0.3:
                last_slowdown[0] = time.monotonic()
                return True
            return False

        proxy.fail_if = fail
        s, d = make_endpoints(
            [src, dataclasses.replace(dst, endpoint_url=proxy.url)], workers=workers
        )
        lowest = [workers]
        stop = threading.Event()

        def copy_loop(i: int) -> None:
            n = i
            while not stop.is_set():
                try:
                    copy_object(s, d, keys[n % len(keys)], force=True)
                except TransientEndpointError:
                    pass
                lowest[0] = min(lowest[0], d.concurrency_limit())
                n += workers

        threads = [threading.Thread(target=copy_loop, args=(i,)) for i in range(workers)]
        for t in threads:
            t.start()
        time.sleep(storm_s)
        recovered_at = None
        give_up = time.monotonic() + 4 * workers + 30
        while time.monotonic() < give_up:
            if d.concurrency_limit() == workers and time.monotonic() > storm_until:
                recovered_at = time.monotonic()
                break
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
    return {
        "workers": workers,
        "slowdown_share": 0.3,
        "storm_s": storm_s,
        "lowest_limit": lowest[0],
        "recovery_s": None if recovered_at is None else round(recovered_at - last_slowdown[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: proves the harness")
    args = p.parse_args(argv)
    size = (1 if args.quick else 8) * MiB
    rates = ["2M"] if args.quick else ["1M", "4M", "16M"]
    tps_values = [10.0] if args.quick else [5.0, 20.0, 50.0]
    with tempfile.TemporaryDirectory() as tmp:
        infos = [moto_server.start(Path(tmp) / name) for name in ("a", "b")]
        try:
            src_bucket, dst_bucket = "bench-limits-src", "bench-limits-dst"
            client(infos[0]).create_bucket(Bucket=src_bucket)
            client(infos[1]).create_bucket(Bucket=dst_bucket)
            keys = [f"k{i}" for i in range(4)]
            for key in keys:
                client(infos[0]).put_object(Bucket=src_bucket, Key=key, Body=b"x" * size)
            src = endpoint_cfg(infos[0], src_bucket, "source")
            dst = endpoint_cfg(infos[1], dst_bucket, "dest")
            report = {
                "bwlimit": [measure_bwlimit(src, dst, keys, r) for r in rates],
                "tpslimit": [
                    measure_tpslimit(dst, keys[0], t, 2.0 if args.quick else 10.0)
                    for t in tps_values
                ],
                "slowdown": measure_slowdown(
                    src, dst, keys, workers=4 if args.quick else 16, storm_s=2.0
                ),
            }
        finally:
            for info in infos:
                moto_server.stop(Path(info["workdir"]))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
