"""s3s3listen in reliable (stream) mode: crashes, restarts, sharing, outages, dead letters.

Listeners run as subprocesses with a temporary INI; Redis is the shared server (unique
stream names) except where Redis itself is restarted, which uses a private redis-server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import redis
from conftest import ROOT, raw_client
from test_listener_support import (  # noqa: F401  (fixtures)
    PrivateRedis,
    TcpProxy,
    keys_in,
    listen_cli,
    listeners,
    names,
    put_keys,
    start_listener,
    stream_config,
    stream_ini,
    wait_until,
    write_ini,
)

from s3s3.config import RedisConfig
from s3s3.queue.producer import add_entries


def cfg_for(names, url: str, **kw) -> RedisConfig:
    return stream_config(names, url, consumer="test", **kw)


def pending(client: redis.Redis, names) -> int:
    try:
        return client.xpending(names.stream, "s3s3")["pending"]
    except redis.ResponseError:
        return 0


def both(dests, keys) -> bool:
    keys = set(keys)
    ok = all(keys <= keys_in(info, bucket) for info, bucket in dests)
    if not ok:
        time.sleep(0.2)  # listings are not free for the S3 server the listener is using
    return ok


def _buckets(moto_servers, make_bucket):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    d1 = make_bucket(b, name="dest1").bucket
    d2 = make_bucket(a, name="dest2").bucket
    return a, b, src, d1, d2


def test_kill9_in_flight_publish_while_down_restart(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    first = [f"first/{i:03d}" for i in range(40)]
    later = [f"later/{i:03d}" for i in range(15)]
    put_keys(a, src, first + later)
    ini = stream_ini(
        tmp_path,
        names,
        redis_url,
        source=(a, src),
        dests=[(b, d1), (a, d2)],
        pubsub={"consumer": "host-1"},
        listen={"workers": "3"},
    )
    r = redis.Redis.from_url(redis_url)
    listener = start_listener(ini, tmp_path / "listen.log", listeners)
    add_entries(r, cfg_for(names, redis_url), ({"key": k, "op": "copy"} for k in first))
    wait_until(lambda: len(keys_in(b, d1)) >= 3, what="the first copies")
    listener.kill()  # kill -9 while copies are in flight
    assert pending(r, names) > 0, "the test meant to kill the listener mid-way"
    assert len(keys_in(b, d1)) < len(first)
    # Published while no listener runs: the stream keeps it.
    result = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.publish", "--config", str(ini), *later],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "announced 15 keys" in result.stderr
    listener.start()
    listener.wait_for("resuming")
    wait_until(lambda: both([(b, d1), (a, d2)], first + later), 60, what="every key")
    wait_until(lambda: pending(r, names) == 0, 15, what="every entry acknowledged")
    listener.signal(signal.SIGTERM)
    assert listener.wait() == 0
    assert pending(r, names) == 0


def test_two_listeners_share_one_stream(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    keys = [f"shared/{i:03d}" for i in range(40)]
    put_keys(a, src, keys)
    procs = []
    for name in ("host-a", "host-b"):
        ini = stream_ini(
            tmp_path,
            names,
            redis_url,
            source=(a, src),
            dests=[(b, d1), (a, d2)],
            pubsub={"consumer": name},
            listen={"workers": "4"},
            file_name=f"{name}.ini",
        )
        procs.append(start_listener(ini, tmp_path / f"{name}.log", listeners))
    r = redis.Redis.from_url(redis_url)
    add_entries(r, cfg_for(names, redis_url), ({"key": k, "op": "copy"} for k in keys))
    wait_until(lambda: both([(b, d1), (a, d2)], keys), 60, what="every key")
    wait_until(lambda: pending(r, names) == 0, 15, what="every entry acknowledged")
    counts = [p.output().count("copied key='shared/") for p in procs]
    assert all(c > 0 for c in counts), f"work was not shared: {counts}"
    assert sum(counts) >= len(keys)
    for p in procs:
        p.signal(signal.SIGTERM)
    assert [p.wait() for p in procs] == [0, 0]


def test_sigterm_drains_cleanly(tmp_path, moto_servers, make_bucket, names, listeners, redis_url):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    keys = [f"drain/{i:03d}" for i in range(20)]
    put_keys(a, src, keys)
    ini = stream_ini(
        tmp_path,
        names,
        redis_url,
        source=(a, src),
        dests=[(b, d1), (a, d2)],
        listen={"workers": "2", "grace": "60"},
    )
    listener = start_listener(ini, tmp_path / "listen.log", listeners)
    r = redis.Redis.from_url(redis_url)
    add_entries(r, cfg_for(names, redis_url), ({"key": k} for k in keys))
    wait_until(lambda: len(keys_in(b, d1)) >= 3, what="the first copies")
    listener.signal(signal.SIGTERM)
    assert listener.wait(60) == 0
    # Everything it had read was finished (none handed back), and nothing is left pending.
    delivered = r.xinfo_groups(names.stream)[0]["entries-read"]
    assert delivered == len(keys)
    assert "handed back" not in listener.output()
    assert both([(b, d1), (a, d2)], keys)
    assert pending(r, names) == 0


def test_sigterm_hands_back_what_grace_did_not_cover(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    keys = [f"back/{i:03d}" for i in range(12)]
    put_keys(a, src, keys)
    slow = TcpProxy(int(b["endpoint_url"].rsplit(":", 1)[1]), delay_s=0.3).open()
    try:
        ini = stream_ini(
            tmp_path,
            names,
            redis_url,
            source=(a, src),
            dests=[({**b, "endpoint_url": slow.url}, d1)],
            listen={"workers": "1", "grace": "0"},
        )
        listener = start_listener(ini, tmp_path / "listen.log", listeners)
        r = redis.Redis.from_url(redis_url)
        add_entries(r, cfg_for(names, redis_url), ({"key": k} for k in keys))
        wait_until(lambda: len(keys_in(b, d1)) >= 1, what="the first copy")
        listener.signal(signal.SIGTERM)
        assert listener.wait(30) == 0
    finally:
        slow.close()
    assert "unfinished entries to" in listener.output()
    assert len(keys_in(b, d1)) < len(keys)
    assert pending(r, names) == 0  # handed back: re-added and acknowledged
    ini = stream_ini(
        tmp_path, names, redis_url, source=(a, src), dests=[(b, d1)], listen={"workers": "4"}
    )
    listener.start()  # any listener picks them up again
    wait_until(lambda: both([(b, d1)], keys), 60, what="every key after the hand-back")
    wait_until(lambda: pending(r, names) == 0, 15, what="every entry acknowledged")


def test_entries_of_a_dead_consumer_are_reclaimed_and_poison_is_dead_lettered(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    keys = [f"orphan/{i:02d}" for i in range(20)]
    put_keys(a, src, keys + ["poison"])
    r = redis.Redis.from_url(redis_url)
    cfg = cfg_for(names, redis_url)
    r.xgroup_create(names.stream, "s3s3", id="0", mkstream=True)
    add_entries(r, cfg, [{"key": "poison"}])
    # A consumer that crashed on "poison" four times (each crash a redelivery)...
    [(_, [(poison_id, _)])] = r.xreadgroup("s3s3", "ghost", {names.stream: ">"}, count=1)
    for _ in range(3):
        r.xclaim(names.stream, "s3s3", "ghost", 0, [poison_id])
    # ...and died holding these.
    add_entries(r, cfg, ({"key": k} for k in keys))
    r.xreadgroup("s3s3", "ghost", {names.stream: ">"}, count=100)
    assert pending(r, names) == 21
    ini = stream_ini(
        tmp_path, names, redis_url, source=(a, src), dests=[(b, d1)], pubsub={"reclaim_idle": "0.5"}
    )
    listener = start_listener(ini, tmp_path / "listen.log", listeners)
    wait_until(lambda: both([(b, d1)], keys), 30, what="the reclaimed keys")
    wait_until(lambda: pending(r, names) == 0, 15, what="every entry acknowledged")
    assert "poison" not in keys_in(b, d1)
    [(_, letter)] = r.xrange(names.dead)
    assert letter[b"key"] == b"poison"
    assert letter[b"reason"] == b"delivered 5 times (max_deliveries = 3)"
    assert letter[b"original_id"] == poison_id
    assert "reclaimed 21 entries" in listener.output()


def test_dead_letter_after_failures_then_requeue(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    keys = ["dl/1", "dl/2"]
    put_keys(a, src, keys)
    ini = stream_ini(tmp_path, names, redis_url, source=(a, src), dests=[(b, d1)])
    listener = start_listener(ini, tmp_path / "listen.log", listeners)
    raw_client(b).delete_bucket(Bucket=d1)  # every PUT now fails: NoSuchBucket
    r = redis.Redis.from_url(redis_url)
    add_entries(r, cfg_for(names, redis_url), ({"key": k, "op": "copy"} for k in keys))
    wait_until(lambda: r.xlen(names.dead) == 2, 30, what="two dead letters")
    wait_until(lambda: pending(r, names) == 0, 15, what="dead letters acknowledged")
    assert listener.proc.poll() is None

    listed = listen_cli(ini, "dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and all("reason='failed 3 times'" in line for line in lines)
    assert sorted(line.split(" key=")[1].split(" ")[0] for line in lines) == ["'dl/1'", "'dl/2'"]
    assert all("NoSuchBucket" in line for line in lines)
    raw_client(b).create_bucket(Bucket=d1)  # the cause is fixed
    requeued = listen_cli(ini, "dead-letters", "requeue")
    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout.strip() == f"requeued 2 dead letters into {names.stream}"
    wait_until(lambda: both([(b, d1)], keys), 30, what="the requeued keys")
    wait_until(lambda: pending(r, names) == 0, 15, what="every entry acknowledged")
    assert r.xlen(names.dead) == 0


def test_redis_restart_listener_reconnects_and_continues(
    tmp_path, moto_servers, make_bucket, names, listeners
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    before = [f"before/{i}" for i in range(10)]
    after = [f"after/{i}" for i in range(10)]
    put_keys(a, src, before + after)
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        ini = stream_ini(
            tmp_path,
            names,
            server.url,
            source=(a, src),
            dests=[(b, d1)],
            pubsub={"consumer": "host-1"},
        )
        listener = start_listener(ini, tmp_path / "listen.log", listeners)
        r = server.client()
        cfg = cfg_for(names, url=server.url)
        add_entries(r, cfg, ({"key": k} for k in before))
        wait_until(lambda: both([(b, d1)], before), 30, what="keys before the restart")
        server.stop()
        listener.wait_for("lost Redis at")
        time.sleep(1.0)  # several reconnect attempts fail meanwhile
        server.start()
        r = server.client()
        add_entries(r, cfg, ({"key": k} for k in after))
        wait_until(lambda: both([(b, d1)], after), 30, what="keys after the restart")
        listener.wait_for("reachable again")
        wait_until(lambda: pending(r, names) == 0, 15, what="every entry acknowledged")
        out = listener.output()
        assert out.count("lost Redis at") == 1  # a state change is logged once, not per retry
        listener.signal(signal.SIGTERM)
        assert listener.wait() == 0
    finally:
        server.stop()


def test_pubsub_listener_resubscribes_after_redis_restart(
    tmp_path, moto_servers, make_bucket, names, listeners
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    put_keys(a, src, ["one", "two"])
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        ini = write_ini(
            tmp_path / "s3s3.ini",
            source=(a, src),
            dests=[(b, d1)],
            channel=names.channel,
            redis_url=server.url,
        )
        listener = start_listener(ini, tmp_path / "listen.log", listeners)
        server.client().publish(names.channel, "one")
        wait_until(lambda: both([(b, d1)], ["one"]), 30, what="'one'")
        server.stop()
        listener.wait_for("lost Redis at")
        server.start()
        r = server.client()
        wait_until(lambda: r.pubsub_numsub(names.channel)[0][1] == 1, 30, what="resubscribed")
        r.publish(names.channel, "two")
        wait_until(lambda: both([(b, d1)], ["two"]), 30, what="'two'")
    finally:
        server.stop()


def test_destination_down_for_a_while_then_back(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    keys = [f"outage/{i:02d}" for i in range(20)]
    put_keys(a, src, keys)
    proxy = TcpProxy(int(b["endpoint_url"].rsplit(":", 1)[1])).open()
    try:
        proxied = {**b, "endpoint_url": proxy.url}
        ini = stream_ini(
            tmp_path,
            names,
            redis_url,
            source=(a, src),
            dests=[(proxied, d1), (a, d2)],
            dest_extra={"max_attempts": "1", "connect_timeout": "1", "read_timeout": "3"},
        )
        listener = start_listener(ini, tmp_path / "listen.log", listeners)
        proxy.close()
        r = redis.Redis.from_url(redis_url)
        add_entries(r, cfg_for(names, redis_url), ({"key": k} for k in keys))
        # The reachable destination gets everything; the other one's work is held.
        wait_until(lambda: both([(a, d2)], keys), 30, what="the reachable destination")
        listener.wait_for("s3s3.listen: [dest1] failed")
        time.sleep(1.5)  # several backoff rounds while it is down
        assert keys_in(b, d1) == set()
        assert pending(r, names) == len(keys)
        proxy.open()
        wait_until(lambda: both([(b, d1)], keys), 30, what="the destination that came back")
        wait_until(lambda: pending(r, names) == 0, 15, what="every entry acknowledged")
        out = listener.output()
        # One line when it went down, one when it came back: not one per retry.
        assert out.count("s3s3.listen: [dest1] failed") == 1
        assert out.count("s3s3.listen: [dest1] answers again") == 1
        assert r.xlen(names.dead) == 0
    finally:
        proxy.close()


def test_minio_list_is_moved_into_the_stream(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    keys = [f"minio dir/photo+{i}.jpg" for i in range(12)]
    put_keys(a, src, keys)

    def access(key):
        from urllib.parse import quote_plus

        record = {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": src}, "object": {"key": quote_plus(key)}},
        }
        return json.dumps([{"Event": [record], "EventTime": "2024-05-01T10:00:00.000Z"}])

    r = redis.Redis.from_url(redis_url)
    processing = "{" + names.list_key + "}:s3s3-processing"
    # Left on the processing list by a mover that died between BLMOVE and XADD.
    r.rpush(processing, access(keys[0]))
    r.rpush(
        names.list_key,
        *[access(k) for k in keys[1:6]],
        '{"not": "an event"}',
        *[access(k) for k in keys[6:]],
    )
    ini = stream_ini(
        tmp_path,
        names,
        redis_url,
        source=(a, src),
        dests=[(b, d1)],
        pubsub={"list": names.list_key},
    )
    start_listener(ini, tmp_path / "listen.log", listeners)
    wait_until(lambda: both([(b, d1)], keys), 30, what="every key from the list")
    wait_until(lambda: pending(r, names) == 0, 15, what="every entry acknowledged")
    assert r.llen(names.list_key) == 0 and r.llen(processing) == 0
    [(_, letter)] = r.xrange(names.dead)
    assert letter[b"reason"] == b"bad message"
    assert letter[b"message"] == b'{"not": "an event"}'


def test_wrong_redis_password_is_fatal_and_not_logged(
    tmp_path, moto_servers, make_bucket, names, listeners
):
    a, b, src, d1, d2 = _buckets(moto_servers, make_bucket)
    server = PrivateRedis(tmp_path / "redis", password="right-one").start()
    try:
        url = f"redis://:hunter2-wrong@127.0.0.1:{server.port}/0"
        ini = stream_ini(tmp_path, names, url, source=(a, src), dests=[(b, d1)])
        listener = start_listener(ini, tmp_path / "listen.log", listeners, ready=None)
        assert listener.wait(30) == 2  # retrying cannot fix a password: fatal, and says so
        out = listener.output()
        assert (
            f"Redis at redis://:***@127.0.0.1:{server.port}/0 refused s3s3: "
            "AuthenticationError" in out
        )
        assert "hunter2-wrong" not in out
    finally:
        server.stop()
