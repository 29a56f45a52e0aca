"""W11, listing a big bucket far away: ``python -m bench listing [--quick] [--runs N]``.

The cron reconcile of a big bucket with a few changes: the source holds ``--keys`` keys
(100,000), the destination all of them but ``--changed`` (100) spread through the bucket,
and both sides are reached through ``tests/faultproxy.py`` proxies that hold every request
``--delay`` (20 ms) before forwarding it: a store 20 ms away. Per tool, in interleaved runs
(each run starts from the same state: the changed keys are deleted from the destination
again):

- listing rate: keys listed on both sides over the listing's duration, from the proxies'
  record of list requests (first arrival to last arrival plus one delay);
- time to the first copy: the first PUT at the destination's proxy after the process
  started;
- wall time and peak RSS (``/usr/bin/time``).

Tools: ``s3s3bucket`` with ``list_concurrency = 1`` (serial) and each of
``--list-concurrency`` (8 and 16), ``rclone copy --checksum`` and ``rclone copy --checksum
--fast-list`` (``--checksum`` compares size and MD5 from the listings, as s3s3 does: without
it rclone HEADs every object for its modification time, 27 s for 2,000 keys here). Also W6 with parallel listing
(``--w6-keys``, 1,000,000): the peak RSS of a process merging two generated listings of
that many keys through :func:`list_objects_parallel` and the planner (generated pages: a
memory check, no server). Targets (reported, not asserted): 8x the serial listing rate,
first copy under 1 s, W6 under 300 MB.

Results: ``bench/results/w11-<stamp>.json`` and a markdown table on standard output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.config

from .measure import require_time_bin, run_timed, tool_env
from .paths import REPO_ROOT, WORK_DIR

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Run in a fresh process: merge two generated listings, then report VmHWM in kB.
_W6 = """
import bisect, sys, time
sys.path.insert(0, sys.argv[1])
from s3s3 import retry
from s3s3.config import EndpointConfig
from s3s3.listing import list_objects_parallel
from s3s3.model import ObjectInfo
from s3s3.plan import KeyFilter, Strategy, plan_keys
from s3s3.store.base import Page

class Keys:
    def __init__(self, n): self.n = n
    def __len__(self): return self.n
    def __getitem__(self, i): return f"data/{i:09d}"

class Generated:
    def __init__(self, n, name):
        self.keys, self.name, self.bucket = Keys(n), name, name
        self.cfg = EndpointConfig(name=name, bucket=name)
    def list_page(self, prefix="", *, page_size=1000, marker=None, start_after=None):
        after = marker if marker is not None else start_after
        i = 0 if after is None else bisect.bisect_right(self.keys, after)
        j = min(i + page_size, len(self.keys))
        objs = [ObjectInfo(self.keys[k], 4096, "0" * 32) for k in range(i, j)]
        return Page(objs, j < len(self.keys), objs[-1].key if j < len(self.keys) else None)

n, concurrency = int(sys.argv[2]), int(sys.argv[3])
policy = retry.Policy(attempts=1)
began = time.monotonic()
plans = plan_keys(
    list_objects_parallel(Generated(n, "src"), concurrency=concurrency, policy=policy),
    [list_objects_parallel(Generated(n, "dst"), concurrency=concurrency, policy=policy)],
    strategies=[Strategy()], key_filter=KeyFilter())
count = sum(1 for _ in plans)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(count, hwm, round(time.monotonic() - began, 2))
"""


def _client(site):
    return boto3.client(
        "s3",
        endpoint_url=site.url,
        aws_access_key_id=site.access_key,
        aws_secret_access_key=site.secret_key,
        region_name=site.region,
        config=botocore.config.Config(
            s3={"addressing_style": "path"}, max_pool_connections=32, retries={"max_attempts": 8}
        ),
    )


def _keys(count: int) -> list[str]:
    """Flat numeric keys under a few prefixes, as a bucket of logs or uploads holds."""
    return sorted(f"data/{i % 10}/{i:08d}" for i in range(count))


def _fill(client, bucket: str, keys: list[str]) -> None:
    client.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))


def _ini(path: Path, server, src_url: str, dst_url: str, src: str, dst: str, extra: str) -> Path:
    lock_dir = WORK_DIR / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for section, site, url, bucket in (
        ("source", server.src, src_url, src),
        ("destination", server.dst, dst_url, dst),
    ):
        lines += [
            f"[{section}]",
            f"aws_access_key_id = {site.access_key}",
            f"aws_secret_access_key = {site.secret_key}",
            f"bucket_name = {bucket}",
            f"endpoint_url = {url}",
            f"region = {site.region}",
            "",
        ]
    lines += ["[bucket]", "lock = local", f"lock_dir = {lock_dir}", extra, ""]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    return path


def _rclone_conf(path: Path, server, src_url: str, dst_url: str) -> Path:
    provider = "Ceph" if server.kind == "ceph" else "Other"
    text = ""
    for name, site, url in (("src", server.src, src_url), ("dst", server.dst, dst_url)):
        text += (
            f"[{name}]\ntype = s3\nprovider = {provider}\naccess_key_id = {site.access_key}\n"
            f"secret_access_key = {site.secret_key}\nendpoint = {url}\nregion = {site.region}\n\n"
        )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _is_list(method: str, path: str, bucket: str) -> bool:
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    return method == "GET" and parts.path.strip("/") == bucket and "uploads" not in query


def _one_run(tool: str, argv, env, *, work: Path, proxies, buckets, listed: int, delay: float):
    for proxy in proxies:
        with proxy.lock:
            proxy.requests.clear()
    began = time.monotonic()
    m = run_timed(argv, log_path=work / f"{tool}.log", env=env, cwd=work, timeout_s=3600)
    lists = []
    first_put = None
    for proxy, bucket in zip(proxies, buckets, strict=True):
        with proxy.lock:
            seen = list(proxy.requests)
        lists += [t for t, method, path in seen if _is_list(method, path, bucket)]
        if bucket == buckets[1]:
            puts = [t for t, method, _ in seen if method == "PUT"]
            first_put = min(puts) - began if puts else None
    span = (max(lists) - min(lists) + delay) if lists else None
    return {
        "tool": tool,
        "exit": m.exit_status,
        "wall_s": round(m.wall_s, 3),
        "peak_rss_mb": None if m.peak_rss_mb is None else round(m.peak_rss_mb, 1),
        "list_requests": len(lists),
        "listing_s": None if span is None else round(span, 3),
        "listing_keys_s": None if not span else round(listed / span),
        "first_copy_s": None if first_put is None else round(first_put, 3),
    }


def w11(args, *, run_dir: Path, log) -> int:
    """The W11 runs (see the module doc); one JSON file of records under bench/results/."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.faultproxy import FaultProxy

    from .servers import start_server

    require_time_bin()
    concurrencies = [int(n) for n in str(args.list_concurrency).split(",") if n.strip()]
    count = args.keys or (2_000 if args.quick else 100_000)
    changed = min(args.changed, max(1, count // 20))
    runs = args.runs or (1 if args.quick else 3)
    run_dir.mkdir(parents=True, exist_ok=True)
    server = start_server(force_moto=args.moto, log=log)
    records: list[dict] = []
    try:
        tag = f"w11-{os.getpid()}"
        src_bucket, dst_bucket = f"{tag}-src", f"{tag}-dst"
        keys = _keys(count)
        step = max(1, len(keys) // changed)
        missing = keys[step // 2 :: step][:changed]
        log(f"W11: filling {count} keys (destination without {len(missing)}) on {server.kind}")
        src_client, dst_client = _client(server.src), _client(server.dst)
        _fill(src_client, src_bucket, keys)
        _fill(dst_client, dst_bucket, [k for k in keys if k not in set(missing)])
        listed = 2 * count - len(missing)
        with FaultProxy(server.src.url) as src_proxy, FaultProxy(server.dst.url) as dst_proxy:
            for proxy in (src_proxy, dst_proxy):
                proxy.delay_if = lambda method, path: args.delay
            ini_serial = _ini(
                run_dir / "serial.ini", server, src_proxy.url, dst_proxy.url,
                src_bucket, dst_bucket, "list_concurrency = 1",
            )  # fmt: skip
            s3s3_env = tool_env({"PYTHONPATH": str(REPO_ROOT)})
            bucket_cmd = [sys.executable, "-m", "s3s3.scripts.bucket", "--quiet", "--config"]
            tools = {"s3s3 serial": ([*bucket_cmd, str(ini_serial)], s3s3_env)}
            for n in concurrencies:
                ini_parallel = _ini(
                    run_dir / f"parallel-{n}.ini", server, src_proxy.url, dst_proxy.url,
                    src_bucket, dst_bucket, f"list_concurrency = {n}",
                )  # fmt: skip
                tools[f"s3s3 parallel ({n})"] = ([*bucket_cmd, str(ini_parallel)], s3s3_env)
            rclone_bin = _find_rclone(log)
            if rclone_bin:
                conf = _rclone_conf(run_dir / "rclone.conf", server, src_proxy.url, dst_proxy.url)
                # --checksum: size and MD5 from the listings, as s3s3 compares; without it
                # rclone HEADs every object for its modification time, which W11 is not about.
                base = [rclone_bin, "--config", str(conf), "copy", "--checksum"]
                spec = [f"src:{src_bucket}", f"dst:{dst_bucket}"]
                tools["rclone copy --checksum"] = ([*base, *spec], tool_env())
                tools["rclone copy --checksum --fast-list"] = (
                    [*base, "--fast-list", *spec],
                    tool_env(),
                )
            else:
                log("!!! rclone is not installed: its rows are missing")
            for run in range(runs):
                for tool, (argv, env) in tools.items():
                    for key in missing:  # every run starts from the same destination
                        dst_client.delete_object(Bucket=dst_bucket, Key=key)
                    rec = _one_run(
                        tool, argv, env, work=run_dir, listed=listed, delay=args.delay,
                        proxies=(src_proxy, dst_proxy), buckets=(src_bucket, dst_bucket),
                    )  # fmt: skip
                    rec.update(run=run + 1, keys=count, changed=len(missing), delay_s=args.delay)
                    records.append(rec)
                    log(json.dumps(rec))
    finally:
        server.stop()
    w6_keys = args.w6_keys or (50_000 if args.quick else 1_000_000)
    records.append(w6_parallel(w6_keys, concurrencies[0], log=log))
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"w11-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"records": records, "server": server.kind}, indent=1) + "\n")
    print(table(records))
    log(f"W11 results: {out}")
    return 0


def _find_rclone(log) -> str | None:
    from .install import ensure_debian

    return ensure_debian("rclone", "rclone", log=log)


def w6_parallel(keys: int, concurrency: int, *, log) -> dict:
    """W6 with parallel listing: peak RSS of merging two generated listings of ``keys``."""
    out = subprocess.run(
        [sys.executable, "-c", _W6, str(REPO_ROOT), str(keys), str(concurrency)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    rec = {
        "tool": f"W6 planner, parallel listing ({concurrency})",
        "keys": int(out[0]),
        "peak_rss_mb": round(int(out[1]) / 1024, 1),
        "wall_s": float(out[2]),
    }
    log(json.dumps(rec))
    return rec


def table(records: list[dict]) -> str:
    """Medians per tool, as markdown, with each listing rate against serial s3s3's."""
    rows = [
        "| tool | runs | listing keys/s | x serial | list requests | first copy s | wall s"
        " | RSS MB |"
    ]
    rows.append("|---|---|---|---|---|---|---|---|")
    by_tool: dict[str, list[dict]] = {}
    for rec in records:
        by_tool.setdefault(rec["tool"], []).append(rec)

    def median(recs, name):
        values = sorted(r[name] for r in recs if r.get(name) is not None)
        return None if not values else values[len(values) // 2]

    def shown(value) -> str:
        return "–" if value is None else str(value)

    serial = median(by_tool.get("s3s3 serial", []), "listing_keys_s")
    for tool, recs in by_tool.items():
        rate = median(recs, "listing_keys_s")
        ratio = "–" if not (rate and serial) else f"{rate / serial:.1f}"
        rows.append(
            f"| {tool} | {len(recs)} | {shown(rate)} | {ratio} | "
            f"{shown(median(recs, 'list_requests'))} | {shown(median(recs, 'first_copy_s'))} | "
            f"{shown(median(recs, 'wall_s'))} | {shown(median(recs, 'peak_rss_mb'))} |"
        )
    return "\n".join(rows)
