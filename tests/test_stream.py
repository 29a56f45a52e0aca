"""s3s3.queue.stream against the real Redis: add_entries, bounding, dead letters."""

from __future__ import annotations

import time

import pytest
from test_listener_support import names  # noqa: F401

from s3s3.config import RedisConfig
from s3s3.errors import BacklogFull
from s3s3.queue.producer import add_entries
from s3s3.queue.stream import (
    DeadLetter,
    dead_letter_fields,
    ensure_group,
    list_dead_letters,
    purge_dead_letters,
    remove_idle_consumers,
    requeue_dead_letters,
    safe_trim_id,
    trim_acknowledged,
)


@pytest.fixture
def r(redis_any):
    return redis_any  # each test runs on a single Redis and on a Redis Cluster


def cfg_for(names, url: str, **kw) -> RedisConfig:
    return RedisConfig(
        url=url,
        channel=names.channel,
        mode="stream",
        stream=names.stream,
        dead_letter_stream=names.dead,
        consumer="me",
        **kw,
    )


def test_add_entries_pipelines_batches(r, names, redis_url):
    cfg = cfg_for(names, redis_url)
    entries = ({"key": f"k{i}", "op": "copy"} for i in range(1234))
    assert add_entries(r, cfg, entries, batch_size=500) == 1234
    rows = r.xrange(names.stream, count=2)
    assert [f for _, f in rows] == [
        {b"key": b"k0", b"op": b"copy"},
        {b"key": b"k1", b"op": b"copy"},
    ]
    assert r.xlen(names.stream) == 1234
    assert add_entries(r, cfg, []) == 0


def test_add_entries_waits_for_room_then_gives_up(r, names, redis_url):
    cfg = cfg_for(names, redis_url, maxlen=5)
    assert add_entries(r, cfg, ({"key": f"k{i}"} for i in range(3))) == 3
    started = time.monotonic()
    with pytest.raises(BacklogFull) as err:
        add_entries(r, cfg, ({"key": f"more{i}"} for i in range(4)), wait_s=0.3)
    assert time.monotonic() - started >= 0.3
    assert err.value.added == 2  # filled up to maxlen, never beyond
    assert r.xlen(names.stream) == 5
    assert str(err.value) == (
        f"stream {names.stream} still holds 5 entries, at its maxlen of 5, "
        "after 0.3s: are the listeners running? (raise 'maxlen' in "
        "[pubsub] if the backlog is expected)"
    )


def test_trim_removes_only_what_every_group_acknowledged(r, names, redis_url):
    cfg = cfg_for(names, redis_url)
    add_entries(r, cfg, ({"key": f"k{i}"} for i in range(300)))
    assert trim_acknowledged(r, cfg) == 0  # no group: nobody has read anything
    ensure_group(r, cfg)
    r.xgroup_create(names.stream, "other", id="0")
    [(_, mine)] = r.xreadgroup(cfg.group, "me", {names.stream: ">"}, count=250)
    r.xack(names.stream, cfg.group, *[i for i, _ in mine[:200]])
    [(_, theirs)] = r.xreadgroup("other", "x", {names.stream: ">"}, count=300)
    r.xack(names.stream, "other", *[i for i, _ in theirs])
    removed = trim_acknowledged(r, cfg)
    remaining = [i for i, _ in r.xrange(names.stream)]
    # The oldest entry group s3s3 still has pending, and everything after it, must remain;
    # approximate trimming removes whole stream nodes below it.
    assert [i for i, _ in mine[200:]] == remaining[len(remaining) - 100 : len(remaining) - 50]
    assert 0 < removed <= 200 and removed == 300 - len(remaining)


def test_safe_trim_id():
    assert safe_trim_id([]) is None
    assert safe_trim_id([(b"0-0", 0, None)]) is None
    assert safe_trim_id([(b"10-5", 0, None)]) == "10-6"
    assert safe_trim_id([(b"10-5", 2, b"7-0")]) == "7-0"
    assert safe_trim_id([(b"10-5", 0, None), (b"9-0", 0, None)]) == "9-1"
    assert safe_trim_id([(b"999-0", 0, None), (b"1000-0", 1, b"998-3")]) == "998-3"


def test_dead_letters_list_requeue_purge(r, names, redis_url):
    cfg = cfg_for(names, redis_url)
    ids = []
    for i in range(3):
        fields = dead_letter_fields(
            {b"key": f"k{i}".encode(), b"op": b"copy", b"attempts": b"2"},
            entry_id=f"1-{i}",
            reason="failed 3 times",
            error="AccessDenied",
            consumer="me",
        )
        ids.append(r.xadd(names.dead, fields).decode())
    letters = list_dead_letters(r, cfg)
    assert [letter.fields for letter in letters] == [
        {"key": f"k{i}", "op": "copy"} for i in range(3)
    ]
    assert letters[0].original_id == "1-0" and letters[0].reason == "failed 3 times"
    assert "key='k0' op=copy reason='failed 3 times' error='AccessDenied'" in letters[0].describe()
    assert len(list_dead_letters(r, cfg, count=2)) == 2
    assert requeue_dead_letters(r, cfg, ids=[ids[1], "9-9"]) == 1
    assert [f for _, f in r.xrange(names.stream)] == [{b"key": b"k1", b"op": b"copy"}]
    assert requeue_dead_letters(r, cfg) == 2
    assert r.xlen(names.dead) == 0 and r.xlen(names.stream) == 3
    r.xadd(names.dead, {"key": "x"})
    r.xadd(names.dead, {"key": "y"})
    assert purge_dead_letters(r, cfg) == 2 and r.xlen(names.dead) == 0


def test_dead_letter_from_entry_tolerates_missing_fields():
    letter = DeadLetter.from_entry(b"5-0", {b"message": b"{}"})
    assert letter.id == "5-0" and letter.reason == "" and letter.fields == {"message": "{}"}


def test_remove_idle_consumers_keeps_those_with_pending_entries(r, names, redis_url):
    cfg = cfg_for(names, redis_url)
    ensure_group(r, cfg)
    add_entries(r, cfg, ({"key": f"k{i}"} for i in range(3)))
    r.xreadgroup(cfg.group, "holder", {names.stream: ">"}, count=1)  # keeps its entry pending
    for consumer in ("idle", "me"):
        [(_, [(entry_id, _)])] = r.xreadgroup(cfg.group, consumer, {names.stream: ">"}, count=1)
        r.xack(names.stream, cfg.group, entry_id)
    time.sleep(0.05)
    assert remove_idle_consumers(r, cfg, min_idle_s=0.01) == 1
    left = sorted(c["name"] for c in r.xinfo_consumers(names.stream, cfg.group))
    assert left == [b"holder", b"me"]
