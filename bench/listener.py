"""W7: the listeners. Sustained events/s, and publish-to-replicated latency at a fixed rate.

One run = one listener process, started fresh under ``/usr/bin/time``, and three phases:

1. warm-up: one key is published (again every 0.5 s: pub/sub drops what is published before
   the listener subscribes) until it has landed at the destination;
2. latency: keys published at a fixed rate (100/s) for a fixed time; each key's latency is
   the time from just before its PUBLISH/XADD to the end of its PUT at the destination;
3. sustained: N pre-uploaded 4 KiB objects announced as fast as the publisher goes (one
   pipelined call); the rate is N over the time from the first publish to the last PUT.

"Replicated" is read from RGW's access log: the time RGW logged the ``PUT`` of that key into
the destination bucket with status 200 (to the millisecond, on the real clock). The same
method serves every listener, the 2015 one included (which logs nothing per object), and
polls nothing: the server does no extra work for the measurement. On the moto fallback,
which has no such log, the destination is listed every 0.2 s instead (coarser).

Variants: ``s3s3listen`` in stream mode and in pub/sub mode (each run with its own channel,
stream and marker names on the shared Redis, deleted afterwards), and the 2015
``s3s3listen`` (channel ``backup`` and Redis 127.0.0.1:6379, both hard-coded: its markers
for our keys are deleted afterwards). The 2015 listener gets fewer sustained keys and a
shorter fixed-rate phase: it is an order of magnitude slower and cannot keep up with 100/s,
which a few seconds show as well as a long phase (its latency is then marked saturated).
"""

from __future__ import annotations

import signal
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from . import data
from .context import Context
from .data import Dataset
from .measure import TimedProcess
from .peers import s3s3 as s3s3_peer
from .peers import s3s3_2015
from .servers import count_requests, process_cpu_s
from .workloads import bucket_name, slug

WARM_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Variant:
    name: str
    family: str
    mode: str  # "stream" | "pubsub" | "2015"
    #: [metrics] listen on, and /metrics scraped every SCRAPE_S meanwhile (for their cost)
    metrics: bool = False


#: Four times as often as Prometheus's usual 15 s, and more than any setup would.
SCRAPE_S = 1.0

VARIANTS = (
    Variant("s3s3listen (stream)", "s3s3", "stream"),
    Variant("s3s3listen (stream, metrics on)", "s3s3", "stream", metrics=True),
    Variant("s3s3listen (pubsub)", "s3s3", "pubsub"),
    Variant("s3s3listen 0.1.10 (2015)", "s3s3-2015", "2015"),
)


def make_dataset(ctx: Context) -> Dataset:
    """Source objects for every phase: warm-up keys, latency keys and sustained keys."""
    n_lat = int(ctx.sizes.w7_rate * ctx.sizes.w7_latency_s)
    count = ctx.sizes.w7_sustained + n_lat + ctx.runs * len(VARIANTS)
    return data.make_small(ctx, "w7", count, ctx.sizes.small_bytes)


def split_keys(ds: Dataset, ctx: Context) -> tuple[list[str], list[str], list[str]]:
    keys = sorted(ds.objects)
    n_lat = int(ctx.sizes.w7_rate * ctx.sizes.w7_latency_s)
    n_sus = ctx.sizes.w7_sustained
    return keys[:n_lat], keys[n_lat : n_lat + n_sus], keys[n_lat + n_sus :]


# --------------------------------------------------------------------------- publishing


class Publisher:
    """Announces keys the way the variant's listener consumes them."""

    def __init__(self, ctx: Context, variant: Variant, config: Path | None) -> None:
        import logging

        import redis

        # publish_keys warns when nobody is subscribed yet: expected during the warm-up.
        logging.getLogger("s3s3.publish").setLevel(logging.ERROR)
        self.variant = variant
        self.redis = redis.Redis.from_url(ctx.redis_url)
        self.cfg = None
        self.method = "PUBLISH backup (redis-py)"
        if variant.mode != "2015":
            from s3s3 import config as s3s3_config

            self.cfg = s3s3_config.load(config, search_path=[]).redis
            self.method = "raw PUBLISH/XADD"
            try:
                from s3s3.queue.producer import publish_keys

                self._publish_keys = publish_keys
                self.method = "s3s3.queue.publish_keys"
            except ImportError:
                self._publish_keys = None

    def publish(self, keys: list[str]) -> None:
        if self.cfg is None:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.publish(s3s3_2015.CHANNEL, key)
            pipe.execute()
        elif self._publish_keys is not None:
            self._publish_keys(self.redis, self.cfg, keys)
        elif self.cfg.mode == "stream":
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.xadd(self.cfg.stream, {"key": key, "op": "copy"})
            pipe.execute()
        else:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.publish(self.cfg.channel, key)
            pipe.execute()

    def cleanup(self, key_prefix: str) -> None:
        """Delete what this run left in the shared Redis: only names unique to it."""
        if self.cfg is None:
            s3s3_2015.delete_markers(self.redis, key_prefix)
            return
        names = {
            n
            for pattern in (f"*{{{self.cfg.channel}}}*", f"{self.cfg.channel}=>*")
            for n in self.redis.scan_iter(match=pattern, count=1000)
        }
        names.update(n.encode() for n in (self.cfg.stream, self.cfg.dead_letter_stream))
        names = list(names)
        for i in range(0, len(names), 500):
            self.redis.delete(*names[i : i + 500])


# --------------------------------------------------------------------------- watching


class Landings:
    """When each key landed in the destination bucket (its first successful PUT)."""

    def __init__(self, ctx: Context, dst_bucket: str) -> None:
        self.ctx = ctx
        self.bucket = dst_bucket
        self.times: dict[str, float] = {}
        self.log = ctx.server.access_log
        self.requests = []
        if self.log:
            self.pos = self.log.mark(ctx.server.client("src"))
        else:
            self.client = ctx.server.client("dst")

    def poll(self) -> None:
        if self.log:
            new, self.pos = self.log.read(self.pos)
            self.requests.extend(new)
            for r in new:
                if r.method == "PUT" and r.status == 200 and r.bucket == self.bucket:
                    self.times.setdefault(r.key, r.ts)
            return
        now = time.time()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for o in page.get("Contents", ()):
                self.times.setdefault(o["Key"], now)

    def wait_for(self, keys: list[str], timeout_s: float, proc: TimedProcess) -> bool:
        deadline = time.monotonic() + timeout_s
        pending = set(keys)
        while True:
            self.poll()
            pending.difference_update(self.times)
            if not pending:
                return True
            if time.monotonic() > deadline or not proc.running():
                return False
            time.sleep(0.02 if self.log else 0.2)


# --------------------------------------------------------------------------- one run


class Scraper:
    """GETs the listener's /metrics every SCRAPE_S from a thread, as Prometheus would."""

    def __init__(self, port: int) -> None:
        import threading

        self.url = f"http://127.0.0.1:{port}/metrics"
        self.ok = 0
        self.failed = 0
        self.error = ""
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import urllib.request

        while not self._stop.wait(SCRAPE_S):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    self.bytes = len(answer.read())
                self.ok += 1
            except OSError as exc:  # the listener not up yet, or gone: counted
                self.failed += 1
                self.error = str(exc)[:200]

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=10)
        return {
            "scrapes_ok": self.ok,
            "scrapes_failed": self.failed,
            "scrape_bytes": self.bytes,
            "scrape_error": self.error,
        }


def latency_figures(
    ctx: Context, lat: list[float], events: int, first: float, last: float
) -> dict[str, float]:
    """The latency phase's figures from each key's latency (seconds)."""
    return {
        "lat_events": events,
        "lat_p50_ms": round(percentile(lat, 50) * 1000, 1),
        "lat_p99_ms": round(percentile(lat, 99) * 1000, 1),
        "lat_max_ms": round(max(lat) * 1000, 1),
        "lat_mean_ms": round(statistics.fmean(lat) * 1000, 1),
        "lat_offered_eps": ctx.sizes.w7_rate,
        "lat_achieved_eps": round(len(lat) / max(last - first, 1e-6), 1),
    }


def sustained(
    landings: Landings,
    proc: TimedProcess,
    keys: list[str],
    t0: float,
    tool_pid: int | None,
    cpu_before: float | None,
    result: dict,
    problems: list[str],
) -> None:
    """Wait for the sustained phase's ``keys`` (announced from ``t0`` on) to land; put its
    rate and CPU per event in ``result``, what never landed in ``problems``."""
    ok = landings.wait_for(keys, 60.0 + len(keys) / 10, proc)
    landed = [landings.times[k] for k in keys if k in landings.times]
    if not ok:
        problems.append(f"sustained phase: {len(keys) - len(landed)} keys never landed")
    if landed:
        span = max(landed) - t0
        result.update(
            sus_events=len(keys), sus_s=round(span, 3), sus_eps=round(len(landed) / span, 1)
        )
        if cpu_before is not None and tool_pid:
            cpu_used = process_cpu_s(tool_pid) - cpu_before
            result["sus_cpu_ms_per_event"] = round(cpu_used / len(landed) * 1000, 3)


def record_run(
    ctx: Context,
    *,
    tool: str,
    family: str,
    run: int,
    label: str,
    measurement,
    wanted: list[str],
    sustained_keys: int,
    server_cpu: float,
    requests,
    check,
    problems: list[str],
    dst: str,
    command: str,
    method: str,
    result: dict,
) -> dict:
    """Record one W7 run (every listener variant, push included) and log its line."""
    m = measurement
    ok = not problems and check is not None and check.ok
    rec = ctx.record(
        workload="W7",
        tool=tool,
        family=family,
        run=run,
        ok=ok,
        exit_status=m.exit_status,
        wall_s=round(m.wall_s, 3),
        user_s=m.user_s,
        sys_s=m.sys_s,
        cpu_s=m.cpu_s,
        peak_rss_mb=round(m.peak_rss_mb, 1) if m.peak_rss_mb else None,
        objects=len(wanted),
        bytes=0,
        server_cpu_s=round(server_cpu, 3),
        requests=requests,
        verified=check.summary() if check else "; ".join(problems),
        dst_bucket=dst,
        command=command,
        log=m.log_path,
        notes=m.notes + problems,
        method=method,
        **result,
    )
    ctx.log(
        f"  W7 run {run} {label:<28} sustained {result.get('sus_eps', '-')} ev/s "
        f"({sustained_keys} keys)  latency p50 {result.get('lat_p50_ms', '-')} ms "
        f"p99 {result.get('lat_p99_ms', '-')} ms at {ctx.sizes.w7_rate:g}/s  "
        f"rss {rec['peak_rss_mb']} MB  {'ok' if ok else 'FAILED: ' + rec['verified']}"
    )
    return rec


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def listener_run(ctx: Context, variant: Variant, ds: Dataset, run: int) -> dict | None:
    why = (
        s3s3_2015.unavailable(ctx) if variant.mode == "2015" else s3s3_peer.listen_unavailable(ctx)
    )
    if why:
        ctx.note(f"{variant.name}: skipped ({why})")
        return None
    lat_keys, sus_keys, warm_keys = split_keys(ds, ctx)
    warm = warm_keys[(run * len(VARIANTS) + VARIANTS.index(variant)) % len(warm_keys)]
    if variant.mode == "2015":
        sus_keys = sus_keys[: ctx.sizes.w7_sustained_2015]
        lat_keys = lat_keys[: int(ctx.sizes.w7_rate * ctx.sizes.w7_latency_s_2015)]
    dst = bucket_name("d", "w7", variant.name, run)
    data.create_bucket(ctx, dst)
    work = ctx.run_dir / "W7" / f"{slug(variant.name)}-{run}"
    work.mkdir(parents=True, exist_ok=True)
    if variant.mode == "2015":
        argv, env, cwd = s3s3_2015.listen_invocation(ctx, ds.bucket, dst, work)
        config = None
    else:
        saved_tag = ctx.tag
        # channel, stream and markers of its own
        ctx.tag = f"{saved_tag}-{slug(variant.name)}-{run}"
        extra = ""
        if variant.metrics:
            from servers._common import free_port

            metrics_port = free_port()
            extra = f"\n[metrics]\nlisten = 127.0.0.1:{metrics_port}\n"
        try:
            argv, env, cwd = s3s3_peer.listen_invocation(
                ctx, ds.bucket, dst, work, mode=variant.mode, extra=extra
            )
        finally:
            ctx.tag = saved_tag
        config = work / "bench.ini"
    publisher = Publisher(ctx, variant, config)
    landings = Landings(ctx, dst)
    cpu0 = ctx.server.cpu_s()
    proc = TimedProcess(argv, log_path=work / "output.log", env=env, cwd=cwd)
    result: dict = {"publisher": publisher.method}
    problems: list[str] = []
    scraper = Scraper(metrics_port) if variant.metrics else None
    try:
        # 1. warm-up
        started = time.monotonic()
        while True:
            publisher.publish([warm])
            if landings.wait_for([warm], 0.5, proc):
                break
            if time.monotonic() - started > WARM_TIMEOUT_S or not proc.running():
                raise RuntimeError(
                    f"the listener replicated nothing within {WARM_TIMEOUT_S:.0f} s "
                    f"(exit {proc.proc.poll()}); see {work / 'output.log'}"
                )
        result["ready_s"] = round(time.monotonic() - started, 2)
        tool_pid = proc.tool_pid()

        # 2. latency at a fixed rate
        published: dict[str, float] = {}
        interval = 1.0 / ctx.sizes.w7_rate
        t_start = time.monotonic()
        for i, key in enumerate(lat_keys):
            delay = t_start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            published[key] = time.time()
            publisher.publish([key])
            if i % 20 == 0:
                landings.poll()
        lat_ok = landings.wait_for(lat_keys, 60.0 + len(lat_keys) / 10, proc)
        lat = [landings.times[k] - published[k] for k in lat_keys if k in landings.times]
        if not lat_ok:
            problems.append(f"latency phase: {len(lat_keys) - len(lat)} keys never landed")
        if lat:
            first = min(published.values())
            last = max(landings.times[k] for k in lat_keys if k in landings.times)
            result.update(latency_figures(ctx, lat, len(lat_keys), first, last))

        # 3. sustained, as fast as the publisher goes
        cpu_before = process_cpu_s(tool_pid) if tool_pid else None
        t0 = time.time()
        publisher.publish(sus_keys)
        result["publish_s"] = round(time.time() - t0, 3)
        sustained(landings, proc, sus_keys, t0, tool_pid, cpu_before, result, problems)
    except RuntimeError as exc:
        problems.append(str(exc))
    finally:
        if scraper is not None:
            result.update(scraper.stop())
            if not result["scrapes_ok"]:
                problems.append(f"/metrics never answered: {result['scrape_error']}")
        proc.stop(signal.SIGTERM, grace_s=30.0)
    m = proc.measurement()
    server_cpu = ctx.server.cpu_s() - cpu0
    landings.poll()
    requests = count_requests(landings.requests) if landings.log else None
    wanted = [warm] + lat_keys + sus_keys
    check = data.verify(ctx, ds, dst, keys=wanted) if not problems else None
    publisher.cleanup(ds.prefix)
    return record_run(
        ctx,
        tool=variant.name,
        family=variant.family,
        run=run,
        label=variant.name,
        measurement=m,
        wanted=wanted,
        sustained_keys=len(sus_keys),
        server_cpu=server_cpu,
        requests=requests,
        check=check,
        problems=problems,
        dst=dst,
        command=" ".join(argv),
        method="RGW access log" if landings.log else "listing every 0.2 s",
        result=result,
    )


def listener_workload(ctx: Context) -> None:
    ds = make_dataset(ctx)
    ctx.log(
        f"== W7: listeners, {ctx.runs} rounds; latency at {ctx.sizes.w7_rate:g} events/s "
        f"for {ctx.sizes.w7_latency_s:g} s; sustained {ctx.sizes.w7_sustained:,} keys "
        f"({ctx.sizes.w7_sustained_2015:,} for the 2015 listener)"
    )
    from .push import push_run

    n_lat = int(ctx.sizes.w7_rate * ctx.sizes.w7_latency_s)
    for run in range(ctx.runs):
        for variant in VARIANTS:
            listener_run(ctx, variant, ds, run)
        # The writer variant first, then the push: the same PUT load, announced two ways.
        for writer in (True, False):
            push_run(ctx, run, n_lat=n_lat, n_sus=ctx.sizes.w7_sustained // 2, writer=writer)
