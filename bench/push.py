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
   set beside stream mode's rate (keys XADDed in one pipelined call) of the same round.

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
from .listener import WARM_TIMEOUT_S, Landings, percentile
from .measure import TimedProcess
from .peers import s3s3 as s3s3_peer
from .servers import count_requests, process_cpu_s
from .workloads import bucket_name

TOOL = "s3s3intake + s3s3listen (RGW push, sync topic)"
SUSTAINED_THREADS = 8


def _sns(ctx: Context):
    import boto3

    site = ctx.server.src
    return boto3.client(
        "sns",
        endpoint_url=site.url,
        region_name=site.region,
        aws_access_key_id=site.access_key,
        aws_secret_access_key=site.secret_key,
    )


def _notify(ctx: Context, bucket: str, topic: str, endpoint: str) -> str:
    arn = _sns(ctx).create_topic(Name=topic, Attributes={"push-endpoint": endpoint})["TopicArn"]
    ctx.server.client("src").put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "TopicConfigurations": [
                {"Id": "s3s3", "TopicArn": arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    return arn


def _unnotify(ctx: Context, bucket: str, arn: str) -> None:
    client = ctx.server.client("src")
    try:
        client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    finally:
        _sns(ctx).delete_topic(TopicArn=arn)


def push_unavailable(ctx: Context) -> str | None:
    if ctx.server.fallback:
        return "needs Ceph RGW (bucket notifications; moto pushes nothing)"
    return s3s3_peer.listen_unavailable(ctx)


def push_run(ctx: Context, run: int, *, n_lat: int, n_sus: int) -> dict | None:
    why = push_unavailable(ctx)
    if why:
        ctx.note(f"{TOOL}: skipped ({why})")
        return None
    from servers._common import free_port

    src = bucket_name("s", "w7push", "", run)
    dst = bucket_name("d", "w7push", "", run)
    data.create_bucket(ctx, src, side="src")
    data.create_bucket(ctx, dst)
    work = ctx.run_dir / "W7" / f"push-{run}"
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_urlsafe(24)
    saved_tag = ctx.tag
    ctx.tag = f"{saved_tag}-push-{run}"
    try:
        argv, env, cwd = s3s3_peer.listen_invocation(ctx, src, dst, work, mode="stream")
    finally:
        ctx.tag = saved_tag
    config = work / "bench.ini"
    with open(config, "a") as f:
        f.write(f"\n[http]\ntoken = {token}\nport = {port}\n")
    intake_argv = [ctx.python, "-m", "s3s3.scripts.intake", "--config", str(config)]
    intake = TimedProcess(intake_argv, log_path=work / "intake.log", env=env, cwd=cwd)
    _wait_for_port(port, intake)
    arn = _notify(ctx, src, f"s3s3bench-{run}-{os.getpid()}", f"http://127.0.0.1:{port}/{token}")
    client = ctx.server.client("src")
    ds = Dataset(name=f"w7push{run}", bucket=src)
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
    result: dict = {"publisher": "RGW synchronous topic -> s3s3intake (HTTP)"}
    problems: list[str] = []
    try:
        started = time.monotonic()
        while True:
            client.put_object(Bucket=src, Key=warm[0], Body=warm[1])
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
            client.put_object(Bucket=src, Key=key, Body=body)
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
            result.update(
                lat_events=len(lat_keys),
                lat_p50_ms=round(percentile(lat_s, 50) * 1000, 1),
                lat_p99_ms=round(percentile(lat_s, 99) * 1000, 1),
                lat_max_ms=round(max(lat_s) * 1000, 1),
                lat_offered_eps=ctx.sizes.w7_rate,
                lat_achieved_eps=round(len(lat_s) / max(last - first, 1e-6), 1),
            )

        cpu_before = process_cpu_s(tool_pid) if tool_pid else None
        t0 = time.time()
        _put_all(ctx, src, sus)
        result["publish_s"] = round(time.time() - t0, 3)
        sus_keys = [k for k, _ in sus]
        sus_ok = landings.wait_for(sus_keys, 60.0 + len(sus_keys) / 10, proc)
        landed = [landings.times[k] for k in sus_keys if k in landings.times]
        if not sus_ok:
            problems.append(f"sustained phase: {len(sus_keys) - len(landed)} keys never landed")
        if landed:
            span = max(landed) - t0
            result.update(
                sus_events=len(sus_keys), sus_s=round(span, 3), sus_eps=round(len(landed) / span, 1)
            )
            if cpu_before is not None:
                cpu_used = process_cpu_s(tool_pid) - cpu_before
                result["sus_cpu_ms_per_event"] = round(cpu_used / len(landed) * 1000, 3)
    except RuntimeError as exc:
        problems.append(str(exc))
    finally:
        proc.stop(signal.SIGTERM, grace_s=30.0)
        intake.stop(signal.SIGTERM, grace_s=10.0)
        _unnotify(ctx, src, arn)
    m = proc.measurement()
    server_cpu = ctx.server.cpu_s() - cpu0
    landings.poll()
    requests = count_requests([r for r in landings.requests if r.bucket == dst])
    wanted = [warm[0], *lat_keys, *(k for k, _ in sus)]
    check = data.verify(ctx, ds, dst, keys=wanted) if not problems else None
    data.empty_bucket(ctx, src, side="src", remove=True)
    ok = not problems and check is not None and check.ok
    rec = ctx.record(
        workload="W7",
        tool=TOOL,
        family="s3s3",
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
        command=" ".join(intake_argv) + " & " + " ".join(argv),
        log=m.log_path,
        notes=m.notes + problems,
        method="RGW access log (source PUT to destination PUT)",
        **result,
    )
    ctx.log(
        f"  W7 run {run} {'push (sync topic)':<28} sustained {result.get('sus_eps', '-')} ev/s "
        f"({n_sus} keys)  latency p50 {result.get('lat_p50_ms', '-')} ms "
        f"p99 {result.get('lat_p99_ms', '-')} ms at {ctx.sizes.w7_rate:g}/s  "
        f"rss {rec['peak_rss_mb']} MB  {'ok' if ok else 'FAILED: ' + rec['verified']}"
    )
    return rec


def _source_puts(landings: Landings, bucket: str) -> dict[str, float]:
    """When RGW logged each successful PUT into the source bucket."""
    times: dict[str, float] = {}
    for r in landings.requests:
        if r.method == "PUT" and r.status == 200 and r.bucket == bucket:
            times.setdefault(r.key, r.ts)
    return times


def _put_all(ctx: Context, bucket: str, objects: list[tuple[str, bytes]]) -> None:
    client = ctx.server.client("src")
    lock = threading.Lock()
    errors: list[str] = []

    def put(item: tuple[str, bytes]) -> None:
        try:
            client.put_object(Bucket=bucket, Key=item[0], Body=item[1])
        except Exception as exc:  # counted: the run reports it as a problem
            with lock:
                errors.append(f"{item[0]}: {exc}")

    with ThreadPoolExecutor(SUSTAINED_THREADS) as pool:
        list(pool.map(put, objects))
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


__all__ = ["TOOL", "push_run", "push_unavailable"]
