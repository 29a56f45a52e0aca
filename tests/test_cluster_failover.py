"""A Redis Cluster failover in the middle of a burst of announced keys.

The master holding the stream's slot is SIGKILLed while a producer XADDs a few thousand keys
and a listener copies them (moto stores); its replica takes over. The producer and the
listener retry through it. What replication had not carried to the replica when the master
died is lost from the stream: the test counts keys the producer was told were added but that
never reached the destination, and shows that an ``s3s3bucket`` run repairs them. With
``wait_replicas = 1`` an acknowledged batch is on the replica already, and nothing is lost;
the producer waits, instead, until the killed master is back as the new master's replica.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ROOT, raw_client
from test_listener_support import (  # noqa: F401  (fixtures)
    keys_in,
    listeners,
    names,
    start_listener,
    stream_config,
    stream_ini,
    wait_until,
)

from s3s3.config import RedisConfig
from s3s3.queue.producer import add_entries
from s3s3.queue.redis_client import TRANSIENT_ERRORS, connect

KEYS = 2000
BATCH = 20


def put_many(info: dict, bucket: str, keys: list[str]) -> None:
    client = raw_client(info)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))


class Producer(threading.Thread):
    """Adds ``keys`` in small batches, retrying a batch on any transient error, as a
    producer that rides out a failover does; ``acked`` holds what add_entries confirmed."""

    def __init__(self, cfg: RedisConfig, keys: list[str]) -> None:
        super().__init__(daemon=True)
        self.cfg = cfg
        self.keys = keys
        self.acked: list[str] = []
        self.errors: list[str] = []
        self.failed: BaseException | None = None

    def run(self) -> None:
        client = connect(self.cfg, socket_timeout=2, socket_connect_timeout=1)
        try:
            for start in range(0, len(self.keys), BATCH):
                batch = self.keys[start : start + BATCH]
                deadline = time.monotonic() + 60
                while True:
                    try:
                        add_entries(client, self.cfg, ({"key": k, "op": "copy"} for k in batch))
                        break
                    except TRANSIENT_ERRORS as exc:
                        self.errors.append(type(exc).__name__)
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                self.acked.extend(batch)
                time.sleep(0.005)
        except BaseException as exc:
            self.failed = exc
        finally:
            client.close()


@pytest.mark.slow
@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_a_master_killed_mid_burst(
    tmp_path, moto_servers, make_bucket, names, listeners, private_redis_cluster, wait_replicas
):
    cluster = private_redis_cluster
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest1").bucket
    keys = [f"burst/{i:05d}" for i in range(KEYS)]
    put_many(a, src, keys)
    pubsub = {
        "cluster": "true",
        # Every node as a start-up node: the URL's node may be the master killed below.
        "cluster_nodes": ", ".join(cluster.nodes[1:]),
        "wait_replicas": str(wait_replicas),
        "wait_timeout": "2",
    }
    ini = stream_ini(tmp_path, names, cluster.url, source=(a, src), dests=[(b, dst)], pubsub=pubsub)
    listener = start_listener(ini, tmp_path / "listen.log", listeners)
    cfg = stream_config(
        names,
        cluster.url,
        cluster=True,
        cluster_nodes=tuple(("127.0.0.1", p) for p in cluster.ports[1:]),
        wait_replicas=wait_replicas,
    )
    producer = Producer(cfg, keys)
    started = time.monotonic()
    producer.start()
    wait_until(lambda: len(producer.acked) >= KEYS // 3, 30, what="a third of the burst")
    old = cluster.kill_master_of(names.stream)
    killed_at = time.monotonic()
    cluster.wait_ok(30)
    assert cluster.master_port_of(names.stream) != old
    # As a supervisor would: the old master comes back as the new one's replica (until
    # then the slot has no replica, and wait_replicas = 1 confirms nothing).
    cluster.restart(old)
    producer.join(timeout=120)
    assert producer.failed is None, producer.failed
    assert producer.acked == keys
    burst_s = time.monotonic() - started

    # The listener settles: every key it will ever see from the stream gets copied.
    def settled() -> bool:
        before = len(keys_in(b, dst))
        time.sleep(1.0)
        return before == len(keys_in(b, dst)) and before > 0

    wait_until(settled, 90, interval_s=0.1, what="the listener settled")
    copied = keys_in(b, dst)
    lost = sorted(set(keys) - copied)
    assert listener.proc.poll() is None, listener.output()[-3000:]
    print(
        f"\nfailover with wait_replicas={wait_replicas}: {KEYS} keys, master killed "
        f"{killed_at - started:.2f}s in, burst done in {burst_s:.2f}s, "
        f"{len(producer.errors)} producer retries ({sorted(set(producer.errors))}), "
        f"{len(lost)} acknowledged keys lost"
    )
    assert producer.errors  # the kill landed mid-burst
    if wait_replicas:
        assert lost == []  # each acknowledged batch was on the replica already

    run = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.bucket", "--config", str(ini)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert keys_in(b, dst) == set(keys)
