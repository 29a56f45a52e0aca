"""Sharded streams (``[pubsub] shards``): routing, every producer, the listener, dead letters,
status and changing the setting, against the session's real Redis (and moto stores).

The Redis Cluster runs are in ``test_shards_cluster.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import zlib
from collections import Counter

import pytest
import redis
from conftest import ROOT, raw_client
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    keys_in,
    listen_cli,
    listeners,
    names,
    put_keys,
    start_listener,
    stream_ini,
    wait_until,
)

from s3s3 import config
from s3s3.config import RedisConfig
from s3s3.errors import BacklogFull, ConfigError
from s3s3.listener.counters import Counters
from s3s3.model import Outcome
from s3s3.queue.announce import Announcer
from s3s3.queue.bridge import run_bridge
from s3s3.queue.link import RedisLink
from s3s3.queue.messages import parse_message
from s3s3.queue.minio_list import ListMover
from s3s3.queue.producer import add_entries
from s3s3.queue.shards import (
    route_entry,
    shard_configs,
    shard_of,
    shard_stream_names,
    stream_configs,
)
from s3s3.queue.stream import list_dead_letters, purge_dead_letters, requeue_dead_letters
from s3s3.queue.stream.sharded import ShardedSource, open_stream_source
from s3s3.queue.stream.status import orphaned_streams, read_sharded_status
from s3s3.queue.tally import Tally

SHARDS = 4


@pytest.fixture
def sharded(names, redis_url):
    """The test's names with every shard's streams added to what is deleted afterwards."""
    for i in range(8):
        names.extra += list(shard_stream_names(names.channel, i))
    return names


def sharded_cfg(names, url: str, shards: int = SHARDS, **kw) -> RedisConfig:
    return RedisConfig(
        url=url,
        channel=names.channel,
        mode="stream",
        stream=names.stream,
        dead_letter_stream=names.dead,
        shards=shards,
        **kw,
    )


def shard_keys(client: redis.Redis, cfg: RedisConfig) -> list[list[str]]:
    """The ``key`` field of every entry of each shard's stream, in order."""
    return [
        [f[b"key"].decode() for _, f in client.xrange(c.stream) if b"key" in f]
        for c in shard_configs(cfg)
    ]


def assert_routed(client: redis.Redis, cfg: RedisConfig, keys) -> None:
    """Each key is in its own shard's stream, once per announcement, in announced order."""
    seen = shard_keys(client, cfg)
    for index, got in enumerate(seen):
        assert got == [k for k in keys if shard_of(k, cfg.shards) == index], index


# --------------------------------------------------------------------------- routing


def test_shard_of_is_crc32_of_the_utf8_key_and_the_same_under_any_hash_seed():
    keys = ["a", "photos/2026/ä.jpg", "x" * 1024, "日本/鍵", "k\udcff"]
    assert [shard_of(k, 7) for k in keys] == [
        zlib.crc32(k.encode("utf-8", "surrogatepass")) % 7 for k in keys
    ]
    code = f"from s3s3.queue.shards import shard_of;print([shard_of(k, 7) for k in {keys[:4]!r}])"
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == str([shard_of(k, 7) for k in keys[:4]])
    assert shard_of("anything", 1) == 0
    with pytest.raises(ValueError):
        shard_of("k", 0)


def test_keys_spread_over_every_shard():
    counts = Counter(shard_of(f"data/{i:06d}.bin", SHARDS) for i in range(8000))
    assert sorted(counts) == list(range(SHARDS))
    assert all(1700 < n < 2300 for n in counts.values()), counts


def test_shard_streams_have_a_hash_tag_each_and_unsharded_names_are_unchanged():
    one = RedisConfig(channel="backup")
    assert shard_configs(one) == (one,)
    assert stream_configs(one) == (one,)
    cfgs = shard_configs(RedisConfig(channel="backup", shards=3))
    assert [(c.stream, c.dead_letter_stream) for c in cfgs] == [
        ("s3s3:{backup-0}:stream", "s3s3:{backup-0}:dead"),
        ("s3s3:{backup-1}:stream", "s3s3:{backup-1}:dead"),
        ("s3s3:{backup-2}:stream", "s3s3:{backup-2}:dead"),
    ]
    assert all(c.shards == 1 and c.group == "s3s3" for c in cfgs)
    drained = stream_configs(RedisConfig(channel="backup", shards=3))[-1]
    assert (drained.stream, drained.dead_letter_stream) == (
        "s3s3:{backup}:stream",
        "s3s3:{backup}:dead",
    )


def event(*records: tuple[str, str]) -> bytes:
    return json.dumps(
        {
            "Records": [
                {"eventName": name, "eventSource": "aws:s3", "s3": {"object": {"key": key}}}
                for name, key in records
            ]
        }
    ).encode()


def keys_of_shards(shards: int) -> tuple[str, str]:
    """Two keys in different shards."""
    first = "k0"
    other = next(
        f"k{i}" for i in range(1, 100) if shard_of(f"k{i}", shards) != shard_of(first, shards)
    )
    return first, other


def test_a_message_in_one_shard_goes_unchanged_and_one_across_shards_is_split_in_order():
    a, b = keys_of_shards(SHARDS)
    same = event(("ObjectCreated:Put", a), ("ObjectRemoved:Delete", a))
    assert route_entry({"message": same}, SHARDS) == [(shard_of(a, SHARDS), {"message": same})]
    mixed = event(("ObjectCreated:Put", a), ("ObjectCreated:Put", b), ("ObjectRemoved:Delete", a))
    routed = route_entry({"message": mixed}, SHARDS)
    assert [(s, f["key"], f["op"]) for s, f in routed] == [
        (shard_of(a, SHARDS), a, "copy"),
        (shard_of(b, SHARDS), b, "copy"),
        (shard_of(a, SHARDS), a, "delete"),
    ]
    # What the listener reads from a split entry is what it read from the record.
    assert routed[2][1]["event"] == parse_message(mixed).items[2].event
    # A plain key message, a key entry, and what names no key.
    assert route_entry({"message": b"plain/key"}, SHARDS) == [
        (shard_of("plain/key", SHARDS), {"message": b"plain/key"})
    ]
    assert route_entry({"key": b, "op": "copy"}, SHARDS) == [
        (shard_of(b, SHARDS), {"key": b, "op": "copy"})
    ]
    assert route_entry({"message": b"\xff"}, SHARDS) == [(0, {"message": b"\xff"})]
    test_event = json.dumps({"Event": "s3:TestEvent", "Bucket": "b"}).encode()
    assert route_entry({"message": test_event}, SHARDS) == [(0, {"message": test_event})]


# --------------------------------------------------------------------------- config


def load_pubsub(tmp_path, **pubsub) -> RedisConfig:
    path = tmp_path / "s3s3.ini"
    lines = ["[source]", "bucket_name = s", "[dest1]", "bucket_name = d", "[pubsub]"]
    lines += [f"{k} = {v}" for k, v in pubsub.items()]
    path.write_text("\n".join(lines) + "\n")
    return config.load(path).redis


def test_shards_setting_defaults_to_one_stream_named_as_before(tmp_path):
    cfg = load_pubsub(tmp_path, mode="stream")
    assert (cfg.shards, cfg.stream, cfg.dead_letter_stream) == (
        1,
        "s3s3:{backup}:stream",
        "s3s3:{backup}:dead",
    )
    assert load_pubsub(tmp_path, mode="stream", shards="16").shards == 16


@pytest.mark.parametrize(
    "pubsub, message",
    [
        ({"shards": "0"}, "value '0' for 'shards' must be greater than zero"),
        ({"shards": "-2"}, "value '-2' for 'shards' must be greater than zero"),
        ({"shards": "100000"}, "value '100000' for 'shards' must be at most 128"),
        ({"shards": "four"}, "'shards'"),
        (
            {"shards": "4", "stream": "my-stream"},
            "'stream' and 'shards = 4' cannot be combined",
        ),
        (
            {"shards": "2", "dead_letter_stream": "my-dead"},
            "'dead_letter_stream' and 'shards = 2' cannot be combined",
        ),
    ],
)
def test_bad_shards_settings_are_refused_naming_the_key(tmp_path, pubsub, message):
    with pytest.raises(ConfigError) as caught:
        load_pubsub(tmp_path, mode="stream", **pubsub)
    assert message in str(caught.value)
    assert "pubsub" in str(caught.value)
    assert str(tmp_path / "s3s3.ini") in str(caught.value)


def test_explicit_stream_names_stay_allowed_with_one_shard(tmp_path):
    cfg = load_pubsub(tmp_path, mode="stream", shards="1", stream="mine")
    assert (cfg.shards, cfg.stream) == (1, "mine")


# --------------------------------------------------------------------------- producers


def test_add_entries_routes_each_key_to_its_shard_in_order(sharded, redis_url):
    r = redis.Redis.from_url(redis_url)
    cfg = sharded_cfg(sharded, redis_url)
    keys = [f"order/{i % 37:03d}" for i in range(600)]  # every key many times
    assert add_entries(r, cfg, ({"key": k, "op": "copy"} for k in keys), batch_size=64) == 600
    assert_routed(r, cfg, keys)
    assert all(shard_keys(r, cfg)), "every shard got keys"
    assert not r.exists(cfg.stream), "nothing went to the unsharded stream"


def test_back_pressure_is_per_shard_and_says_how_many_went_in(sharded, redis_url):
    r = redis.Redis.from_url(redis_url)
    cfg = sharded_cfg(sharded, redis_url, maxlen=5)
    a, b = keys_of_shards(SHARDS)
    entries = [{"key": a}] * 5 + [{"key": b}] * 3 + [{"key": a}] + [{"key": b}]
    with pytest.raises(BacklogFull) as caught:
        add_entries(r, cfg, entries, wait_s=0.3)
    # The sixth entry for a's shard waits; only the prefix before it went in.
    assert caught.value.added == 8
    assert "s3s3:{" + f"{cfg.channel}-{shard_of(a, SHARDS)}" + "}:stream" in str(caught.value)
    assert r.xlen(shard_configs(cfg)[shard_of(a, SHARDS)].stream) == 5
    assert r.xlen(shard_configs(cfg)[shard_of(b, SHARDS)].stream) == 3


PUBLISH_INI = """\
[source]
bucket_name = src
endpoint_url = http://127.0.0.1:9
[dest1]
bucket_name = dst
endpoint_url = http://127.0.0.1:9
[pubsub]
url = {url}
channel = {channel}
mode = stream
shards = {shards}
"""


def test_s3s3publish_routes_by_key(tmp_path, sharded, redis_url):
    path = tmp_path / "s3s3.ini"
    path.write_text(PUBLISH_INI.format(url=redis_url, channel=sharded.channel, shards=SHARDS))
    keys = [f"pub/{i:03d}" for i in range(50)]
    result = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.publish", "--config", str(path), *keys],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "announced 50 keys" in result.stderr
    assert_routed(redis.Redis.from_url(redis_url), sharded_cfg(sharded, redis_url), keys)


def test_the_bucket_jobs_enqueue_routes_by_key(
    tmp_path, sharded, redis_url, moto_servers, make_bucket
):
    a, b = moto_servers
    src, dst = make_bucket(a, name="source"), make_bucket(b, name="dest")
    keys = [f"enq/{i:03d}" for i in range(40)]
    put_keys(a, src.bucket, keys, body=b"e")
    ini = stream_ini(
        tmp_path,
        sharded,
        redis_url,
        source=(a, src.bucket),
        dests=[(b, dst.bucket)],
        pubsub={"shards": str(SHARDS)},
    )
    result = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.bucket", "--config", str(ini), "--enqueue"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert_routed(redis.Redis.from_url(redis_url), sharded_cfg(sharded, redis_url), keys)


def test_the_bridge_routes_messages_by_the_keys_they_name(sharded, redis_url):
    r = redis.Redis.from_url(redis_url)
    cfg = sharded_cfg(sharded, redis_url)
    a, b = keys_of_shards(SHARDS)
    stop = threading.Event()
    counts: dict = {}
    thread = threading.Thread(
        target=run_bridge, args=(r, cfg), kwargs={"stop": stop, "counts": counts}
    )
    thread.start()
    try:
        wait_until(lambda: r.pubsub_numsub(cfg.channel)[0][1] == 1, 10, what="the bridge")
        mixed = event(("ObjectCreated:Put", a), ("ObjectCreated:Put", b))
        for message in (a.encode(), event(("ObjectCreated:Put", b)), mixed):
            assert r.publish(cfg.channel, message) == 1
        wait_until(lambda: counts.get("bridged") == 3, 10, what="three bridged messages")
    finally:
        stop.set()
        thread.join(10)
    streams = [[f for _, f in r.xrange(c.stream)] for c in shard_configs(cfg)]
    sa, sb = shard_of(a, SHARDS), shard_of(b, SHARDS)
    assert streams[sa][0] == {b"message": a.encode()}
    assert streams[sa][1][b"key"] == a.encode()  # the split message's record for a
    assert streams[sb][0] == {b"message": event(("ObjectCreated:Put", b))}
    assert streams[sb][1][b"key"] == b.encode()
    assert sum(len(s) for s in streams) == 4


def test_the_minio_list_mover_routes_by_key(sharded, redis_url):
    r = redis.Redis.from_url(redis_url)
    cfg = sharded_cfg(sharded, redis_url, list_key=sharded.list_key)
    keys = [f"minio/{i:02d}" for i in range(30)]
    for key in keys:
        r.rpush(
            cfg.list_key,
            json.dumps(
                {
                    "EventName": "s3:ObjectCreated:Put",
                    "Key": f"src/{key}",
                    "Records": [
                        {
                            "eventName": "s3:ObjectCreated:Put",
                            "s3": {"bucket": {"name": "src"}, "object": {"key": key}},
                        }
                    ],
                }
            ),
        )
    stop = threading.Event()
    mover = ListMover(r, cfg, link=RedisLink(cfg.safe_url), block_s=0.1)
    thread = threading.Thread(target=mover.run, args=(stop,))
    thread.start()
    try:
        wait_until(
            lambda: (
                r.llen(cfg.list_key) == 0 and r.llen("{" + cfg.list_key + "}:s3s3-processing") == 0
            ),
            10,
            what="the list moved",
        )
    finally:
        stop.set()
        thread.join(10)
    for index, c in enumerate(shard_configs(cfg)):
        named = [parse_message(f[b"message"]).items[0].key for _, f in r.xrange(c.stream)]
        assert named == [k for k in keys if shard_of(k, SHARDS) == index]


def test_the_http_intakes_announcer_routes_by_key(sharded, redis_url):
    r = redis.Redis.from_url(redis_url)
    cfg = sharded_cfg(sharded, redis_url)
    keys = [f"http/{i:02d}" for i in range(12)]
    announcer = Announcer(r, cfg, via="http", tally=Tally())
    body = event(*(("ObjectCreated:Put", k) for k in keys))
    done = announcer.announce(announcer.parse(body))
    assert done.queued == 12
    assert_routed(r, cfg, keys)
    entry = r.xrange(shard_configs(cfg)[shard_of(keys[0], SHARDS)].stream, count=1)[0][1]
    assert entry[b"via"] == b"http"


# --------------------------------------------------------------------------- the listener


def all_pending(client: redis.Redis, cfg: RedisConfig) -> int:
    total = 0
    for c in stream_configs(cfg):
        try:
            total += client.xpending(c.stream, "s3s3")["pending"]
        except redis.ResponseError:
            pass
    return total


def copied_all(info, bucket, keys) -> bool:
    return set(keys) <= keys_in(info, bucket)


def test_a_listener_on_four_shards_copies_every_key_and_drains_the_unsharded_stream(
    tmp_path, moto_servers, make_bucket, sharded, listeners, redis_url
):
    a, b = moto_servers
    src, dst = make_bucket(a, name="source").bucket, make_bucket(b, name="dest").bucket
    before = [f"before/{i:02d}" for i in range(10)]  # announced while shards was 1
    keys = [f"sharded/{i:03d}" for i in range(60)]
    put_keys(a, src, before + keys)
    r = redis.Redis.from_url(redis_url)
    cfg = sharded_cfg(sharded, redis_url)
    add_entries(r, sharded_cfg(sharded, redis_url, shards=1), ({"key": k} for k in before))
    ini = stream_ini(
        tmp_path,
        sharded,
        redis_url,
        source=(a, src),
        dests=[(b, dst)],
        pubsub={"shards": str(SHARDS), "consumer": "host-1"},
    )
    listener = start_listener(ini, tmp_path / "listen.log", listeners)
    assert f"5 streams s3s3:{{{sharded.channel}-0}}:stream" in listener.output()
    add_entries(r, cfg, ({"key": k} for k in keys))
    wait_until(lambda: copied_all(b, dst, before + keys), 60, what="every key")
    wait_until(lambda: all_pending(r, cfg) == 0, 15, what="every entry acknowledged")
    status = read_sharded_status(r, cfg)
    assert [s.stream for s in status.shards] == [c.stream for c in shard_configs(cfg)]
    assert [s.stream for s in status.retired] == [sharded.stream]
    assert status.total.length <= 70  # what was not trimmed yet
    assert all(
        s.group_exists and [c.name for c in s.consumers] == ["host-1"] for s in status.shards
    )
    assert status.total.pending == 0 and status.total.dead_letters == 0
    shown = listen_cli(ini, "status")
    assert shown.returncode == 0, shown.stderr
    for i in range(SHARDS):
        assert f"shard {i}: stream s3s3:{{{sharded.channel}-{i}}}:stream" in shown.stdout
    assert f"unsharded (drained): stream {sharded.stream}" in shown.stdout
    assert "total: stream 4 shards" in shown.stdout
    as_json = json.loads(listen_cli(ini, "status", "--json").stdout)
    assert len(as_json["shards"]) == SHARDS and as_json["pending"] == 0
    listener.signal(signal.SIGTERM)
    assert listener.wait() == 0


def test_dead_letters_land_in_their_shard_and_the_commands_cover_every_shard(
    tmp_path, moto_servers, make_bucket, sharded, listeners, redis_url
):
    a, b = moto_servers
    src, dst = make_bucket(a, name="source").bucket, make_bucket(b, name="dest").bucket
    keys = [f"dl/{i:02d}" for i in range(8)]
    put_keys(a, src, keys)
    ini = stream_ini(
        tmp_path,
        sharded,
        redis_url,
        source=(a, src),
        dests=[(b, dst)],
        pubsub={"shards": str(SHARDS)},
    )
    listener = start_listener(ini, tmp_path / "listen.log", listeners)
    raw_client(b).delete_bucket(Bucket=dst)  # every PUT now fails: NoSuchBucket
    r = redis.Redis.from_url(redis_url)
    cfg = sharded_cfg(sharded, redis_url)
    add_entries(r, cfg, ({"key": k} for k in keys))
    dead = lambda: sum(r.xlen(c.dead_letter_stream) for c in shard_configs(cfg))  # noqa: E731
    wait_until(lambda: dead() == len(keys), 60, what="a dead letter per key")
    for index, c in enumerate(shard_configs(cfg)):
        in_shard = sorted(f[b"key"].decode() for _, f in r.xrange(c.dead_letter_stream))
        assert in_shard == sorted(k for k in keys if shard_of(k, SHARDS) == index)
    listed = listen_cli(ini, "dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert sorted(line.split(" key=")[1].split(" ")[0] for line in lines) == sorted(
        repr(k) for k in keys
    )
    assert all(" in s3s3:{" + sharded.channel + "-" in line for line in lines)
    assert f"{len(keys)} dead letters in the dead-letter streams of 4 shards" in listed.stderr
    assert len(list_dead_letters(r, cfg, count=3)) == 3
    # One requeued by its id, wherever it is; the rest all at once.
    first = list_dead_letters(r, cfg, count=1)[0]
    raw_client(b).create_bucket(Bucket=dst)  # the cause is fixed
    assert requeue_dead_letters(r, cfg, ids=[first.id, "1-1"]) == 1
    wait_until(lambda: first.fields["key"] in keys_in(b, dst), 30, what="the requeued key")
    requeued = listen_cli(ini, "dead-letters", "requeue")
    assert requeued.stdout.strip() == (
        f"requeued {len(keys) - 1} dead letters into the stream of each one's shard"
    )
    wait_until(lambda: copied_all(b, dst, keys), 60, what="every requeued key")
    wait_until(lambda: all_pending(r, cfg) == 0, 15, what="every entry acknowledged")
    assert dead() == 0
    listener.signal(signal.SIGTERM)
    assert listener.wait() == 0
    # Purge sees every shard too.
    c0 = shard_configs(cfg)[0]
    r.xadd(c0.dead_letter_stream, {"key": "x", "reason": "r"})
    r.xadd(shard_configs(cfg)[3].dead_letter_stream, {"key": "y", "reason": "r"})
    assert purge_dead_letters(r, cfg) == 2


def test_status_warns_of_shards_a_smaller_setting_no_longer_reads(tmp_path, sharded, redis_url):
    r = redis.Redis.from_url(redis_url)
    wide = sharded_cfg(sharded, redis_url, shards=6)
    keys = [f"w/{i:03d}" for i in range(60)]
    add_entries(r, wide, ({"key": k} for k in keys))
    narrow = sharded_cfg(sharded, redis_url, shards=4)
    left = orphaned_streams(r, narrow)
    assert sorted(left) == [shard_configs(wide)[4].stream, shard_configs(wide)[5].stream]
    assert sum(left.values()) == sum(1 for k in keys if shard_of(k, 6) >= 4)
    path = tmp_path / "s3s3.ini"
    path.write_text(PUBLISH_INI.format(url=redis_url, channel=sharded.channel, shards=4))
    shown = listen_cli(path, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"WARNING: {shard_configs(wide)[4].stream} holds" in shown.stdout
    assert "no listener reads" in shown.stderr
    # Unsharded again: every shard stream holding work is named.
    assert len(orphaned_streams(r, sharded_cfg(sharded, redis_url, shards=1))) == 6


# --------------------------------------------------------------------------- consumers, metrics


class RecordingFeed:
    """A replicator stand-in that takes everything and keeps the tickets it was given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.taken: list[tuple[str, object]] = []

    def submit(self, item, ticket, *, prior_attempts: int = 0) -> None:
        with self.lock:
            self.taken.append((item.key, ticket))

    def room(self) -> int:
        return 1000

    def wait_for_room(self, timeout_s: float) -> bool:
        return True

    def held(self) -> int:
        return len(self.taken)


@dataclasses.dataclass(frozen=True)
class Done:
    key: str
    outcome: Outcome = Outcome.COPIED
    error: str | None = None
    reason: str | None = None


def test_one_job_with_tickets_of_two_streams_is_acknowledged_in_each_and_marked_once(
    sharded, redis_url
):
    r = redis.Redis.from_url(redis_url)
    cfg = sharded_cfg(sharded, redis_url, consumer="me")
    key = "same/key"
    # The same key in its shard and in the unsharded stream a sharded listener drains.
    add_entries(r, cfg, [{"key": key}])
    add_entries(r, sharded_cfg(sharded, redis_url, shards=1), [{"key": key}])
    source = open_stream_source(r, cfg, link=RedisLink(cfg.safe_url), counters=Counters())
    assert isinstance(source, ShardedSource) and len(source.sources) == SHARDS + 1
    feed, stop = RecordingFeed(), threading.Event()
    source.start()
    thread = threading.Thread(target=source.run, args=(feed, stop))
    thread.start()
    try:
        wait_until(lambda: len(feed.taken) == 2, 10, what="both entries read")
        tickets = [t for _, t in feed.taken]
        assert {t.owner.cfg.stream for t in tickets} == {
            shard_configs(cfg)[shard_of(key, SHARDS)].stream,
            sharded.stream,
        }
        source.complete(tickets, Done(key))
        wait_until(lambda: all_pending(r, cfg) == 0, 10, what="both acknowledged")
    finally:
        stop.set()
        thread.join(15)
        source.close(5.0)
    assert r.get(f"{sharded.channel}=>{key}") == b"True"
    assert not thread.is_alive()


def test_the_backlog_metrics_are_totals_under_the_old_names_and_per_stream_by_label(
    sharded, redis_url
):
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from s3s3.metrics.listener import ListenerMetrics

    r = redis.Redis.from_url(redis_url)
    cfg = sharded_cfg(sharded, redis_url)
    keys = [f"m/{i:02d}" for i in range(30)]
    add_entries(r, cfg, ({"key": k} for k in keys))
    add_entries(r, sharded_cfg(sharded, redis_url, shards=1), [{"key": "old"}])
    r.xadd(shard_configs(cfg)[2].dead_letter_stream, {"key": "x", "reason": "r"})
    m = ListenerMetrics(source="src", destinations=["d"], counters=Counters())
    m.bind(lambda: None, lambda: read_sharded_status(r, cfg), backlog_ttl_s=0.0)
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in family.samples
    }
    assert got[("s3s3_stream_length", ())] == 31
    assert got[("s3s3_dead_letters", ())] == 1
    assert got[("s3s3_stream_pending", ())] == 0
    for index, c in enumerate(shard_configs(cfg)):
        wanted = sum(1 for k in keys if shard_of(k, SHARDS) == index)
        assert got[("s3s3_stream_shard_length", (("stream", c.stream),))] == wanted
        assert got[("s3s3_stream_shard_dead_letters", (("stream", c.stream),))] == (index == 2)
    assert got[("s3s3_stream_shard_length", (("stream", sharded.stream),))] == 1
