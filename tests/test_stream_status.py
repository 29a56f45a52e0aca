"""``read_status`` over real stream states on a real Redis, its text form, and ``s3s3listen
status`` / ``--json`` as a subprocess beside a running listener whose entries are pending."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis
from conftest import ROOT
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    TcpProxy,
    listeners,
    names,
    put_keys,
    stream_config,
    wait_until,
    write_ini,
)

from s3s3.config import RedisConfig
from s3s3.queue.producer import add_entries
from s3s3.queue.stream.status import ConsumerStatus, StreamStatus, read_status
from s3s3.scripts.status import format_status
from servers._common import free_port

#: Entry ids with a known time, so that ages are exact given ``now``.
T0_MS = 1_700_000_000_000


def cfg_for(names, url: str) -> RedisConfig:
    return stream_config(names, url, group="s3s3")


@pytest.fixture
def r(redis_any):
    return redis_any  # each test runs on a single Redis and on a Redis Cluster


def add_at(r: redis.Redis, stream: str, *seconds: int) -> list[str]:
    """Entries added (by id) ``seconds`` after T0."""
    return [
        r.xadd(stream, {"key": f"k{s}", "op": "copy"}, id=f"{T0_MS + s * 1000}-0").decode()
        for s in seconds
    ]


def test_no_stream_is_a_status_not_an_error(r, names, redis_url):
    s = read_status(r, cfg_for(names, redis_url))
    assert s == StreamStatus(
        stream=names.stream,
        group="s3s3",
        dead_letter_stream=names.dead,
        exists=False,
        group_exists=False,
        length=0,
        undelivered=None,
        pending=0,
        oldest_pending_age_s=None,
        oldest_undelivered_age_s=None,
        last_delivered_id=None,
        consumers=(),
        dead_letters=0,
    )
    assert json.loads(json.dumps(s.to_dict()))["exists"] is False


def test_stream_without_our_group(r, names, redis_url):
    add_at(r, names.stream, 0, 1, 2)
    r.xgroup_create(names.stream, "someone-else", id="0")
    s = read_status(r, cfg_for(names, redis_url))
    assert (s.exists, s.group_exists, s.length) == (True, False, 3)
    assert (s.pending, s.undelivered, s.consumers) == (0, None, ())


def test_pending_entries_of_a_consumer_that_read_and_did_not_ack(r, names, redis_url):
    ids = add_at(r, names.stream, 0, 10, 20, 30)
    r.xgroup_create(names.stream, "s3s3", id="0")
    r.xreadgroup("s3s3", "reader", {names.stream: ">"}, count=3)  # read, never acknowledged
    r.xack(names.stream, "s3s3", ids[1])  # one of them finished
    now = T0_MS / 1000 + 100
    s = read_status(r, cfg_for(names, redis_url), now=now)
    assert (s.exists, s.group_exists, s.length) == (True, True, 4)
    assert s.pending == 2
    assert s.oldest_pending_age_s == pytest.approx(100.0)  # ids[0], added at T0
    assert s.undelivered == 1  # ids[3]: no consumer was given it yet
    assert s.oldest_undelivered_age_s == pytest.approx(70.0)
    assert s.oldest_unfinished_age_s == pytest.approx(100.0)
    assert s.last_delivered_id == ids[2]
    assert [(c.name, c.pending) for c in s.consumers] == [("reader", 2)]
    assert s.dead_letters == 0
    d = json.loads(json.dumps(s.to_dict()))
    assert d["consumers"][0]["name"] == "reader" and d["consumers"][0]["pending"] == 2
    assert d["pending"] == 2 and d["undelivered"] == 1 and d["last_delivered_id"] == ids[2]


def test_everything_delivered_and_acknowledged(r, names, redis_url):
    ids = add_at(r, names.stream, 0, 1)
    r.xgroup_create(names.stream, "s3s3", id="0")
    r.xreadgroup("s3s3", "reader", {names.stream: ">"})
    r.xack(names.stream, "s3s3", *ids)
    s = read_status(r, cfg_for(names, redis_url), now=T0_MS / 1000 + 5)
    assert (s.pending, s.undelivered) == (0, 0)
    assert s.oldest_pending_age_s is None and s.oldest_undelivered_age_s is None
    assert s.oldest_unfinished_age_s is None


def test_idle_consumers_show_their_idle_time(r, names, redis_url):
    add_at(r, names.stream, 0, 1)
    r.xgroup_create(names.stream, "s3s3", id="0")
    r.xgroup_createconsumer(names.stream, "s3s3", "idle-one")
    time.sleep(0.3)
    r.xreadgroup("s3s3", "busy-one", {names.stream: ">"}, count=1)
    s = read_status(r, cfg_for(names, redis_url))
    consumers = {c.name: c for c in s.consumers}
    assert set(consumers) == {"idle-one", "busy-one"}
    assert consumers["idle-one"].pending == 0 and consumers["idle-one"].idle_s >= 0.3
    assert consumers["busy-one"].pending == 1
    assert consumers["busy-one"].idle_s < consumers["idle-one"].idle_s


def test_dead_letters_are_counted_with_or_without_the_stream(r, names, redis_url):
    for i in range(3):
        r.xadd(names.dead, {"key": f"dead/{i}", "reason": "failed 3 times"})
    s = read_status(r, cfg_for(names, redis_url))
    assert (s.exists, s.dead_letters) == (False, 3)
    add_at(r, names.stream, 0)
    r.xgroup_create(names.stream, "s3s3", id="0")
    assert read_status(r, cfg_for(names, redis_url)).dead_letters == 3


def test_undelivered_unknown_after_an_entry_was_deleted_from_the_middle(r, names, redis_url):
    """Redis cannot count the group's lag past a deleted entry (XINFO GROUPS lag is nil):
    undelivered is None, and the oldest undelivered entry is still found and aged."""
    ids = add_at(r, names.stream, 0, 10, 20)
    r.xgroup_create(names.stream, "s3s3", id="0")
    r.xdel(names.stream, ids[1])
    s = read_status(r, cfg_for(names, redis_url), now=T0_MS / 1000 + 50)
    assert s.undelivered is None
    assert s.oldest_undelivered_age_s == pytest.approx(50.0)
    assert s.length == 2 and s.pending == 0


def test_a_key_of_another_type_is_an_error_for_the_caller(r, names, redis_url):
    r.set(names.stream, "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        read_status(r, cfg_for(names, redis_url))


def test_format_status_reads_like_a_sync_status():
    s = StreamStatus(
        stream="s3s3:{b}:stream",
        group="s3s3",
        dead_letter_stream="s3s3:{b}:dead",
        exists=True,
        group_exists=True,
        length=12,
        undelivered=4,
        pending=3,
        oldest_pending_age_s=61.25,
        oldest_undelivered_age_s=2.0,
        last_delivered_id="1700000000000-7",
        consumers=(ConsumerStatus("host-1", 3, 0.5), ConsumerStatus("host-2", 0, 3600.0)),
        dead_letters=1,
    )
    assert format_status(s).splitlines() == [
        "stream s3s3:{b}:stream: 12 entries",
        "  group s3s3: last delivered 1700000000000-7",
        "    undelivered: 4 (oldest 2.0s)",
        "    pending:     3 (oldest 61.2s)",
        "    consumers:   2",
        "      host-1: 3 pending, idle 0.5s",
        "      host-2: 0 pending, idle 3600.0s",
        "dead letters: 1 in s3s3:{b}:dead",
    ]
    missing = StreamStatus(**{**s.to_dict(), "exists": False, "consumers": ()})
    assert format_status(missing).splitlines() == [
        "stream s3s3:{b}:stream: does not exist yet (no entry was ever added)",
        "dead letters: 1 in s3s3:{b}:dead",
    ]
    no_group = StreamStatus(**{**s.to_dict(), "group_exists": False, "consumers": ()})
    assert format_status(no_group).splitlines()[1] == (
        "  group s3s3: does not exist yet (no listener has read it)"
    )
    unknown = StreamStatus(**{**s.to_dict(), "undelivered": None, "consumers": ()})
    assert "    undelivered: unknown (oldest 2.0s)" in format_status(unknown).splitlines()


# ---------------------------------------------------------------- s3s3listen status


def cli(ini, *args):
    return subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.listen", "--config", str(ini), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_beside_a_listener_whose_entries_are_pending(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest1").bucket
    keys = [f"held/{i}" for i in range(5)]
    put_keys(a, src, keys)
    proxy = TcpProxy(int(b["endpoint_url"].rsplit(":", 1)[1])).open()
    try:
        ini = write_ini(
            tmp_path / "s3s3.ini",
            source=(a, src),
            dests=[({**b, "endpoint_url": proxy.url}, dst)],
            channel=names.channel,
            mode="stream",
            redis_url=redis_url,
            pubsub={"consumer": "status-test", "reclaim_idle": "300"},
            listen={"grace": "1"},
            dest_extra={"max_attempts": "1", "connect_timeout": "1", "read_timeout": "3"},
        )
        listener = ListenerProcess(ini, tmp_path / "listen.log").start()
        listeners.append(listener)
        proxy.close()  # the destination is down: every entry stays pending, held
        r = redis.Redis.from_url(redis_url)
        add_entries(r, cfg_for(names, redis_url), ({"key": k, "op": "copy"} for k in keys))
        listener.wait_for("[dest1] failed")
        wait_until(
            lambda: read_status(r, cfg_for(names, redis_url)).pending == len(keys),
            30,
            what="every entry pending",
        )
        r.xadd(names.dead, {"key": "dead/1", "reason": "failed 3 times"})

        text = cli(ini, "status")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0] == f"stream {names.stream}: {len(keys)} entries"
        assert lines[1].startswith("  group s3s3: last delivered ")
        assert lines[2].startswith("    undelivered: 0 (oldest -)")
        assert lines[3].startswith(f"    pending:     {len(keys)} (oldest ")
        assert lines[4] == "    consumers:   1"
        assert lines[5].startswith(f"      status-test: {len(keys)} pending, idle ")
        assert lines[6] == f"dead letters: 1 in {names.dead}"
        assert len(lines) == 7

        as_json = cli(ini, "status", "--json")
        assert as_json.returncode == 0, as_json.stderr
        d = json.loads(as_json.stdout)
        assert (d["stream"], d["group"], d["dead_letter_stream"]) == (
            names.stream,
            "s3s3",
            names.dead,
        )
        assert d["exists"] is True and d["group_exists"] is True
        assert (d["length"], d["pending"], d["undelivered"], d["dead_letters"]) == (
            len(keys),
            len(keys),
            0,
            1,
        )
        assert d["oldest_pending_age_s"] > 0
        assert [(c["name"], c["pending"]) for c in d["consumers"]] == [("status-test", 5)]
        assert listener.proc.poll() is None  # asking did not disturb the listener
    finally:
        proxy.close()


def test_status_json_of_a_missing_stream_is_still_json(tmp_path, moto_servers, names, redis_url):
    a, b = moto_servers
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, "src"),
        dests=[(b, "dst")],
        channel=names.channel,
        mode="stream",
        redis_url=redis_url,
    )
    done = cli(ini, "status", "--json")
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    assert (d["exists"], d["group_exists"], d["length"], d["consumers"]) == (False, False, 0, [])
    assert d["stream"] == names.stream
    text = cli(ini, "status")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == (
        f"stream {names.stream}: does not exist yet (no entry was ever added)"
    )


def test_status_exits_2_when_redis_is_unreachable(tmp_path, moto_servers, names):
    a, b = moto_servers
    port = free_port()  # nobody listens there
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, "src"),
        dests=[(b, "dst")],
        channel=names.channel,
        mode="stream",
        redis_url=f"redis://:hunter2-secret@127.0.0.1:{port}/0",
    )
    done = cli(ini, "status", "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"Redis at redis://:***@127.0.0.1:{port}/0: ConnectionError" in done.stderr
    assert "hunter2-secret" not in done.stderr


def test_status_exits_2_on_a_bad_config(tmp_path, moto_servers, names, redis_url):
    a, b = moto_servers
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, "src"),
        dests=[(b, "dst")],
        channel=names.channel,
        mode="stream",
        redis_url=redis_url,
        pubsub={"max_deliveries": "many"},
    )
    done = cli(ini, "status")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "configuration error" in done.stderr and "max_deliveries" in done.stderr
