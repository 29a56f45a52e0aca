"""s3s3publish as a subprocess: stream and pub/sub modes, stdin, rejected keys, the bridge."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import redis
from conftest import ROOT
from test_listener_support import ListenerProcess, names, wait_until  # noqa: F401

INI = """\
[source]
bucket_name = src
endpoint_url = http://127.0.0.1:9
[dest1]
bucket_name = dst
endpoint_url = http://127.0.0.1:9
[pubsub]
url = {url}
channel = {channel}
mode = {mode}
"""


def ini(tmp_path, names, redis_url, mode="stream"):
    path = tmp_path / "s3s3.ini"
    path.write_text(INI.format(url=redis_url, channel=names.channel, mode=mode))
    return path


def publish(path, *args, stdin: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.publish", "--config", str(path), *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_stream_mode_keys_from_arguments_and_stdin(tmp_path, names, redis_url):
    path = ini(tmp_path, names, redis_url)
    first = publish(path, "a/1", "{}", "with space ")
    assert first.returncode == 0, first.stderr
    second = publish(path, "--delete", stdin="b/2\r\n\nb/3\n")
    assert second.returncode == 0, second.stderr
    r = redis.Redis.from_url(redis_url)
    assert [f for _, f in r.xrange(names.stream)] == [
        {b"key": b"a/1", b"op": b"copy"},
        {b"key": b"{}", b"op": b"copy"},
        {b"key": b"with space ", b"op": b"copy"},
        {b"key": b"b/2", b"op": b"delete"},
        {b"key": b"b/3", b"op": b"delete"},
    ]
    assert f"announced 3 keys on {names.stream}" in first.stderr


def test_rejected_keys_exit_1_and_the_rest_are_published(tmp_path, names, redis_url):
    result = publish(ini(tmp_path, names, redis_url), "ok", "k" * 1025)
    assert result.returncode == 1
    assert "not announced: key of 1,025 bytes is over the 1,024-byte S3 limit" in result.stderr
    assert "announced 1 keys" in result.stderr and "(1 rejected)" in result.stderr
    r = redis.Redis.from_url(redis_url)
    assert [f[b"key"] for _, f in r.xrange(names.stream)] == [b"ok"]


def test_pubsub_mode_publishes_2015_messages(tmp_path, names, redis_url):
    r = redis.Redis.from_url(redis_url)
    sub = r.pubsub()
    sub.subscribe(names.channel)
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    result = publish(ini(tmp_path, names, redis_url, mode="pubsub"), "plain/key", "[1]")
    assert result.returncode == 0, result.stderr
    got = [sub.get_message(timeout=5)["data"] for _ in range(2)]
    assert got[0] == b"plain/key"  # exactly what the 2015 listener expected
    wrapped = json.loads(got[1])  # a key that would read as JSON goes as a one-record event
    assert wrapped["Records"][0]["s3"]["object"]["key"] == "%5B1%5D"
    sub.close()


def test_pubsub_mode_warns_when_nobody_listens(tmp_path, names, redis_url):
    result = publish(ini(tmp_path, names, redis_url, mode="pubsub"), "lost/key")
    assert result.returncode == 0
    assert "no listener is subscribed to channel" in result.stderr


def test_unreachable_redis_is_exit_2(tmp_path, names):
    path = tmp_path / "s3s3.ini"
    path.write_text(INI.format(url="redis://127.0.0.1:9/0", channel=names.channel, mode="stream"))
    result = publish(path, "k")
    assert result.returncode == 2
    assert "Redis at redis://127.0.0.1:9/0: ConnectionError" in result.stderr


def test_bridge_moves_published_messages_into_the_stream(tmp_path, names, redis_url):
    path = ini(tmp_path, names, redis_url)
    bridge = ListenerProcess(
        path, tmp_path / "bridge.log", args=("--bridge",), module="s3s3.scripts.publish"
    ).start(ready="bridging channel")
    try:
        r = redis.Redis.from_url(redis_url)
        event = json.dumps(
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "a+b"}}}]}
        )
        for message in (b"plain/key", event.encode(), b"\xff"):
            assert r.publish(names.channel, message) == 1
        wait_until(lambda: r.xlen(names.stream) == 3, 15, what="three bridged entries")
        assert [f for _, f in r.xrange(names.stream)] == [
            {b"message": b"plain/key"},
            {b"message": event.encode()},
            {b"message": b"\xff"},
        ]
        bridge.signal(signal.SIGTERM)
        assert bridge.wait() == 0
        assert "bridge stopped: 3 messages added" in bridge.output()
    finally:
        bridge.stop()


def test_publish_keys_function_in_both_modes(names, redis_url):
    from s3s3.config import RedisConfig
    from s3s3.queue.producer import publish_keys

    r = redis.Redis.from_url(redis_url)
    cfg = RedisConfig(
        url=redis_url,
        channel=names.channel,
        mode="stream",
        stream=names.stream,
        dead_letter_stream=names.dead,
    )
    assert publish_keys(r, cfg, iter(["x", "y"])) == 2
    assert r.xlen(names.stream) == 2
    received = []
    sub = r.pubsub()
    sub.subscribe(names.channel)
    sub.get_message(timeout=5)
    thread = threading.Thread(
        target=lambda: received.extend(sub.get_message(timeout=5)["data"] for _ in range(1))
    )
    thread.start()
    assert publish_keys(r, cfg, ["z"], mode="pubsub") == 1
    thread.join(10)
    assert received == [b"z"]
    sub.close()
