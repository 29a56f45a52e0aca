"""Sharded streams on a real Redis Cluster (fixture ``redis_cluster``): several ``s3s3listen``
processes share the shards, every key reaches its end state, each key's events in order."""

from __future__ import annotations

import dataclasses
import signal
from collections import Counter

import pytest
from conftest import raw_client
from test_listener_support import (  # noqa: F401  (fixtures)
    keys_in,
    listeners,
    start_listener,
    wait_until,
    write_ini,
)

from s3s3.config import RedisConfig
from s3s3.queue.producer import add_entries
from s3s3.queue.redis_client import connect
from s3s3.queue.shards import shard_configs, stream_configs

SHARDS = 4


def pending(client, cfg: RedisConfig) -> int:
    total = 0
    for c in stream_configs(cfg):
        if client.exists(c.stream):
            total += client.xpending(c.stream, c.group)["pending"]
    return total


@pytest.mark.parametrize("processes", [2, 4])
def test_listeners_sharing_sharded_streams_on_a_cluster_apply_each_keys_events_in_order(
    tmp_path, moto_servers, make_bucket, listeners, redis_cluster, processes
):
    a, b = moto_servers
    src, dst = make_bucket(a, name="source").bucket, make_bucket(b, name="dest").bucket
    channel = f"c{processes}-{tmp_path.name[-12:]}"
    cfg = RedisConfig(
        url=redis_cluster.url, channel=channel, mode="stream", shards=SHARDS, cluster=True
    )
    slots = {redis_cluster.master_port_of(c.stream) for c in shard_configs(cfg)}
    assert len(slots) > 1, "the shards are meant to be on several masters"
    procs = []
    for i in range(processes):
        ini = write_ini(
            tmp_path / f"host-{i}.ini",
            source=(a, src),
            dests=[(b, dst)],
            channel=channel,
            redis_url=redis_cluster.url,
            mode="stream",
            pubsub={"shards": str(SHARDS), "cluster": "true", "consumer": f"host-{i}"},
            listen={"workers": "4", "delete": "true"},
        )
        procs.append(start_listener(ini, tmp_path / f"host-{i}.log", listeners))
    client = connect(cfg)
    s3 = raw_client(a)
    keys = [f"ordered/{i:03d}" for i in range(40)]
    ends_deleted = set(keys[::4])
    # Every key: PUT v1, PUT v2, DELETE, PUT v3 (a quarter: then DELETE again), each
    # announced right after it happened, as a store's notifications would be.
    for step in ("v1", "v2", "delete", "v3", "end"):
        for key in keys:
            if step == "end" and key not in ends_deleted:
                continue
            if step in ("delete", "end"):
                s3.delete_object(Bucket=src, Key=key)
                add_entries(client, cfg, [{"key": key, "op": "delete"}])
            else:
                s3.put_object(Bucket=src, Key=key, Body=f"{key} {step}".encode())
                add_entries(client, cfg, [{"key": key, "op": "copy"}])
    wanted = {k for k in keys if k not in ends_deleted}

    def done() -> bool:
        return keys_in(b, dst) == wanted and pending(client, cfg) == 0

    wait_until(done, 120, interval_s=0.3, what="every key at its end state")
    dest = raw_client(b)
    for key in sorted(wanted):
        body = dest.get_object(Bucket=dst, Key=key)["Body"].read()
        assert body == f"{key} v3".encode(), key
    per_shard = Counter(len(client.xinfo_consumers(c.stream, c.group)) for c in shard_configs(cfg))
    assert per_shard == Counter({processes: SHARDS}), "every listener reads every shard"
    worked = [p.output().count("ordered/") for p in procs]
    assert all(n > 0 for n in worked), f"work was not shared: {worked}"
    for p in procs:
        p.signal(signal.SIGTERM)
    assert [p.wait() for p in procs] == [0] * processes
    for c in stream_configs(cfg):
        client.delete(c.stream, c.dead_letter_stream)
    client.close()


def test_dead_letters_status_and_back_pressure_of_sharded_streams_on_a_cluster(
    tmp_path, redis_cluster
):
    from s3s3.errors import BacklogFull
    from s3s3.queue.shards import shard_of
    from s3s3.queue.stream import list_dead_letters, purge_dead_letters, requeue_dead_letters
    from s3s3.queue.stream.status import orphaned_streams, read_sharded_status

    channel = f"dl-{tmp_path.name[-12:]}"
    cfg = RedisConfig(
        url=redis_cluster.url, channel=channel, mode="stream", shards=SHARDS, cluster=True
    )
    client = connect(cfg)
    try:
        keys = [f"dead/{i:02d}" for i in range(12)]
        for key in keys:
            c = shard_configs(cfg)[shard_of(key, SHARDS)]
            client.xadd(c.dead_letter_stream, {"key": key, "op": "copy", "reason": "failed"})
        letters = list_dead_letters(client, cfg, count=None)
        assert sorted(d.fields["key"] for d in letters) == keys
        # Each goes back, in one MULTI/EXEC on its shard's slot, into its shard's stream.
        assert requeue_dead_letters(client, cfg) == len(keys)
        for index, c in enumerate(shard_configs(cfg)):
            back = sorted(f[b"key"].decode() for _, f in client.xrange(c.stream))
            assert back == sorted(k for k in keys if shard_of(k, SHARDS) == index)
        status = read_sharded_status(client, cfg)
        assert status.total.length == len(keys) and status.total.dead_letters == 0
        assert sorted(orphaned_streams(client, dataclasses.replace(cfg, shards=2))) == [
            c.stream for c in shard_configs(cfg)[2:] if client.xlen(c.stream)
        ]
        client.xadd(shard_configs(cfg)[1].dead_letter_stream, {"key": "z", "reason": "r"})
        assert purge_dead_letters(client, cfg) == 1
        # Back-pressure per shard on the cluster too.
        full = dataclasses.replace(cfg, maxlen=1)
        busy = next(i for i, c in enumerate(shard_configs(cfg)) if client.xlen(c.stream))
        key = next(k for k in (f"p{i}" for i in range(200)) if shard_of(k, SHARDS) == busy)
        with pytest.raises(BacklogFull) as caught:
            add_entries(client, full, [{"key": key}], wait_s=0.2)
        assert caught.value.added == 0
        assert shard_configs(cfg)[busy].stream in str(caught.value)
    finally:
        for c in stream_configs(cfg):
            client.delete(c.stream, c.dead_letter_stream)
        client.close()
