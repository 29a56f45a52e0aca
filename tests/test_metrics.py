"""``s3s3listen``'s metrics and health, read the way operators read them.

A real Prometheus server (Debian's ``prometheus``) scrapes running listeners every second;
the series are read back through its HTTP API with the values the work implies (``/readyz``
is tests/test_readyz.py's). The intake's metrics, the address range that keeps several listeners on one host
apart, and the observer's arithmetic (through prometheus_client's own parser) are here too.
moto is the S3 here: nothing about S3 compatibility is claimed.
"""

from __future__ import annotations

import json
import re

import pytest
import redis
from conftest import raw_client, unique_bucket
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import Prometheus, get
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    PrivateRedis,
    names,
    wait_until,
    write_ini,
)

from s3s3.config import RedisConfig
from s3s3.errors import FatalEndpointError, TransientEndpointError
from s3s3.listener.counters import Counters
from s3s3.listener.replicator import JobResult
from s3s3.metrics.listener import ListenerMetrics
from s3s3.model import CopyResult, Outcome
from s3s3.queue.producer import publish_keys
from servers._common import free_port


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def served_port(listener: ListenerProcess) -> int:
    found = re.search(
        r"serves /metrics, /healthz and /readyz on http://[^:]+:(\d+)", listener.output()
    )
    assert found, listener.output()[-3000:]
    return int(found.group(1))


def metrics_ini(tmp_path, moto_servers, names, redis_url, *, listen: str, dst_url=None):
    a, b = moto_servers
    src, dst = unique_bucket("msrc"), unique_bucket("mdst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    dst_info = dict(b, endpoint_url=dst_url) if dst_url else b
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, src),
        dests=[(dst_info, dst)],
        channel=names.channel,
        redis_url=redis_url,
        mode="stream",
        listen={"retry_max": "0.2"},
    )
    with ini.open("a") as f:
        f.write(f"\n[metrics]\nlisten = {listen}\n")
    return ini, src, dst


def announce(redis_url: str, names, keys: list[str]) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        cfg = RedisConfig(url=redis_url, mode="stream", stream=names.stream, channel=names.channel)
        publish_keys(client, cfg, keys)
    finally:
        client.close()


def test_prometheus_scrapes_two_listeners_sharing_one_ini_and_reads_the_work_back(
    tmp_path, moto_servers, names, redis_url
):
    first = free_port()
    ini, src, dst = metrics_ini(
        tmp_path, moto_servers, names, redis_url, listen=f"127.0.0.1:{first}-{first + 5}"
    )
    sizes = {f"k/{i} ü+": 1000 + i for i in range(20)}
    s3 = raw_client(moto_servers[0])
    for key, size in sizes.items():
        s3.put_object(Bucket=src, Key=key, Body=b"x" * size)
    one = ListenerProcess(ini, tmp_path / "one.log").start()
    two = ListenerProcess(ini, tmp_path / "two.log").start()
    prom = None
    try:
        ports = {served_port(one), served_port(two)}
        assert len(ports) == 2 and ports <= set(range(first, first + 6))
        prom = Prometheus(tmp_path, [f"127.0.0.1:{p}" for p in sorted(ports)])
        wait_until(
            lambda: prom.value('count(up{job="s3s3listen"} == 1)') == 2,
            30,
            interval_s=0.5,
            what="both listeners scraped",
        )
        announce(redis_url, names, list(sizes))
        wait_until(
            lambda: prom.value('sum(s3s3_objects_total{outcome="copied"})') == len(sizes),
            60,
            interval_s=0.5,
            what="Prometheus to count every copy",
        )
        assert prom.value("sum(s3s3_bytes_written_total)") == sum(sizes.values())
        assert prom.value("sum(s3s3_source_bytes_read_total)") == sum(sizes.values())
        assert prom.value("sum(s3s3_copy_duration_seconds_count)") == len(sizes)
        wait_until(
            lambda: prom.value("sum(s3s3_replication_lag_seconds_count)") == len(sizes),
            10,
            interval_s=0.5,
            what="a lag for every key",
        )
        # Every key's lag was under the lag histogram's 30 s bucket.
        assert prom.value('sum(s3s3_replication_lag_seconds_bucket{le="30.0"})') == len(sizes)
        assert prom.value("sum(s3s3_events_received_total)") == len(sizes)
        assert prom.value('sum(s3s3_objects_total{outcome="failed"})') == 0
        assert prom.value('min(s3s3_endpoint_up{role="destination"})') == 1
        assert prom.value("min(s3s3_redis_up)") == 1
        assert prom.value("count(s3s3_build_info)") == 2
        # The backlog: every entry acknowledged (trimming may have cut the stream since).
        wait_until(
            lambda: prom.value("max(s3s3_stream_pending)") == 0,
            10,
            interval_s=0.5,
            what="nothing pending",
        )
        assert prom.value("max(s3s3_stream_consumers)") == 2
        # The stream's length as Redis tells it (read again: trimming may cut it meanwhile).
        xlen = redis.Redis.from_url(redis_url)
        try:
            wait_until(
                lambda: prom.value("max(s3s3_stream_length)") == xlen.xlen(names.stream),
                20,
                interval_s=0.5,
                what="the stream's length",
            )
        finally:
            xlen.close()
        assert prom.value("max(s3s3_stream_undelivered)") == 0
        assert prom.value("max(s3s3_oldest_pending_age_seconds)") == 0
        assert prom.value('sum(s3s3_jobs{state="queued_or_running"})') == 0
        assert prom.value("max(s3s3_dead_letters)") == 0
        # No series carries an object key.
        for series in prom.query('{__name__=~"s3s3_.*"}'):
            assert not any(v in sizes for v in series["metric"].values()), series
    finally:
        if prom is not None:
            prom.stop()
        one.stop()
        two.stop()
    assert raw_client(moto_servers[1]).list_objects_v2(Bucket=dst)["KeyCount"] == len(sizes)


def test_a_range_without_a_free_port_is_a_clear_error(tmp_path, moto_servers, names, redis_url):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        ini, _, _ = metrics_ini(tmp_path, moto_servers, names, redis_url, listen=str(port))
        listener = ListenerProcess(ini, tmp_path / "listen.log").start(ready=None)
        assert listener.wait(30) == 2
        assert f"no port of 127.0.0.1:{port} is free to serve metrics on" in listener.output()
    finally:
        taken.close()


def test_the_command_line_address_overrides_the_ini_and_off_serves_nothing(
    tmp_path, moto_servers, names, redis_url
):
    in_ini, given = free_port(), free_port()
    ini, _, _ = metrics_ini(tmp_path, moto_servers, names, redis_url, listen=str(in_ini))
    listener = ListenerProcess(
        ini, tmp_path / "given.log", args=("--metrics", f"127.0.0.1:{given}")
    ).start()
    try:
        assert served_port(listener) == given
        assert get(f"http://127.0.0.1:{given}/healthz")[0] == 200
    finally:
        listener.stop()
    quiet = ListenerProcess(ini, tmp_path / "off.log", args=("--metrics", "off")).start()
    try:
        assert "serves /metrics" not in quiet.output()
        with pytest.raises(OSError):
            get(f"http://127.0.0.1:{in_ini}/healthz")
    finally:
        quiet.stop()


def test_the_observer_counts_per_destination_and_the_lag_of_each_event():
    now = [1000.0]
    m = ListenerMetrics(
        source="src",
        destinations=["a", "b"],
        counters=Counters(),
        info={"mode": "stream"},
        clock=lambda: now[0],
    )
    m.copied("a", CopyResult("k", "a", Outcome.COPIED, size=10, duration_s=0.2, bytes_read=10))
    m.copied("b", CopyResult("k", "b", Outcome.SKIPPED, size=10))
    m.deleted("b")
    m.failed("a", TransientEndpointError("503 SlowDown", op="PutObject", endpoint="a", bucket="b"))
    m.failed("a", FatalEndpointError("AccessDenied", op="PutObject", endpoint="a", bucket="b"))
    m.finished(JobResult("k", "copy", Outcome.COPIED), [990.0, 999.5])
    # No lag for a failure; b had the key already, so only a counts it as failed.
    m.finished(JobResult("j", "copy", Outcome.FAILED, destinations=("b",)), [900.0])
    m.finished(JobResult("m", "copy", Outcome.MISSING), [])
    from prometheus_client import generate_latest

    got = samples(generate_latest(m.registry).decode())
    assert got[("s3s3_objects_total", (("destination", "a"), ("outcome", "copied")))] == 1
    assert got[("s3s3_objects_total", (("destination", "b"), ("outcome", "skipped")))] == 1
    assert got[("s3s3_objects_total", (("destination", "b"), ("outcome", "deleted")))] == 1
    assert got[("s3s3_objects_total", (("destination", "a"), ("outcome", "failed")))] == 1
    assert got[("s3s3_objects_total", (("destination", "b"), ("outcome", "failed")))] == 0
    assert got[("s3s3_objects_total", (("destination", "b"), ("outcome", "missing")))] == 1
    assert got[("s3s3_bytes_written_total", (("destination", "a"),))] == 10
    assert got[("s3s3_bytes_written_total", (("destination", "b"),))] == 0
    assert got[("s3s3_source_bytes_read_total", ())] == 10
    assert got[("s3s3_copy_errors_total", (("endpoint", "a"), ("retryable", "true")))] == 1
    assert got[("s3s3_copy_errors_total", (("endpoint", "a"), ("retryable", "false")))] == 1
    assert got[("s3s3_replication_lag_seconds_count", ())] == 2
    assert got[("s3s3_replication_lag_seconds_sum", ())] == pytest.approx(10.5)
    assert got[("s3s3_replication_lag_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("s3s3_listener_info", (("mode", "stream"),))] == 1
    # Before the listener runs, no gauge pretends to know its state.
    assert ("s3s3_redis_up", ()) not in got


def test_the_gauges_read_the_running_listener_and_the_backlog_when_scraped():
    from prometheus_client import generate_latest

    from s3s3.listener.daemon import Running
    from s3s3.listener.replicator import ReplicatorState
    from s3s3.queue.stream.status import ConsumerStatus, StreamStatus

    counters = Counters()
    counters.add(received=7)
    m = ListenerMetrics(source="src", destinations=["a", "b"], counters=counters)
    state = Running(
        replicator=ReplicatorState(
            held=5,
            jobs=3,
            running=2,
            down={"b": (12.0, 3)},
            request_limits={"src": 64, "a": 32, "b": 4},
        ),
        redis_up=False,
        redis_problem="Redis at redis://127.0.0.1:1 unreachable for 3s (ConnectionError)",
        source="src",
        destinations=("a", "b"),
    )
    reads = []

    def backlog() -> StreamStatus:
        reads.append(1)
        if len(reads) > 1:
            raise redis.ConnectionError("Redis away")
        return StreamStatus(
            stream="s",
            group="g",
            dead_letter_stream="s:dead",
            exists=True,
            group_exists=True,
            length=40,
            undelivered=6,
            pending=4,
            oldest_pending_age_s=9.5,
            oldest_undelivered_age_s=20.0,
            last_delivered_id="1-0",
            consumers=(ConsumerStatus("c1", 4, 0.1), ConsumerStatus("c2", 0, 2.0)),
            dead_letters=1,
        )

    m.bind(lambda: state, backlog, backlog_ttl_s=0.0)
    got = samples(generate_latest(m.registry).decode())
    assert got[("s3s3_events_received_total", ())] == 7
    assert got[("s3s3_jobs", (("state", "held"),))] == 5
    assert got[("s3s3_jobs", (("state", "queued_or_running"),))] == 3
    assert got[("s3s3_copies_running", ())] == 2
    assert got[("s3s3_endpoint_up", (("endpoint", "src"), ("role", "source")))] == 1
    assert got[("s3s3_endpoint_up", (("endpoint", "a"), ("role", "destination")))] == 1
    assert got[("s3s3_endpoint_up", (("endpoint", "b"), ("role", "destination")))] == 0
    assert got[("s3s3_redis_up", ())] == 0
    limit = "s3s3_endpoint_requests_limit"
    assert got[(limit, (("endpoint", "src"), ("role", "source")))] == 64
    assert got[(limit, (("endpoint", "b"), ("role", "destination")))] == 4
    assert got[("s3s3_stream_length", ())] == 40
    assert got[("s3s3_stream_undelivered", ())] == 6
    assert got[("s3s3_stream_pending", ())] == 4
    assert got[("s3s3_stream_consumers", ())] == 2
    assert got[("s3s3_dead_letters", ())] == 1
    # The oldest entry not acknowledged, delivered or not.
    assert got[("s3s3_oldest_pending_age_seconds", ())] == 20.0
    assert state.problems() == [
        "Redis at redis://127.0.0.1:1 unreachable for 3s (ConnectionError)",
        "destination 'b' down for 12s (3 jobs held)",
    ]
    # Redis away at the next reading: the backlog's series go, the scrape still answers.
    got = samples(generate_latest(m.registry).decode())
    assert len(reads) == 2
    assert ("s3s3_stream_length", ()) not in got
    assert got[("s3s3_jobs", (("state", "held"),))] == 5


def test_the_observer_never_raises_into_the_copy():
    m = ListenerMetrics(source="src", destinations=["a"], counters=Counters())
    # A size the counter refuses (negative): the hook logs and returns.
    m.copied("a", CopyResult("k", "a", Outcome.COPIED, size=-1, duration_s=0.1))
    m.copied("new", CopyResult("k", "new", Outcome.SKIPPED, size=1))  # a name met late
    m.finished(JobResult("k", "copy", Outcome.COPIED), [float("nan")])
    from prometheus_client import generate_latest

    got = samples(generate_latest(m.registry).decode())
    assert got[("s3s3_objects_total", (("destination", "new"), ("outcome", "skipped")))] == 1


def test_s3s3intake_serves_its_requests_and_records_and_is_not_ready_without_redis(tmp_path, names):
    import http.client

    from test_http_intake import JSON, TOKEN, intake_ini, rgw_event, run_intake

    server = PrivateRedis(tmp_path / "redis").start()
    port, metrics_port = free_port(), free_port()
    ini = intake_ini(tmp_path / "s3s3.ini", redis_url=server.url, stream=names.stream, port=port)
    with ini.open("a") as f:
        f.write(f"\n[metrics]\nintake = 127.0.0.1:{metrics_port}\n")
    log_path = tmp_path / "intake.log"
    proc = run_intake(ini, log_path)
    base = f"http://127.0.0.1:{metrics_port}"

    def post(body: bytes) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/" + TOKEN, body=body, headers=JSON)
            answer = conn.getresponse()
            answer.read()
            return answer.status
        finally:
            conn.close()

    try:
        wait_until(lambda: "taking events from" in log_path.read_text(), 30, what="serving")
        assert post(json.dumps(rgw_event("src", "a")).encode()) == 200
        assert post(b"not json") == 400
        assert post(json.dumps(rgw_event("other-bucket", "b")).encode()) == 200
        got = samples(get(base + "/metrics")[1].decode())
        assert got[("s3s3_intake_requests_total", (("intake", "http"), ("status", "200")))] == 2
        assert got[("s3s3_intake_requests_total", (("intake", "http"), ("status", "400")))] == 1
        records = (("intake", "http"), ("outcome", "queued"))
        assert got[("s3s3_intake_records_total", records)] == 1
        assert got[("s3s3_intake_records_total", (("intake", "http"), ("outcome", "skipped")))] == 1
        assert got[("s3s3_redis_up", ())] == 1
        assert get(base + "/readyz")[0] == 200
        server.stop()
        assert post(json.dumps(rgw_event("src", "c")).encode()) == 503
        status, body = get(base + "/readyz")
        assert status == 503 and "refused 1 pushes" in json.loads(body)["reasons"][0], body
        assert samples(get(base + "/metrics")[1].decode())[("s3s3_redis_up", ())] == 0
        server.start()
        wait_until(lambda: post(json.dumps(rgw_event("src", "d")).encode()) == 200, 30, what="back")
        assert get(base + "/readyz")[0] == 200
    finally:
        proc.terminate()
        proc.wait(20)
        server.stop()
    assert TOKEN not in log_path.read_text()
