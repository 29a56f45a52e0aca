"""s3s3 against a real Redis Cluster (tests/redis_cluster.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from s3s3.config import RedisConfig, load
from s3s3.errors import ConfigError
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
