"""s3s3 against a real Redis Cluster (tests/redis_cluster.py)."""

from __future__ import annotations

import time


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
