"""A reconcile bigger than one host (#16, part 4): ``s3s3bucket --enqueue --ranges N``.

The bucket job splits the key space into ranges and records a run; ``s3s3listen``
processes (real subprocesses) reconcile one range each at a time, and the run record keeps
one summary per range. Shown here against real servers: 20,000 keys on moto reconciled by
three listeners, one of them killed (SIGKILL) in the middle of its range, which another
finishes after ``reclaim_idle``; ``--wait`` printing one summary; a range that cannot be
done dead-lettered and the record saying so; a bad range entry dead-lettered; the same
reconcile with Ceph as the source. Unit tests of the run record run on the session Redis.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import redis
from conftest import ROOT, raw_client, unique_bucket
from test_listener_support import (  # noqa: F401  (fixtures)
    PYTHON,
    ListenerProcess,
    keys_in,
    listeners,
    names,
    stream_config,
    stream_ini,
    wait_until,
)

from s3s3.bucketjob.ranged import summary_of_run
from s3s3.errors import MessageError
from s3s3.model import RangeWork
from s3s3.queue.messages import parse_entry, range_entry_fields
from s3s3.queue.runs import (
    RUN_TTL_S,
    create_run,
    enqueue_ranges,
    hash_tag,
    list_runs,
    range_stream,
    read_run,
    record_dead,
    record_done,
    run_key,
    runs_key,
)
from tests.faultproxy import FaultProxy

#: The commit before ranged reconciles existed: its parser is "a listener of today".
BEFORE_RANGES = "bacbc63"


# --------------------------------------------------------------------------- helpers


def fill(info: dict, bucket: str, keys, body: bytes = b"") -> None:
    client = raw_client(info)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=body), keys))


def fill_moto(info: dict, bucket: str, keys) -> None:
    """Empty objects put by plain unsigned HTTP (moto checks no signature): the setup of
    20,000 keys is bound by the server, not by botocore's CPU in the test process."""
    where = urlsplit(info["endpoint_url"])
    local = threading.local()

    def put(key: str) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
        conn.request("PUT", f"/{bucket}/{quote(key)}", body=b"", headers={"Content-Length": "0"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, (key, response.status)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put, keys))


def ranged_ini(tmp_path: Path, names, redis_url: str, *, source, dests, **kw) -> Path:
    """A stream-mode INI with a ``[bucket]`` section fit for tests (a local lock here)."""
    ini = stream_ini(tmp_path, names, redis_url, source=source, dests=dests, **kw)
    ini.write_text(
        ini.read_text()
        + f"\n[bucket]\nlock = local\nlock_dir = {tmp_path}\nworkers = 8\ngrace = 5\n"
    )
    cfg = stream_config(names, redis_url)
    names.extra += [range_stream(cfg), runs_key(cfg)]
    return ini


def bucket_cli(ini: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "s3s3.scripts.bucket", "--config", str(ini), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def start_bucket(ini: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "s3s3.scripts.bucket", "--config", str(ini), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_id_of(text: str) -> str:
    match = re.search(r"run (\S+): \d+ ranges enqueued", text)
    assert match, text
    return match.group(1)


def old_parse_entry():
    """``parse_entry`` as it was before ranges, loaded from git."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE_RANGES}:s3s3/queue/messages.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "RANGE" not in source
    module = types.ModuleType("s3s3_old_messages")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(source, "old_messages.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.parse_entry


# --------------------------------------------------------------------------- entries


def test_a_range_entry_is_a_bad_message_to_a_listener_of_before():
    work = RangeWork("20261203T120000Z-0a1b2c3d", 2, "key-0100", "key-0200", prefix="p/")
    fields = {k.encode(): v.encode() for k, v in range_entry_fields(work).items()}
    assert b"key" not in fields and b"message" not in fields
    with pytest.raises(MessageError, match="neither a 'key' nor a 'message' field"):
        old_parse_entry()(fields)
    # The parser of now reads it back whole.
    parsed = parse_entry(fields)
    assert parsed.format == "range" and parsed.items == () and parsed.ranges == (work,)


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"op": "range", "index": "0"}, "no 'run' field"),
        ({"op": "range", "run": "r 1", "index": "0"}, "expected a run id"),
        ({"op": "range", "run": "r1", "index": "x"}, "expected a whole number"),
        ({"op": "range", "run": "r1", "index": "0", "after": "b", "end": "a"}, "empty range"),
        ({"op": "range", "run": "r1", "index": "0", "options": "[1]"}, "not a JSON object"),
        (
            {"op": "range", "run": "r1", "index": "0", "options": '{"prefix": 3}'},
            "range option 'prefix' is int; expected a string",
        ),
    ],
)
def test_bad_range_entries_say_what_is_wrong(fields, error):
    with pytest.raises(MessageError, match=re.escape(error)):
        parse_entry(fields)


# --------------------------------------------------------------------------- the run record


def test_the_run_record_keeps_one_summary_per_range(redis_any, redis_url, names):
    # On a single Redis and on a Redis Cluster: each MULTI/EXEC stays in the stream's slot.
    cfg = stream_config(names, redis_url)
    client = redis_any
    works = [RangeWork("run-a", 0, None, "m"), RangeWork("run-a", 1, "m", None)]
    names.extra += [run_key(cfg, "run-a"), runs_key(cfg)]
    create_run(client, cfg, works, meta={"source": "source", "destinations": [["dest1", "b"]]})
    record = read_run(client, cfg, "run-a")
    assert record is not None and record.count == 2 and record.open == [0, 1]
    assert record.meta["ranges"] == [[None, "m"], ["m", None]]
    assert 0 < client.ttl(run_key(cfg, "run-a")) <= RUN_TTL_S
    assert list_runs(client, cfg) == ["run-a"]

    part = {
        "stopped": False,
        "duration_s": 1.0,
        "destinations": [
            {
                "name": "dest1",
                "bucket": "b",
                "listed": 10,
                "copied": 4,
                "skipped": 6,
                "failed": 0,
                "extra": 0,
                "bytes_copied": 40,
                "error": None,
                "failures": [],
            }
        ],
    }
    for _ in range(2):  # done twice (a listener killed before its ack): counted once
        pipe = client.pipeline(transaction=True)
        record_done(pipe, cfg, "run-a", 0, part)
        pipe.execute()
    pipe = client.pipeline(transaction=True)
    record_dead(pipe, cfg, "run-a", 1, reason="failed 3 times", error="boom")
    pipe.execute()
    record = read_run(client, cfg, "run-a")
    assert record is not None and record.open == [] and record.finished
    assert list(record.done) == [0] and list(record.dead) == [1]
    summary = summary_of_run(record)
    (dest,) = summary.destinations
    assert (dest.listed, dest.copied, dest.skipped) == (10, 4, 6)
    assert "1 of 2 ranges dead-lettered (ranges 1)" in (dest.error or "")
    assert not summary.ok

    # Requeued and done after all: done wins, and the run is whole.
    pipe = client.pipeline(transaction=True)
    record_done(pipe, cfg, "run-a", 1, part)
    pipe.execute()
    record = read_run(client, cfg, "run-a")
    assert record is not None and record.dead == {} and sorted(record.done) == [0, 1]
    summary = summary_of_run(record)
    assert summary.ok and summary.destinations[0].copied == 8
    assert read_run(client, cfg, "no-such-run") is None


def test_the_run_record_shares_the_streams_slot(redis_url, names):
    from redis.crc import key_slot

    cfg = stream_config(names, redis_url)
    slot = key_slot(cfg.stream.encode())
    assert hash_tag(cfg) == "{" + names.channel + "}"
    for key in (range_stream(cfg), run_key(cfg, "r"), runs_key(cfg), cfg.dead_letter_stream):
        assert key_slot(key.encode()) == slot, key


# --------------------------------------------------------------------------- fleets


def run_record(redis_url, names, run_id):
    return read_run(redis.Redis.from_url(redis_url), stream_config(names, redis_url), run_id)


def test_twenty_thousand_keys_by_three_listeners_one_killed_mid_range(
    request, tmp_path, moto_servers, names, redis_url, listeners
):
    a, b = moto_servers
    src, dst = unique_bucket("rsrc"), unique_bucket("rdst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    keys = [f"key-{i:05d}" for i in range(20_000)]
    # The destination holds most keys already; the first 2,500 (the first range's, where
    # the listener is killed) and every 50th key are missing.
    missing = set(keys[:2500]) | set(keys[::50])
    with ThreadPoolExecutor(2) as both:
        done = [
            both.submit(fill_moto, a, src, keys),
            both.submit(fill_moto, b, dst, [k for k in keys if k not in missing]),
        ]
        for f in done:
            f.result()
    # Each PUT to the destination is held 12 ms: redoing range 0's ~2,400 copies with
    # 8 workers then outlasts reclaim_idle (3 s), which the renewal check below needs.
    slow = FaultProxy(b["endpoint_url"]).start()
    slow.delay_if = lambda method, path: 0.012 if method == "PUT" else 0.0
    request.addfinalizer(slow.stop)
    slow_b = {**b, "endpoint_url": slow.url}
    ini = ranged_ini(tmp_path, names, redis_url, source=(a, src), dests=[(slow_b, dst)])

    first = ListenerProcess(ini, tmp_path / "l0.log").start()
    listeners.append(first)
    waiter = start_bucket(ini, "--enqueue", "--ranges", "8", "--wait", "--timeout", "240")
    first.wait_for("reconciling range 0 of run", timeout_s=60)
    # Mid-range: it has started copying its 2,500 keys; SIGKILL leaves the entry pending.
    wait_until(lambda: len(keys_in(b, dst)) > len(keys) - len(missing) + 100, 60)
    first.kill()
    others = [ListenerProcess(ini, tmp_path / f"l{i}.log").start() for i in (1, 2)]
    listeners.extend(others)

    out, err = waiter.communicate(timeout=240)
    assert waiter.returncode == 0, out + err[-4000:]
    run_id = run_id_of(out)
    record = run_record(redis_url, names, run_id)
    assert record is not None and record.count > 2 and record.finished
    assert sorted(record.done) == list(range(record.count)) and record.dead == {}
    # Range 0 was finished by another listener, after the reclaim.
    finished_by = [p for p in others if f"range 0 of run {run_id} reconciled" in p.output()]
    assert len(finished_by) == 1, [p.output()[-2000:] for p in others]
    assert "reclaimed 1 entries" in finished_by[0].output()
    # Held ranges are renewed: redoing range 0 took longer than reclaim_idle (3 s), and
    # still nothing but the killed listener's range was ever reclaimed.
    took = re.search(rf"range 0 of run {run_id} reconciled in ([\d.]+)s", finished_by[0].output())
    assert took and float(took.group(1)) > 3.0
    assert sum(p.output().count("reclaimed ") for p in others) == 1
    assert f"range 0 of run {run_id} reconciled" not in first.output()
    # Every destination in step; one summary, summed over the ranges, each counted once.
    assert keys_in(b, dst) == set(keys)
    (line,) = [ln for ln in out.splitlines() if ln.startswith("[dest1]")]
    assert f"s3://{dst}: listed 20000," in line and "failed 0" in line
    copied = int(re.search(r"copied (\d+)", line).group(1))
    skipped = int(re.search(r"skipped (\d+)", line).group(1))
    assert copied + skipped == 20_000 and 0 < copied <= len(missing)

    status = bucket_cli(ini, "runs", run_id, "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["run_id"] == run_id and shown["open"] == []
    assert len(shown["done"]) == record.count


def test_a_range_that_cannot_be_done_is_dead_lettered_and_the_run_says_so(
    tmp_path, moto_servers, names, redis_url, listeners
):
    a, b = moto_servers
    src, dst = unique_bucket("rsrc"), unique_bucket("rdst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    fill(a, src, [f"k{i}" for i in range(20)])
    ini = ranged_ini(tmp_path, names, redis_url, source=(a, src), dests=[(b, dst)])
    cfg = stream_config(names, redis_url)
    client = redis.Redis.from_url(redis_url)
    # One range for a destination this listener does not have (retried, then dead), one
    # it can do, and an entry that is no range at all.
    works = [
        RangeWork("run-dead", 0, None, "k1", destinations=("dest9",)),
        RangeWork("run-dead", 1, "k1", None, destinations=("dest1",)),
    ]
    names.extra += [run_key(cfg, "run-dead"), runs_key(cfg)]
    create_run(client, cfg, works, meta={"source": "source", "destinations": [["dest1", dst]]})
    enqueue_ranges(client, cfg, works)
    client.xadd(range_stream(cfg), {"op": "range", "run": "run-dead", "index": "many"})

    listener = ListenerProcess(ini, tmp_path / "l.log").start()
    listeners.append(listener)
    waited = bucket_cli(ini, "runs", "run-dead")  # works while the run is open too
    assert waited.returncode == 0 and "run run-dead: 2 ranges" in waited.stdout

    def finished():
        record = read_run(client, cfg, "run-dead")
        return record is not None and record.finished and client.xlen(cfg.dead_letter_stream) == 2

    wait_until(finished, 60, what="the run to finish, one range dead")
    record = read_run(client, cfg, "run-dead")
    assert record is not None and list(record.done) == [1] and list(record.dead) == [0]
    assert record.dead[0]["reason"] == "failed 3 times"
    assert "dest9" in record.dead[0]["error"]
    letters = client.xrange(cfg.dead_letter_stream)
    reasons = sorted(f[b"reason"].decode() for _, f in letters)
    assert reasons == ["bad message", "failed 3 times"]
    (bad,) = [f for _, f in letters if f[b"reason"] == b"bad message"]
    assert b"'index' field is 'many'" in bad[b"error"]
    assert keys_in(b, dst) == {f"k{i}" for i in range(20) if f"k{i}" > "k1"}

    status = bucket_cli(ini, "runs", "run-dead")
    assert status.returncode == 0
    assert "range 0 (, 'k1']: dead: failed 3 times" in status.stdout
    assert "range 1 ('k1', ]: done: [dest1] copied" in status.stdout


def test_ranged_delete_is_refused(tmp_path, moto_servers, names, redis_url):
    a, b = moto_servers
    src, dst = unique_bucket("rsrc"), unique_bucket("rdst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    ini = ranged_ini(tmp_path, names, redis_url, source=(a, src), dests=[(b, dst)])
    done = bucket_cli(ini, "--enqueue", "--ranges", "--delete")
    assert done.returncode == 2
    assert "--ranges cannot delete" in done.stderr
    done = bucket_cli(ini, "--ranges", "4")
    assert done.returncode == 2 and "--ranges needs --enqueue" in done.stderr


def test_a_ranged_reconcile_from_ceph(tmp_path, ceph, moto_servers, names, redis_url, listeners):
    _, b = moto_servers
    src, dst = unique_bucket("rsrc"), unique_bucket("rdst")
    raw_client(ceph).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    keys = [f"obj/{i:04d}" for i in range(1200)]
    fill(ceph, src, keys, body=b"ceph")
    fill(b, dst, keys[300:], body=b"ceph")
    ini = ranged_ini(tmp_path, names, redis_url, source=(ceph, src), dests=[(b, dst)])
    fleet = [ListenerProcess(ini, tmp_path / f"l{i}.log").start() for i in range(3)]
    listeners.extend(fleet)
    done = bucket_cli(ini, "--enqueue", "--ranges", "6", "--prefix", "obj/", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("[dest1]")]
    assert "listed 1200, copied 300, skipped 900" in line and "failed 0" in line
    assert keys_in(b, dst) == set(keys)
    record = run_record(redis_url, names, run_id_of(done.stdout))
    assert record is not None and sorted(record.done) == list(range(record.count))
    assert record.count > 2
    # The work spread over the fleet: more than one listener reconciled ranges.
    assert sum(" reconciled in " in p.output() for p in fleet) >= 2


def test_wait_without_ranges_is_refused(tmp_path, moto_servers, names, redis_url):
    a, b = moto_servers
    ini = ranged_ini(tmp_path, names, redis_url, source=(a, "x-src"), dests=[(b, "x-dst")])
    done = bucket_cli(ini, "--wait")
    assert done.returncode == 2 and "--wait and --timeout go with --enqueue --ranges" in done.stderr


def test_listeners_stop_cleanly_with_ranges_wired(tmp_path, moto_servers, names, redis_url):
    a, b = moto_servers
    src, dst = unique_bucket("rsrc"), unique_bucket("rdst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    ini = ranged_ini(tmp_path, names, redis_url, source=(a, src), dests=[(b, dst)])
    listener = ListenerProcess(ini, tmp_path / "l.log").start()
    listener.signal(signal.SIGTERM)
    assert listener.wait() == 0


def test_a_ranged_reconcile_on_a_redis_cluster(
    tmp_path, moto_servers, names, redis_url, redis_cluster, listeners
):
    a, b = moto_servers
    src, dst = unique_bucket("rsrc"), unique_bucket("rdst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    keys = [f"c/{i:04d}" for i in range(2000)]
    with ThreadPoolExecutor(2) as both:
        for f in [both.submit(fill_moto, a, src, keys), both.submit(fill_moto, b, dst, keys[::2])]:
            f.result()
    ini = ranged_ini(
        tmp_path,
        names,
        redis_cluster.url,
        source=(a, src),
        dests=[(b, dst)],
        pubsub={"cluster": "true", "shards": "3"},
    )
    fleet = [ListenerProcess(ini, tmp_path / f"l{i}.log").start() for i in range(2)]
    listeners.extend(fleet)
    done = bucket_cli(ini, "--enqueue", "--ranges", "4", "--wait", "--timeout", "120")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("[dest1]")]
    assert "listed 2000, copied 1000, skipped 1000" in line and "failed 0" in line
    assert keys_in(b, dst) == set(keys)
    shown = json.loads(bucket_cli(ini, "runs", run_id_of(done.stdout), "--json").stdout)
    assert shown["open"] == [] and shown["dead"] == {} and len(shown["done"]) > 1
    # The streams are sharded, the ranges are not: a range entry that turns up on a shard's
    # stream (a dead letter requeued there) is moved to the one range stream, on another
    # slot, and done there.
    from s3s3.queue.redis_client import connect
    from s3s3.queue.shards import shard_configs

    cfg = dataclasses.replace(stream_config(names, redis_cluster.url), cluster=True, shards=3)
    client = connect(cfg)
    work = RangeWork("run-shard", 0, None, None, destinations=("dest1",))
    create_run(client, cfg, [work], meta={"source": "source", "destinations": [["dest1", dst]]})
    shard = shard_configs(cfg)[1]
    client.xadd(shard.stream, range_entry_fields(work))
    wait_until(
        lambda: (r := read_run(client, cfg, "run-shard")) is not None and r.finished,
        60,
        what="the range put on a shard's stream to be done",
    )
    record = read_run(client, cfg, "run-shard")
    assert record is not None and list(record.done) == [0]
    assert any("moved range entry" in p.output() for p in fleet)
    client.close()
