"""No input stops replication: hostile messages fed to a running s3s3listen, in each mode.

Each test starts a listener subprocess (moto servers, the session's Redis), sends every
class of malformed message below, then announces good keys, and checks that the good keys
replicate, that the listener is still running with no traceback in its log, that every bad
message was reported (pub/sub: logged and counted, since pub/sub keeps nothing) or
dead-lettered with its reason (stream). Also here: ``s3s3publish`` over keys that used to
make it print a traceback.

Decisions these tests pin: a message nested deeper than 32 levels is not JSON (a 1,000-byte
key of ``[`` is a legal key and replicates); 10,000 records do not fit in the 256 KiB message
limit, 2,000 records for one key do and cost one or two jobs; NUL and control characters
are legal in keys (S3 allows any UTF-8, moto takes them) and are passed on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import redis
from conftest import ROOT
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    keys_in,
    listeners,
    names,
    put_keys,
    wait_until,
    write_ini,
)


def record(key, *, event="ObjectCreated:Put", **extra) -> dict:
    rec = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event,
        "s3": {"object": {"key": key}},
    }
    rec.update(extra)
    return rec


def event(*records) -> bytes:
    return json.dumps({"Records": list(records)}, separators=(",", ":")).encode()


def with_s3(s3) -> bytes:
    return event({"eventName": "ObjectCreated:Put", "eventSource": "aws:s3", "s3": s3})


#: (class, message): every one is a bad message, in either mode.
HOSTILE: list[tuple[str, bytes]] = [
    (
        "eventSource a list (the issue's reproducer)",
        b'{"Records":[{"eventName":"ObjectCreated:Put","eventSource":["aws:s3"],'
        b'"s3":{"object":{"key":"k"}}}]}',
    ),
    ("eventSource an object", event(record("k", eventSource={"a": 1}))),
    ("eventName a number", event(record("k", event=7))),
    ("eventName null", event(record("k", event=None))),
    ("key a number", event(record(5))),
    ("key a list", event(record(["k"]))),
    ("key null", event(record(None))),
    ("key empty", event(record(""))),
    (
        "key a lone surrogate via \\ud800",
        b'{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"a\\ud800"}}}]}',
    ),
    ("key in an event over 1,024 bytes", event(record("k" * 1025))),
    ("key in an event that does not decode to UTF-8", event(record("bad%FF"))),
    ("s3 not an object", with_s3([1, 2])),
    ("object not an object", with_s3({"object": "k"})),
    ("bucket a list", with_s3({"object": {"key": "k"}, "bucket": ["src"]})),
    ("bucket name a list", with_s3({"object": {"key": "k"}, "bucket": {"name": ["src"]}})),
    ("nested [ 100,000 deep", b"[" * 100_000),
    ("nested { 50,000 deep", b'{"a":' * 50_000),
    ("nested [{ 40,000 deep", b"[{" * 40_000),
    ("plain key over 1,024 bytes", b"k" * 1025),
    ("message over the size limit", b"x" * (300 * 1024)),
    ("invalid UTF-8", b"\xff\xfe not utf-8"),
    ("empty message", b""),
    ("Records a string", b'{"Records":"x"}'),
    ("Records empty", b'{"Records":[]}'),
    ("Records of numbers", b'{"Records":[1,2,3]}'),
    ("MinIO access list with a non-list Event", b'[{"Event":{"a":1},"EventTime":"t"}]'),
    ("MinIO access list with no events", b'[{"Event":[],"EventTime":"t"}]'),
    ("a huge integer", b'{"Records":[' + b"9" * 200_000 + b"]}"),
    ("NaN", b'{"Records":NaN}'),
    (
        "Infinity as a key",
        b'{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":-Infinity}}}]}',
    ),
    ("10,000 records (over the size limit)", event(*[record("many")] * 10_000)),
    ("JSON of unknown shape", b'{"hello":"world"}'),
    ("a JSON list of strings", b'["a","b"]'),
]

#: (class, fields): stream entries that are bad whatever their message.
HOSTILE_ENTRIES: list[tuple[str, dict]] = [
    ("neither key nor message", {"foo": "bar"}),
    ("op unknown", {"key": "good/1", "op": "move"}),
    ("op not UTF-8", {"key": "good/1", "op": b"\xff\xfe"}),
    ("op huge", {"key": "good/1", "op": "x" * 100_000}),
    ("key field not UTF-8", {"key": b"\xff"}),
    ("key field empty", {"key": ""}),
    ("key field a surrogate in CESU-8", {"key": b"a\xed\xa0\x80"}),
    ("key field over 1,024 bytes", {"key": "k" * 1025}),
]

GOOD = ["good/1", "good/2", "[" * 1000, "good/nul\x00key", "good/many"]
#: One message of 2,000 records for one key (228 KB): under the size limit, so accepted.
MANY = event(*[record("good/many")] * 2000)


def _setup(tmp_path, moto_servers, make_bucket, names, redis_url, mode, **pubsub):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest").bucket
    put_keys(a, src, GOOD + ["good/minio", "good/attempts"], body=b"hostile")
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, src),
        dests=[(b, dst)],
        channel=names.channel,
        redis_url=redis_url,
        mode=mode,
        pubsub=pubsub,
    )
    return b, dst, ini


def _healthy_log(listener: ListenerProcess) -> str:
    out = listener.output()
    assert "Traceback" not in out, out[-6000:]
    assert "crashed" not in out
    # Every log line quotes hostile input through a preview: no line floods the log.
    longest = max(len(line) for line in out.splitlines())
    assert longest < 3000, f"a log line of {longest} characters"
    return out


def test_hostile_messages_on_pubsub(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    assert len(HOSTILE) >= 20
    b, dst, ini = _setup(tmp_path, moto_servers, make_bucket, names, redis_url, "pubsub")
    listener = ListenerProcess(ini, tmp_path / "listen.log").start(ready="listening on pub/sub")
    listeners.append(listener)
    r = redis.Redis.from_url(redis_url)
    for _, message in HOSTILE:
        assert r.publish(names.channel, message) == 1
    for key in GOOD[:-1]:
        assert r.publish(names.channel, key.encode()) == 1
    assert r.publish(names.channel, MANY) == 1
    wait_until(lambda: keys_in(b, dst) == set(GOOD), 60, what="the good keys at the destination")
    # Pub/sub keeps nothing, so a bad message can only be reported: one line each, counted.
    wait_until(
        lambda: listener.output().count("bad message on channel") == len(HOSTILE),
        20,
        what=f"{len(HOSTILE)} bad messages reported",
    )
    assert listener.proc.poll() is None
    out = _healthy_log(listener)
    assert "Records[0]: 'eventSource' is a list, not a string" in out
    assert "message nests brackets deeper than 32 levels" in out
    assert "Records[0]: key is not UTF-8: a lone surrogate at character 1" in out
    # 2,000 events for one key: at most two jobs (one may start before the rest arrive).
    assert 1 <= len([line for line in out.splitlines() if "key='good/many'" in line]) <= 2
    listener.signal(signal.SIGTERM)
    assert listener.wait() == 0
    summary = [line for line in listener.output().splitlines() if "summary:" in line][-1]
    assert f"{len(HOSTILE)} bad messages" in summary
    assert "5 copied" in summary and "0 failed" in summary
    r.close()


def test_hostile_messages_and_entries_on_the_stream(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    b, dst, ini = _setup(
        tmp_path, moto_servers, make_bucket, names, redis_url, "stream", list=names.list_key
    )
    listener = ListenerProcess(ini, tmp_path / "listen.log").start(ready="listening on stream")
    listeners.append(listener)
    r = redis.Redis.from_url(redis_url)
    bad_ids: dict[bytes, str] = {}
    # As the PUBLISH bridge would add them ...
    for what, message in HOSTILE:
        bad_ids[r.xadd(names.stream, {"message": message})] = what
    for what, fields in HOSTILE_ENTRIES:
        bad_ids[r.xadd(names.stream, fields)] = what
    # ... and as MinIO puts them on its list, which the listener moves into the stream.
    from_list = [
        b'[{"Event":"not a list","EventTime":"t"}]',
        b"[" * 100_000,
        b"\xff",
        b'[{"Event":[{"eventName":"s3:ObjectCreated:Put","eventSource":["minio:s3"],'
        b'"s3":{"object":{"key":"x"}}}],"EventTime":"t"}]',
    ]
    r.rpush(names.list_key, *from_list)
    r.rpush(names.list_key, json.dumps([{"Event": [record("good/minio")], "EventTime": "t"}]))
    for key in GOOD[:-1]:
        r.xadd(names.stream, {"key": key, "op": "copy"})
    r.xadd(names.stream, {"message": MANY})
    # A hostile attempt count does not make a good key bad.
    r.xadd(names.stream, {"key": "good/attempts", "op": "copy", "attempts": "9" * 100_000})
    everything = set(GOOD) | {"good/minio", "good/attempts"}
    wait_until(lambda: keys_in(b, dst) == everything, 60, what="the good keys at the destination")
    expected = len(bad_ids) + len(from_list)
    wait_until(lambda: r.xlen(names.dead) == expected, 20, what=f"{expected} dead letters")
    # Every bad entry is a dead letter, at once (first delivery), with the reason and why.
    letters = r.xrange(names.dead)
    by_original = {f[b"original_id"]: f for _, f in letters}
    for entry_id, what in bad_ids.items():
        letter = by_original.get(entry_id)
        assert letter is not None, f"{what}: not dead-lettered"
        assert letter[b"reason"] == b"bad message", what
        assert letter[b"error"], what
    moved = sorted(f[b"message"] for _, f in letters if f[b"original_id"] not in bad_ids)
    assert moved == sorted(from_list)
    wait_until(lambda: r.xpending(names.stream, "s3s3")["pending"] == 0, 20, what="nothing pending")
    assert listener.proc.poll() is None
    out = _healthy_log(listener)
    assert out.count("bad message in entry") == expected
    assert "'op' field is not UTF-8 (starts b'\\xff\\xfe')" in out
    listener.signal(signal.SIGTERM)
    assert listener.wait() == 0
    summary = [line for line in listener.output().splitlines() if "summary:" in line][-1]
    assert f"{expected} bad messages" in summary and f"{expected} dead-lettered" in summary
    assert "0 failed" in summary
    r.close()


# --------------------------------------------------------------------------- s3s3publish


def publish(ini, *args, stdin: bytes | None = None):
    return subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.publish", "--config", str(ini), *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_publish_a_thousand_byte_key_of_brackets_and_it_replicates(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    # It died with RecursionError in looks_like_event (Python 3.10 and 3.11 recurse less
    # deeply than 3.13 before giving up).
    key = "[" * 1000
    b, dst, ini = _setup(tmp_path, moto_servers, make_bucket, names, redis_url, "pubsub")
    listener = ListenerProcess(ini, tmp_path / "listen.log").start(ready="listening on pub/sub")
    listeners.append(listener)
    for mode in ("pubsub", "stream"):
        result = publish(ini, "--mode", mode, key)
        assert result.returncode == 0, result.stderr
        assert b"Traceback" not in result.stderr
    wait_until(lambda: key in keys_in(b, dst), 30, what="the key of brackets")
    r = redis.Redis.from_url(redis_url)
    assert [f[b"key"] for _, f in r.xrange(names.stream)] == [key.encode()]
    r.close()


def test_publish_names_each_bad_key_in_one_line_and_never_tracebacks(tmp_path, names, redis_url):
    ini = tmp_path / "s3s3.ini"
    ini.write_text(
        f"[source]\nbucket_name = src\nendpoint_url = http://127.0.0.1:9\n"
        f"[dest1]\nbucket_name = dst\nendpoint_url = http://127.0.0.1:9\n"
        f"[pubsub]\nurl = {redis_url}\nchannel = {names.channel}\nmode = stream\n"
    )
    r = redis.Redis.from_url(redis_url)
    # Arguments: Python hands a non-UTF-8 argument over as lone surrogates, which redis-py
    # and the pub/sub encoder refused with a traceback.
    for mode in ("stream", "pubsub"):
        result = subprocess.run(
            [
                sys.executable.encode(),
                b"-m",
                b"s3s3.scripts.publish",
                b"--config",
                str(ini).encode(),
                b"--mode",
                mode.encode(),
                b"ok/arg",
                b"a\xffb",
                b"k" * 1025,
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 1, result.stderr
        err = result.stderr.decode("utf-8", "replace")
        assert "Traceback" not in err
        assert "not announced: key b'a\\xffb' is not UTF-8" in err
        assert "not announced: key of 1,025 bytes is over the 1,024-byte S3 limit" in err
        assert "announced 1 keys" in err and "(2 rejected)" in err
    # Standard input: read as bytes, so a line that is not UTF-8 is one rejected key.
    result = publish(ini, stdin=b"ok/1\n\xff\xfe bad\r\n\nwith\rcarriage\n" + b"[" * 1000 + b"\n")
    assert result.returncode == 1, result.stderr
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "not announced" in line] == [
        line for line in err.splitlines() if "ERROR" in line
    ]
    assert "not announced: key b'\\xff\\xfe bad' is not UTF-8" in err
    assert [f[b"key"] for _, f in r.xrange(names.stream)] == [
        b"ok/arg",
        b"ok/1",
        b"with\rcarriage",
        b"[" * 1000,
    ]
    r.close()
