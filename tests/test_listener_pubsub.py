"""s3s3listen in compatible (pub/sub) mode, as a subprocess against real Redis and moto servers."""

from __future__ import annotations

import json
import signal

import redis
from conftest import raw_client
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    keys_in,
    listeners,
    names,
    put_keys,
    wait_until,
    write_ini,
)


def _setup(tmp_path, moto_servers, make_bucket, names, redis_url, **ini):
    a, b = moto_servers
    src = make_bucket(a, name="source")
    d1 = make_bucket(b, name="dest1")
    d2 = make_bucket(a, name="dest2")
    path = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, src.bucket),
        dests=[(b, d1.bucket), (a, d2.bucket)],
        channel=names.channel,
        redis_url=redis_url,
        **ini,
    )
    return (a, src.bucket), (b, d1.bucket), (a, d2.bucket), path


def test_published_key_is_replicated_to_two_destinations(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    (a, src), (b, d1), (a2, d2), ini = _setup(tmp_path, moto_servers, make_bucket, names, redis_url)
    raw_client(a).put_object(
        Bucket=src,
        Key="some/key",
        Body=b"hello 2015",
        ContentType="text/plain",
        Metadata={"owner": "lsst"},
    )
    listener = ListenerProcess(ini, tmp_path / "listen.log").start()
    listeners.append(listener)
    r = redis.Redis.from_url(redis_url)
    # Exactly what `redis-cli PUBLISH backup some/key` sends.
    assert r.publish(names.channel, "some/key") == 1
    wait_until(
        lambda: "some/key" in keys_in(b, d1) and "some/key" in keys_in(a2, d2),
        what="some/key at both destinations",
    )
    for info, bucket in ((b, d1), (a2, d2)):
        obj = raw_client(info).get_object(Bucket=bucket, Key="some/key")
        assert obj["Body"].read() == b"hello 2015"
        assert obj["ContentType"] == "text/plain"
        assert obj["Metadata"] == {"owner": "lsst"}
    # The 2015 marker key.
    wait_until(lambda: r.get(f"{names.channel}=>some/key") == b"True", 10, what="marker key")
    listener.wait_for("copied key='some/key' size=10 destinations=dest1,dest2")
    listener.signal(signal.SIGTERM)
    assert listener.wait() == 0


def test_bad_messages_are_reported_and_the_daemon_keeps_running(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    (a, src), (b, d1), (a2, d2), ini = _setup(tmp_path, moto_servers, make_bucket, names, redis_url)
    put_keys(a, src, ["good/key"])
    listener = ListenerProcess(ini, tmp_path / "listen.log").start()
    listeners.append(listener)
    r = redis.Redis.from_url(redis_url)
    bad = [
        b"",
        b"\xff\xfe not utf-8",
        b"\x00" + b"garbage" * (1024 * 1024 // 7),
        json.dumps({"hello": "world"}).encode(),
        b"absent/from/source",
    ]
    for message in bad:
        r.publish(names.channel, message)
    r.publish(names.channel, "good/key")
    wait_until(
        lambda: "good/key" in keys_in(b, d1) and "good/key" in keys_in(a2, d2),
        what="the good key after the bad ones",
    )
    listener.wait_for("missing key='absent/from/source'")
    out = listener.output()
    assert "bad message on channel" in out and ": empty message" in out
    assert "message is not UTF-8 (byte 0: b'\\xff'" in out
    assert "message of 1,048,57" in out and "over the 262,144-byte limit" in out
    assert "JSON of unknown shape: an object with keys 'hello'" in out
    assert listener.proc.poll() is None
    assert keys_in(b, d1) == {"good/key"}
    listener.signal(signal.SIGTERM)
    assert listener.wait() == 0
    summary = [line for line in listener.output().splitlines() if "summary:" in line][-1]
    assert "1 copied" in summary and "1 missing at source" in summary
    assert "4 bad messages" in summary


def test_s3_event_json_with_plus_and_encoded_slash(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    (a, src), (b, d1), (a2, d2), ini = _setup(tmp_path, moto_servers, make_bucket, names, redis_url)
    key = "dir/my file+x.txt"
    put_keys(a, src, [key])
    listener = ListenerProcess(ini, tmp_path / "listen.log").start()
    listeners.append(listener)

    def event(k, bucket, name="ObjectCreated:Put"):
        return json.dumps(
            {
                "Records": [
                    {
                        "eventVersion": "2.1",
                        "eventSource": "aws:s3",
                        "eventName": name,
                        "s3": {"bucket": {"name": bucket}, "object": {"key": k, "size": 4096}},
                    }
                ]
            }
        )

    r = redis.Redis.from_url(redis_url)
    r.publish(names.channel, event("dir%2Fmy+file%2Bx.txt", "another-bucket"))
    r.publish(names.channel, event("dir%2Fmy+file%2Bx.txt", src))
    wait_until(lambda: key in keys_in(b, d1) and key in keys_in(a2, d2), what=repr(key))
    out = listener.output()
    assert "bucket 'another-bucket' is not the source bucket" in out
    assert keys_in(b, d1) == {key}


def test_delete_propagation_when_switched_on(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    (a, src), (b, d1), (a2, d2), ini = _setup(
        tmp_path, moto_servers, make_bucket, names, redis_url, listen={"delete": "true"}
    )
    put_keys(b, d1, ["gone", "back"])
    put_keys(a2, d2, ["gone", "back"])
    put_keys(a, src, ["back"])  # re-created at the source since its delete event
    listener = ListenerProcess(ini, tmp_path / "listen.log").start()
    listeners.append(listener)

    def removed(k):
        return json.dumps(
            {
                "Records": [
                    {
                        "eventName": "s3:ObjectRemoved:Delete",
                        "eventSource": "minio:s3",
                        "s3": {"bucket": {"name": src}, "object": {"key": k}},
                    }
                ]
            }
        )

    r = redis.Redis.from_url(redis_url)
    r.publish(names.channel, removed("gone"))
    r.publish(names.channel, removed("back"))
    wait_until(
        lambda: keys_in(b, d1) == {"back"} and keys_in(a2, d2) == {"back"},
        what="'gone' deleted, 'back' kept",
    )
    listener.wait_for("deleted key='gone'")
    listener.wait_for("key='back'")
    assert raw_client(b).get_object(Bucket=d1, Key="back")["Body"].read() == b"x" * 4096


def test_deletes_are_ignored_by_default(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    (a, src), (b, d1), (a2, d2), ini = _setup(tmp_path, moto_servers, make_bucket, names, redis_url)
    put_keys(b, d1, ["kept"])
    listener = ListenerProcess(ini, tmp_path / "listen.log").start()
    listeners.append(listener)
    r = redis.Redis.from_url(redis_url)
    r.publish(
        names.channel,
        json.dumps(
            {"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "kept"}}}]}
        ),
    )
    listener.wait_for("ignored key='kept'")
    assert keys_in(b, d1) == {"kept"}


def test_missing_destination_bucket_is_fatal_at_start(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b = moto_servers
    src = make_bucket(a, name="source")
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, src.bucket),
        dests=[(b, "no-such-bucket-s3s3")],
        channel=names.channel,
        redis_url=redis_url,
    )
    listener = ListenerProcess(ini, tmp_path / "listen.log").start(ready=None)
    listeners.append(listener)
    assert listener.wait(60) == 2
    assert "fatal: HeadBucket s3://no-such-bucket-s3s3 on [dest1] failed" in listener.output()
