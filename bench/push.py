"""W7 push: replication fed by the store itself. RGW's bucket notifications (a synchronous
topic) POST each PUT to ``s3s3intake``, which adds it to the stream ``s3s3listen`` reads.

One run = a fresh source bucket with a notification, ``s3s3intake`` and ``s3s3listen``
started fresh (the listener under ``/usr/bin/time``), and three phases:

1. warm-up: one key PUT into the source (again every 0.5 s) until it lands;
2. latency: 4 KiB PUTs into the source at a fixed rate (100/s) for a fixed time, from one
   client thread; each key's latency is from RGW's log line for the source PUT to its line
   for the destination PUT (both on RGW's real clock, to the millisecond);
3. sustained: N PUTs into the source as fast as 8 client threads go; the rate is N over the
   time from the first source PUT to the last destination PUT. The client's PUTs share the
   two cores with RGW, the intake and the listener, so this measures the whole loop, and is
   set beside the same PUTs announced by the writer: the **writer** variant runs the same
   three phases with no notification and no intake, each client thread XADDing its key right
   after its PUT (what glue code does without a push), so both carry the same PUT load. The
   round's stream-mode rate (pre-uploaded keys XADDed in one call) is the ceiling beside them.

The synchronous topic is the target's setting: RGW POSTs before it answers the PUT, so the
event is in the stream when the client hears 200. The bucket's notification is removed
before the bucket is emptied (DeleteObjects on a notified bucket aborts RGW 16.2).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import data
from .context import Context
from .data import Dataset
from .listener import WARM_TIMEOUT_S, Landings, latency_figures, record_run, sustained
from .measure import TimedProcess
from .peers import s3s3 as s3s3_peer
from .servers import count_requests, process_cpu_s
from .workloads import bucket_name

TOOL = "s3s3intake + s3s3listen (RGW push, sync topic)"
WRITER_TOOL = "s3s3listen (stream, writer XADDs after each PUT)"
SUSTAINED_THREADS = 8


def _site(ctx: Context) -> dict:
    """The source RGW as :mod:`servers.rgw_topics` names it."""
    site = ctx.server.src
    return {
        "endpoint_url": site.url,
        "region": site.region,
        "access_key": site.access_key,
        "secret_key": site.secret_key,
    }


def _notify(ctx: Context, bucket: str, topic: str, endpoint: str) -> str:
    from servers import rgw_topics

    arn = rgw_topics.create_topic(_site(ctx), topic, endpoint)
    rgw_topics.attach(_site(ctx), bucket, arn, events=("s3:ObjectCreated:*",))
    return arn


def _unnotify(ctx: Context, bucket: str, arn: str) -> None:
    """Detach the bucket before it is emptied: DeleteObjects on a notified bucket aborts
    RGW 16.2."""
    from servers import rgw_topics

    try:
        rgw_topics.detach(_site(ctx), bucket)
    finally:
        rgw_topics.delete_topic(_site(ctx), arn)


def push_unavailable(ctx: Context) -> str | None:
    if ctx.server.fallback:
        return "needs Ceph RGW (bucket notifications; moto pushes nothing)"
    return s3s3_peer.listen_unavailable(ctx)


class _WriterAnnounces:
    """The writer variant's announcements: one XADD of the key after each PUT."""

    def __init__(self, config) -> None:
        import redis

        from s3s3 import config as s3s3_config

        self.cfg = s3s3_config.load(config, search_path=[]).redis
        self.redis = redis.Redis.from_url(self.cfg.url)

    def __call__(self, key: str) -> None:
        self.redis.xadd(self.cfg.stream, {"key": key, "op": "copy"})

    def close(self) -> None:
        self.redis.close()


def push_run(
    ctx: Context, run: int, *, n_lat: int, n_sus: int, writer: bool = False
) -> dict | None:
    """One run of the push variant (``writer=False``) or of the writer variant."""
    tool = WRITER_TOOL if writer else TOOL
    why = push_unavailable(ctx)
    if why:
        ctx.note(f"{tool}: skipped ({why})")
        return None
    from servers._common import free_port

    variant = "w7writer" if writer else "w7push"
    # Names of this process's own: a bucket that was notified is never emptied and reused.
    src = bucket_name("s", variant, os.getpid(), run)
    dst = bucket_name("d", variant, os.getpid(), run)
    data.create_bucket(ctx, src, side="src")
    data.create_bucket(ctx, dst)
    work = ctx.run_dir / "W7" / f"{variant}-{run}"
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_urlsafe(24)
    saved_tag = ctx.tag
    ctx.tag = f"{saved_tag}-{variant}-{run}"
    try:
        argv, env, cwd = s3s3_peer.listen_invocation(ctx, src, dst, work, mode="stream")
    finally:
        ctx.tag = saved_tag
    config = work / "bench.ini"
    intake_argv: list[str] = []
    intake = arn = None
    announce = _WriterAnnounces(config) if writer else None
    if not writer:
        with open(config, "a") as f:
            f.write(f"\n[http]\ntoken = {token}\nport = {port}\n")
        intake_argv = [ctx.python, "-m", "s3s3.scripts.intake", "--config", str(config)]
        intake = TimedProcess(intake_argv, log_path=work / "intake.log", env=env, cwd=cwd)
        _wait_for_port(port, intake)
        endpoint = f"http://127.0.0.1:{port}/{token}"
        arn = _notify(ctx, src, f"s3s3bench-{run}-{os.getpid()}", endpoint)
    client = ctx.server.client("src")

    def put(key: str, body: bytes) -> None:
        client.put_object(Bucket=src, Key=key, Body=body)
        if announce is not None:
            announce(key)

    ds = Dataset(name=f"{variant}{run}", bucket=src)
    body_of: dict[str, bytes] = {}

    def key_body(i: int, phase: str) -> tuple[str, bytes]:
        key = f"{ds.prefix}{phase}{i:07d}"
        body = os.urandom(ctx.sizes.small_bytes)
        ds.objects[key] = (len(body), hashlib.md5(body).hexdigest())
        body_of[key] = body
        return key, body

    lat = [key_body(i, "l") for i in range(n_lat)]
    sus = [key_body(i, "s") for i in range(n_sus)]
    warm = key_body(0, "w")
    landings = Landings(ctx, dst)
    cpu0 = ctx.server.cpu_s()
    proc = TimedProcess(argv, log_path=work / "output.log", env=env, cwd=cwd)
    result: dict = {
        "publisher": "the writer: XADD after each PUT"
        if writer
        else "RGW synchronous topic -> s3s3intake (HTTP)"
    }
    problems: list[str] = []
    try:
        started = time.monotonic()
        while True:
            put(*warm)
            if landings.wait_for([warm[0]], 0.5, proc):
                break
            if time.monotonic() - started > WARM_TIMEOUT_S or not proc.running():
                raise RuntimeError(
                    f"nothing replicated within {WARM_TIMEOUT_S:.0f} s; see {work}/*.log"
                )
        result["ready_s"] = round(time.monotonic() - started, 2)
        tool_pid = proc.tool_pid()

        interval = 1.0 / ctx.sizes.w7_rate
        t_start = time.monotonic()
        for i, (key, body) in enumerate(lat):
            delay = t_start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            put(key, body)
            if i % 20 == 0:
                landings.poll()
        lat_keys = [k for k, _ in lat]
        lat_ok = landings.wait_for(lat_keys, 60.0 + len(lat_keys) / 10, proc)
        put_at = _source_puts(landings, src)
        lat_s = [
            landings.times[k] - put_at[k] for k in lat_keys if k in landings.times and k in put_at
        ]
        if not lat_ok:
            problems.append(f"latency phase: {len(lat_keys) - len(lat_s)} keys never landed")
        if lat_s:
            first = min(put_at[k] for k in lat_keys if k in put_at)
            last = max(landings.times[k] for k in lat_keys if k in landings.times)
            result.update(latency_figures(ctx, lat_s, len(lat_keys), first, last))

        cpu_before = process_cpu_s(tool_pid) if tool_pid else None
        t0 = time.time()
        _put_all(put, sus)
        result["publish_s"] = round(time.time() - t0, 3)
        sustained(landings, proc, [k for k, _ in sus], t0, tool_pid, cpu_before, result, problems)
    except RuntimeError as exc:
        problems.append(str(exc))
    finally:
        proc.stop(signal.SIGTERM, grace_s=30.0)
        if intake is not None:
            intake.stop(signal.SIGTERM, grace_s=10.0)
        if arn is not None:
            _unnotify(ctx, src, arn)
        if announce is not None:
            announce.close()
    m = proc.measurement()
    server_cpu = ctx.server.cpu_s() - cpu0
    landings.poll()
    requests = count_requests([r for r in landings.requests if r.bucket == dst])
    wanted = [warm[0], *lat_keys, *(k for k, _ in sus)]
    check = data.verify(ctx, ds, dst, keys=wanted) if not problems else None
    data.empty_bucket(ctx, src, side="src", remove=True)
    result["push_variant"] = "writer" if writer else "rgw-sync-topic"
    return record_run(
        ctx,
        tool=tool,
        family="s3s3",
        run=run,
        label="writer XADDs" if writer else "push (sync topic)",
        measurement=m,
        wanted=wanted,
        sustained_keys=n_sus,
        server_cpu=server_cpu,
        requests=requests,
        check=check,
        problems=problems,
        dst=dst,
        command=" ".join([*intake_argv, "&", *argv]) if intake_argv else " ".join(argv),
        method="RGW access log (source PUT to destination PUT)",
        result=result,
    )


def _source_puts(landings: Landings, bucket: str) -> dict[str, float]:
    """When RGW logged each successful PUT into the source bucket."""
    times: dict[str, float] = {}
    for r in landings.requests:
        if r.method == "PUT" and r.status == 200 and r.bucket == bucket:
            times.setdefault(r.key, r.ts)
    return times


def _put_all(put, objects: list[tuple[str, bytes]]) -> None:
    """``put`` every (key, body) from SUSTAINED_THREADS client threads."""
    lock = threading.Lock()
    errors: list[str] = []

    def one(item: tuple[str, bytes]) -> None:
        try:
            put(*item)
        except Exception as exc:  # counted: the run reports it as a problem
            with lock:
                errors.append(f"{item[0]}: {exc}")

    with ThreadPoolExecutor(SUSTAINED_THREADS) as pool:
        list(pool.map(one, objects))
    if errors:
        raise RuntimeError(f"{len(errors)} source PUTs failed, first: {errors[0]}")


def _wait_for_port(port: int, proc: TimedProcess, timeout_s: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.running():
            raise RuntimeError(f"s3s3intake exited ({proc.proc.poll()}); see its log")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"s3s3intake did not listen on port {port} within {timeout_s:g} s")


__all__ = ["TOOL", "WRITER_TOOL", "push_run", "push_unavailable"]
