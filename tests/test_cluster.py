"""s3s3 against a real Redis Cluster (tests/redis_cluster.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import ROOT, raw_client
from redis.cluster import key_slot
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
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

from s3s3.config import RedisConfig, load
from s3s3.errors import ConfigError
from s3s3.queue.minio_list import processing_key
from s3s3.queue.producer import add_entries
from s3s3.queue.redis_client import TRANSIENT_ERRORS, connect, is_cluster


def test_the_cluster_is_up_with_a_replica_per_master(redis_cluster):
    nodes = redis_cluster.cluster_nodes()
    masters = [n for n in nodes if n["master"]]
    replicas = [n for n in nodes if not n["master"]]
    assert len(masters) == 3 and len(replicas) == 3
    assert sorted(r["master_id"] for r in replicas) == sorted(m["id"] for m in masters)
    client = redis_cluster.client()
    assert int(client.cluster_info()["cluster_slots_ok"]) == 16384
    client.set("s3s3-test:{a}", b"1")
    client.set("s3s3-test:{b}", b"2")
    assert client.get("s3s3-test:{a}") == b"1" and client.get("s3s3-test:{b}") == b"2"
    client.close()


def test_a_killed_master_is_replaced_by_its_replica(private_redis_cluster):
    cluster = private_redis_cluster
    client = cluster.client()
    client.set("s3s3-test:{fail}", b"kept")
    client.wait(1, 1000)
    old = cluster.kill_master_of("s3s3-test:{fail}")
    started = time.monotonic()
    cluster.wait_ok(30.0)
    new = cluster.master_port_of("s3s3-test:{fail}")
    assert new != old and time.monotonic() - started < 30
    client.close()
    client = cluster.client()
    assert client.get("s3s3-test:{fail}") == b"kept"
    client.close()


BASE = """\
[source]
bucket_name = src
endpoint_url = http://127.0.0.1:9000
[dest]
bucket_name = dst
"""


def load_pubsub(tmp_path: Path, pubsub: str):
    path = tmp_path / "s3s3.ini"
    path.write_text(BASE + "[pubsub]\n" + pubsub)
    return load(path, search_path=[], env={}).redis


def test_cluster_settings(tmp_path):
    cfg = load_pubsub(
        tmp_path,
        "url = redis://h1:7000/0\ncluster = true\ncluster_nodes = h2:7001, [::1]:7002\n"
        "wait_replicas = 1\nwait_timeout = 0.25\n",
    )
    assert cfg.cluster and cfg.cluster_nodes == (("h2", 7001), ("::1", 7002))
    assert (cfg.wait_replicas, cfg.wait_timeout_s) == (1, 0.25)
    plain = load_pubsub(tmp_path, "url = redis://h1:7000/3\n")
    assert not plain.cluster and plain.cluster_nodes == () and plain.wait_replicas == 0


@pytest.mark.parametrize(
    "pubsub, message",
    [
        (
            "url = redis://h:7000/2\ncluster = true\n",
            "database 2 with 'cluster = true': a Redis Cluster has only database 0 "
            "in section 'pubsub'",
        ),
        (
            "host = h\ndb = 1\ncluster = true\n",
            "database 1 with 'cluster = true': a Redis Cluster has only database 0 "
            "in section 'pubsub'",
        ),
        (
            "url = unix:///run/redis.sock\ncluster = true\n",
            "'cluster = true' needs a redis:// or rediss:// URL, not unix:// in section 'pubsub'",
        ),
        (
            "cluster_nodes = h:1\n",
            "'cluster_nodes' needs 'cluster = true' in section 'pubsub'",
        ),
        (
            "cluster = true\ncluster_nodes = h:1, h\n",
            "value 'h' in 'cluster_nodes' is not host:port (give 'host:port, host:port') "
            "in section 'pubsub'",
        ),
        (
            "mode = stream\nlist = {}minio\n",
            "value '{}minio' for 'list' starts its hash tag with '{}': Redis hashes it as a "
            "whole, so no processing list can share its slot; name the list without '{}' or "
            "with a non-empty tag ('minio{events}') in section 'pubsub'",
        ),
        (
            "wait_replicas = -1\n",
            "value '-1' for 'wait_replicas' must be zero or more in section 'pubsub'",
        ),
    ],
)
def test_bad_cluster_settings_name_section_and_key(tmp_path, pubsub, message):
    with pytest.raises(ConfigError) as err:
        load_pubsub(tmp_path, pubsub)
    assert str(err.value) == f"{message} (file: '{tmp_path / 's3s3.ini'}')"


def test_connect_makes_a_cluster_client_that_connects_on_first_use(redis_cluster):
    cfg = RedisConfig(url=redis_cluster.url, cluster=True)
    client = connect(cfg)
    assert is_cluster(client) and "not connected yet" in repr(client)
    assert client.ping()
    client.close()
    nowhere = connect(RedisConfig(url="redis://127.0.0.1:9/0", cluster=True))
    with pytest.raises(TRANSIENT_ERRORS, match="cannot be connected"):
        nowhere.get("k")  # transient: the loops that retry a lost Redis retry this too
    nowhere.close()


# -- the daemons and scripts on a cluster ----------------------------------------------------


@pytest.fixture
def cluster_client(redis_cluster):
    client = connect(RedisConfig(url=redis_cluster.url, cluster=True))
    yield client
    client.close()


def on_cluster(redis_cluster, **pubsub) -> dict:
    """[pubsub] keys pointing s3s3 at the session's cluster (one start-up node named in the
    URL, another in cluster_nodes)."""
    second = redis_cluster.nodes[1]
    return {"cluster": "true", "cluster_nodes": second, **pubsub}


def pending(client, names) -> int:
    try:
        return client.xpending(names.stream, "s3s3")["pending"]
    except redis.ResponseError:
        return 0


def test_stream_listener_dead_letters_and_status_on_a_cluster(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_cluster, cluster_client
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest1").bucket
    keys = [f"c/{i}" for i in range(20)]
    put_keys(a, src, keys)
    ini = stream_ini(
        tmp_path,
        names,
        redis_cluster.url,
        source=(a, src),
        dests=[(b, dst)],
        pubsub=on_cluster(redis_cluster),
    )
    listener = start_listener(ini, tmp_path / "listen.log", listeners)
    cfg = stream_config(names, redis_cluster.url, cluster=True)
    add_entries(cluster_client, cfg, ({"key": k, "op": "copy"} for k in keys))
    wait_until(lambda: set(keys) <= keys_in(b, dst), 30, what="every key copied")
    wait_until(lambda: pending(cluster_client, names) == 0, 15, what="every entry acknowledged")
    # The 2015 marker keys land on many slots, hence on every master.
    markers = [f"{names.channel}=>{k}" for k in keys]
    assert all(cluster_client.get(m) == b"True" for m in markers)
    assert len({redis_cluster.master_port_of(m) for m in markers}) == 3

    dest = raw_client(b)
    dest.delete_objects(Bucket=dst, Delete={"Objects": [{"Key": k} for k in keys]})
    dest.delete_bucket(Bucket=dst)  # every PUT fails now: dead letters
    put_keys(a, src, ["dl/1", "dl/2"])
    add_entries(cluster_client, cfg, ({"key": k, "op": "copy"} for k in ["dl/1", "dl/2"]))
    wait_until(lambda: cluster_client.xlen(names.dead) == 2, 30, what="two dead letters")
    wait_until(lambda: pending(cluster_client, names) == 0, 15, what="dead letters acked")
    listed = listen_cli(ini, "dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 2
    assert all("reason='failed 3 times'" in line for line in listed.stdout.splitlines())
    status = listen_cli(ini, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"stream {names.stream}: {len(keys) + 2} entries"
    assert f"dead letters: 2 in {names.dead}" in status.stdout
    raw_client(b).create_bucket(Bucket=dst)
    requeued = listen_cli(ini, "dead-letters", "requeue")
    assert requeued.stdout.strip() == f"requeued 2 dead letters into {names.stream}"
    wait_until(lambda: {"dl/1", "dl/2"} <= keys_in(b, dst), 30, what="the requeued keys")
    cluster_client.xadd(names.dead, {"key": "dead/3", "reason": "by hand"})
    purged = listen_cli(ini, "dead-letters", "purge", "--all")
    assert purged.returncode == 0, purged.stderr
    assert cluster_client.xlen(names.dead) == 0
    assert listener.proc.poll() is None


def test_pubsub_listener_and_s3s3publish_on_a_cluster(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_cluster
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest1").bucket
    keys = [f"p/{i}" for i in range(5)]
    put_keys(a, src, keys)
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, src),
        dests=[(b, dst)],
        channel=names.channel,
        redis_url=redis_cluster.url,
        mode="pubsub",
        pubsub=on_cluster(redis_cluster),
    )
    start_listener(ini, tmp_path / "listen.log", listeners)
    published = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.publish", "--config", str(ini), *keys],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert published.returncode == 0, published.stderr
    wait_until(lambda: set(keys) <= keys_in(b, dst), 30, what="every published key copied")


def test_minio_list_on_a_cluster_is_moved_within_its_slot(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_cluster, cluster_client
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest1").bucket
    keys = [f"minio/{i}" for i in range(8)]
    put_keys(a, src, keys)
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": src}, "object": {"key": "KEY"}},
    }

    def access(key: str) -> str:
        event = json.loads(json.dumps(record).replace("KEY", key))
        return json.dumps([{"Event": [event], "EventTime": "2024-05-01T10:00:00.000Z"}])

    # MinIO's list key as MinIO users name it: no hash tag; the processing list borrows
    # the key itself as its tag, so BLMOVE stays on one slot.
    list_key = names.list_key
    assert key_slot(processing_key(list_key).encode()) == key_slot(list_key.encode())
    cluster_client.rpush(list_key, *[access(k) for k in keys])
    ini = stream_ini(
        tmp_path,
        names,
        redis_cluster.url,
        source=(a, src),
        dests=[(b, dst)],
        pubsub=on_cluster(redis_cluster, list=list_key),
    )
    start_listener(ini, tmp_path / "listen.log", listeners)
    wait_until(lambda: set(keys) <= keys_in(b, dst), 30, what="every key from the list")
    assert cluster_client.llen(list_key) == 0
    assert cluster_client.llen(processing_key(list_key)) == 0
    cluster_client.delete(list_key)


def test_s3s3bucket_enqueue_and_its_lock_on_a_cluster(
    tmp_path, moto_servers, make_bucket, names, redis_cluster, cluster_client
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest1").bucket
    keys = [f"e/{i}" for i in range(7)]
    put_keys(a, src, keys)
    ini = stream_ini(
        tmp_path,
        names,
        redis_cluster.url,
        source=(a, src),
        dests=[(b, dst)],
        pubsub=on_cluster(redis_cluster),
    )
    with open(ini, "a") as f:
        f.write(f"\n[bucket]\nlock = redis\nlock_dir = {tmp_path}\n")
    run = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.bucket", "--config", str(ini), "--enqueue"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "holding Redis lock" in run.stderr, run.stderr
    entries = cluster_client.xrange(names.stream)
    assert sorted(fields[b"key"].decode() for _, fields in entries) == sorted(keys)


def test_the_bridge_hears_a_2015_publish_sent_to_any_node(
    tmp_path, names, redis_cluster, cluster_client
):
    ini = tmp_path / "s3s3.ini"
    ini.write_text(
        "[source]\nbucket_name = src\nendpoint_url = http://127.0.0.1:9\n"
        "[dest1]\nbucket_name = dst\nendpoint_url = http://127.0.0.1:9\n"
        f"[pubsub]\nurl = {redis_cluster.url}\ncluster = true\nchannel = {names.channel}\n"
        "mode = stream\n"
    )
    bridge = ListenerProcess(
        ini, tmp_path / "bridge.log", args=("--bridge",), module="s3s3.scripts.publish"
    ).start(ready="bridging channel")
    try:
        # A plain PUBLISH on every node, as a 2015 producer pointed at any one of them
        # would send it: the cluster bus carries it to the bridge's node.
        for port in redis_cluster.ports:
            assert redis_cluster.node_client(port).publish(names.channel, f"k/{port}") >= 0
        wait_until(lambda: cluster_client.xlen(names.stream) == 6, 15, what="six bridged entries")
        got = sorted(f[b"message"].decode() for _, f in cluster_client.xrange(names.stream))
        assert got == sorted(f"k/{port}" for port in redis_cluster.ports)
        bridge.signal(signal.SIGTERM)
        assert bridge.wait() == 0
    finally:
        bridge.stop()


@pytest.mark.parametrize("list_key", ["minio", "minio{events}", "a{b}", "a{b}c{d}", "x{"])
def test_the_processing_list_shares_the_list_keys_slot(list_key):
    assert key_slot(processing_key(list_key).encode()) == key_slot(list_key.encode())
