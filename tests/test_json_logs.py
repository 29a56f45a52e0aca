"""``[logging] format = json`` and ``--log-format``: every log line one JSON object, the
per-key lines with their fields, secrets redacted there too; text stays the default."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import uuid

import redis
from conftest import ROOT, raw_client, unique_bucket
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    PrivateRedis,
    keys_in,
    listeners,
    names,
    put_keys,
    wait_until,
    write_ini,
)

from s3s3.config import RedisConfig
from s3s3.queue.producer import add_entries

BODY = b"j" * 4096


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` as JSON; fails naming the first line that is not."""
    docs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n--- output ---\n{text}") from None
        assert isinstance(doc, dict), line
        assert {"time", "level", "logger", "message"} <= doc.keys(), line
        when = datetime.datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
        assert doc["time"].endswith("Z") and when.utcoffset() == datetime.timedelta(0)
        docs.append(doc)
    return docs


def test_listener_json_lines_carry_per_key_fields_and_no_secret(
    tmp_path, moto_servers, make_bucket, names, listeners
):
    a, b = moto_servers
    redis_secret = f"redis-pw-{uuid.uuid4().hex}"
    s3_secret = f"s3-secret-{uuid.uuid4().hex}"  # moto takes any secret key
    server = PrivateRedis(tmp_path / "redis", password=redis_secret, persistent=False).start()
    try:
        url = f"redis://:{redis_secret}@127.0.0.1:{server.port}/0"
        src = make_bucket(a, name="source").bucket
        dst = make_bucket(b, name="dest1").bucket
        # A key that holds the secret: redacted in the key field as in the message.
        keys = ["json/1", "json/2", f"json/{s3_secret}"]
        put_keys(a, src, keys, body=BODY)
        ini = write_ini(
            tmp_path / "s3s3.ini",
            source=({**a, "secret_key": s3_secret}, src),
            dests=[({**b, "secret_key": s3_secret}, dst)],
            channel=names.channel,
            mode="stream",
            redis_url=url,
        )
        with open(ini, "a") as f:
            f.write("\n[logging]\nformat = json\n")
        listener = ListenerProcess(ini, tmp_path / "listen.log").start()
        listeners.append(listener)
        cfg = RedisConfig(
            url=url, channel=names.channel, stream=names.stream, dead_letter_stream=names.dead
        )
        client = redis.Redis.from_url(url)
        entries = [{"key": k, "op": "copy"} for k in [*keys, "json/never-written"]]
        add_entries(client, cfg, entries)
        wait_until(lambda: set(keys) <= keys_in(b, dst), 30, what="the copies")
        listener.wait_for('"outcome": "missing"')
        listener.signal(15)
        assert listener.wait(30) == 0
        client.close()
    finally:
        server.stop()

    out = listener.output()
    assert redis_secret not in out and s3_secret not in out
    docs = json_lines(out)
    assert any("listening on stream" in d["message"] for d in docs)
    copied = [d for d in docs if d.get("outcome") == "copied"]
    assert sorted(d["key"] for d in copied) == ["json/***", "json/1", "json/2"]
    for d in copied:
        assert d["logger"] == "s3s3.listen" and d["level"] == "INFO"
        assert d["destination"] == "dest1"
        assert d["bytes"] == len(BODY) and d["size"] == len(BODY)
        assert isinstance(d["duration_s"], float) and d["duration_s"] >= 0
        assert d["results"] == {
            "dest1": {
                "outcome": "copied",
                "bytes": len(BODY),
                "duration_s": d["results"]["dest1"]["duration_s"],
            }
        }
        assert d["message"].startswith("copied key=")  # the text line, unchanged, as message
    (missing,) = [d for d in docs if d.get("outcome") == "missing"]
    assert (missing["key"], missing["destination"], missing["bytes"]) == (
        "json/never-written",
        "dest1",
        0,
    )


def bucket_ini(tmp_path, a, b, src, dst, *, secret: str, redis_url: str, log_format: str):
    def section(name, info, bucket):
        return (
            f"[{name}]\naws_access_key_id = testing\naws_secret_access_key = {secret}\n"
            f"bucket_name = {bucket}\nendpoint_url = {info['endpoint_url']}\n"
            f"region = {info['region']}\n"
        )

    path = tmp_path / "bucket.ini"
    path.write_text(
        section("source", a, src)
        + "\n"
        + section("dest1", b, dst)
        + f"\n[pubsub]\nurl = {redis_url}\n"
        + f"\n[bucket]\nlock = local\nlock_dir = {tmp_path}\n"
        + f"\n[logging]\nformat = {log_format}\n"
    )
    return path


def run(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_bucket_job_json_lines_carry_per_key_fields(tmp_path, moto_servers, redis_url):
    a, b = moto_servers
    src, dst = unique_bucket("src"), unique_bucket("dst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    for i in range(3):
        raw_client(a).put_object(Bucket=src, Key=f"k{i}", Body=BODY)
    secret = f"bucket-secret-{uuid.uuid4().hex}"
    ini = bucket_ini(
        tmp_path, a, b, src, dst, secret=secret, redis_url=redis_url, log_format="json"
    )
    done = run("s3s3.scripts.bucket", "--config", str(ini), "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stderr + done.stdout
    docs = json_lines(done.stderr)
    copied = [d for d in docs if d.get("outcome") == "copied"]
    assert sorted(d["key"] for d in copied) == ["k0", "k1", "k2"]
    assert all(d["destination"] == "dest1" and d["bytes"] == len(BODY) for d in copied)


def test_log_format_option_wins_over_the_ini_and_text_is_the_default(
    tmp_path, moto_servers, redis_url
):
    a, b = moto_servers
    for ini_format, option, want_json in (
        ("json", ["--log-format", "text"], False),
        ("text", ["--log-format", "json"], True),
        ("text", [], False),
    ):
        ini = bucket_ini(
            tmp_path,
            a,
            b,
            "src",
            "dst",
            secret="testing",
            redis_url=redis_url,
            log_format=ini_format,
        )
        done = run("s3s3.scripts.listen", "--config", str(ini), *option, "status", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        (line,) = [x for x in done.stderr.splitlines() if "configuration read from" in x]
        if want_json:
            doc = json_lines(line)[0]
            assert (doc["level"], doc["logger"]) == ("INFO", "s3s3")
            assert doc["message"] == f"configuration read from {ini}"
        else:
            assert line.endswith(f" INFO s3s3: configuration read from {ini}")
            assert not line.startswith("{")
