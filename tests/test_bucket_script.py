"""``s3s3bucket`` run as a subprocess with a temporary INI, against moto servers and Redis."""

from __future__ import annotations

import argparse
import io
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import ROOT, raw_client, unique_bucket
from redis_server import PrivateRedis

from s3s3.bucketjob.lock import FileLock, RedisLock, job_lock, lock_path, redis_key
from s3s3.config import BucketConfig, EndpointConfig, RedisConfig
from s3s3.queue.redis_client import connect
from s3s3.scripts.bucket import Lifecycle, serve_supervisord


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def endpoint_section(name: str, url: str, bucket: str, **extra) -> str:
    lines = [
        f"[{name}]",
        "aws_access_key_id = testing",
        "aws_secret_access_key = testing",
        f"bucket_name = {bucket}",
        f"endpoint_url = {url}",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def write_ini(
    path: Path,
    src: tuple[str, str],
    dests: list[tuple],
    *,
    lock_dir: Path,
    redis_url: str,
    **bucket,
) -> Path:
    text = endpoint_section("source", *src)
    for name, url, bucket_name, *extra in dests:
        text += "\n" + endpoint_section(name, url, bucket_name, **(extra[0] if extra else {}))
    text += f"\n[pubsub]\nurl = {redis_url}\n"
    settings = {"lock": "local", "lock_dir": str(lock_dir), **bucket}
    text += "\n[bucket]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    path.write_text(text)
    return path


def s3s3bucket(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.bucket", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        **kwargs,
    )


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def buckets(moto_servers, tmp_path):
    """A source with five keys on one server, an empty destination on the other."""
    a, b = moto_servers
    src, dst = unique_bucket("src"), unique_bucket("dst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    for i in range(5):
        raw_client(a).put_object(Bucket=src, Key=f"k{i}", Body=b"v%d" % i)
    return a, b, src, dst


def keys(info: dict, bucket: str) -> list[str]:
    return [o["Key"] for o in raw_client(info).list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_failing_destination_exits_1_and_the_other_completes(buckets, tmp_path, redis_url):
    a, b, src, dst = buckets
    ini = write_ini(
        tmp_path / "s3s3.ini",
        (a["endpoint_url"], src),
        [
            ("dest1", b["endpoint_url"], dst),
            ("dest2", closed_port_url(), "nowhere", {"max_attempts": 1, "connect_timeout": 1}),
        ],
        lock_dir=tmp_path,
        redis_url=redis_url,
    )
    result = s3s3bucket("--config", str(ini), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert keys(b, dst) == [f"k{i}" for i in range(5)]
    assert (
        f"[dest1] s3://{dst}: listed 5, copied 5, skipped 0, deleted 0, failed 0, "
        "10 bytes" in result.stderr
    )
    assert (
        "[dest2] s3://nowhere: listed 5, copied 0, skipped 0, deleted 0, failed 5" in result.stderr
    )
    assert (
        "[dest2] s3://nowhere unreachable: HeadBucket s3://nowhere on [dest2] failed"
        in result.stderr
    )
    assert result.stdout == ""


def test_an_overlapping_run_is_refused_with_exit_2(buckets, tmp_path, redis_url):
    a, b, src, dst = buckets
    ini = write_ini(
        tmp_path / "s3s3.ini",
        (a["endpoint_url"], src),
        [("dest1", b["endpoint_url"], dst)],
        lock_dir=tmp_path,
        lock="redis",
        redis_url=redis_url,
    )
    client = redis.Redis.from_url(redis_url)
    source = EndpointConfig(name="source", bucket=src, endpoint_url=a["endpoint_url"])
    held = RedisLock(client, redis_key(source), ttl_s=60)
    held.acquire()
    try:
        result = s3s3bucket("--config", str(ini), cwd=tmp_path)
    finally:
        held.release()
    assert result.returncode == 2
    assert (
        f"another s3s3bucket run holds the lock for s3://{src} on {a['endpoint_url']} "
        f"(Redis key {redis_key(source)}, holder {held.token}"
    ) in result.stderr
    assert keys(b, dst) == []

    # The same with the local lock another process on this host would hold.
    write_ini(
        ini,
        (a["endpoint_url"], src),
        [("dest1", b["endpoint_url"], dst)],
        lock_dir=tmp_path,
        lock="local",
        redis_url=redis_url,
    )
    local = FileLock(lock_path(source, str(tmp_path)))
    local.acquire()
    try:
        result = s3s3bucket("--config", str(ini), cwd=tmp_path)
    finally:
        local.release()
    assert result.returncode == 2
    assert "another s3s3bucket run holds the lock" in result.stderr
    assert keys(b, dst) == []

    result = s3s3bucket("--config", str(ini), cwd=tmp_path)  # free again
    assert result.returncode == 0, result.stderr
    assert f"holding local lock {lock_path(source, str(tmp_path))}" in result.stderr
    assert len(keys(b, dst)) == 5


def test_a_run_on_the_same_host_is_refused_while_redis_is_down(buckets, tmp_path):
    a, b, src, dst = buckets
    server = PrivateRedis(tmp_path / "redis", persistent=False).start()
    ini = write_ini(
        tmp_path / "s3s3.ini",
        (a["endpoint_url"], src),
        [("dest1", b["endpoint_url"], dst)],
        lock_dir=tmp_path,
        lock="auto",
        redis_url=server.url,
    )
    source = EndpointConfig(name="source", bucket=src, endpoint_url=a["endpoint_url"])
    cfg = BucketConfig(lock="auto", lock_dir=str(tmp_path))
    try:
        # Run 1 takes its locks while Redis answers; then Redis goes away.
        with job_lock(source, cfg, lambda: connect(RedisConfig(url=server.url))) as held:
            assert isinstance(held, RedisLock)
            server.stop()
            result = s3s3bucket("--config", str(ini), cwd=tmp_path)
    finally:
        server.stop()
    assert result.returncode == 2, result.stderr
    assert (
        f"another s3s3bucket run holds the lock for s3://{src} on {a['endpoint_url']} "
        f"(file {lock_path(source, str(tmp_path))}, holder "
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert keys(b, dst) == []


@pytest.mark.parametrize("where", ["url", "url-query", "password-key"])
def test_a_wrong_redis_password_is_fatal_and_never_printed(buckets, tmp_path, where):
    a, b, src, dst = buckets
    server = PrivateRedis(tmp_path / "redis", password="right-one", persistent=False).start()
    try:
        url = {
            "url": f"redis://:hunter2-wrong@127.0.0.1:{server.port}/0",
            "url-query": f"{server.url}?password=hunter2-wrong",
        }.get(where, server.url)
        ini = write_ini(
            tmp_path / "s3s3.ini",
            (a["endpoint_url"], src),
            [("dest1", b["endpoint_url"], dst)],
            lock_dir=tmp_path,
            lock="auto",
            redis_url=url,
        )
        if where == "password-key":
            ini.write_text(
                ini.read_text().replace(
                    f"url = {url}\n", f"url = {url}\npassword = hunter2-wrong\n"
                )
            )
        result = s3s3bucket("--config", str(ini), "-vv", cwd=tmp_path)
    finally:
        server.stop()
    assert result.returncode == 2, result.stderr
    shown = {
        "url": f"redis://:***@127.0.0.1:{server.port}/0",
        "url-query": f"{server.url}?password=***",
    }.get(where, server.url)
    assert (f"Redis at {shown} refused s3s3: AuthenticationError: ") in result.stderr
    assert "not falling back to a local lock" in result.stderr
    assert "using a local lock" not in result.stderr
    assert "hunter2-wrong" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert keys(b, dst) == []


def test_lock_redis_with_redis_down_exits_2(buckets, tmp_path):
    a, b, src, dst = buckets
    server = PrivateRedis(tmp_path / "redis", persistent=False)  # never started: nobody there
    ini = write_ini(
        tmp_path / "s3s3.ini",
        (a["endpoint_url"], src),
        [("dest1", b["endpoint_url"], dst)],
        lock_dir=tmp_path,
        lock="redis",
        redis_url=server.url,
    )
    result = s3s3bucket("--config", str(ini), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "lock = redis, but Redis does not answer (ConnectionError: " in result.stderr
    assert "Traceback" not in result.stderr
    assert keys(b, dst) == []


def test_dry_run_prints_the_plan_on_stdout_and_flags_override_the_ini(buckets, tmp_path, redis_url):
    a, b, src, dst = buckets
    raw_client(b).put_object(Bucket=dst, Key="k0", Body=b"v0")
    raw_client(b).put_object(Bucket=dst, Key="old", Body=b"x")
    ini = write_ini(
        tmp_path / "s3s3.ini",
        (a["endpoint_url"], src),
        [("dest1", b["endpoint_url"], dst)],
        lock_dir=tmp_path,
        redis_url=redis_url,
        include="k1",
        delete="False",
        max_delete_fraction="1.0",
    )
    result = s3s3bucket(
        "--config",
        str(ini),
        "--dry-run",
        "--delete",
        "--include",
        "k*",
        "--include",
        "old",
        "--exclude",
        "k4",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "copy [dest1] k1 (new, 2 bytes)",
        "copy [dest1] k2 (new, 2 bytes)",
        "copy [dest1] k3 (new, 2 bytes)",
        "delete [dest1] old (not in the source)",
    ]
    assert "dry run: [dest1]" in result.stderr and "would be copied 3" in result.stderr
    assert keys(b, dst) == ["k0", "old"]


def test_a_refused_deletion_exits_2(buckets, tmp_path, redis_url):
    a, b, src, dst = buckets
    for i in range(8):
        raw_client(b).put_object(Bucket=dst, Key=f"z{i}", Body=b"x")
    ini = write_ini(
        tmp_path / "s3s3.ini",
        (a["endpoint_url"], src),
        [("dest1", b["endpoint_url"], dst)],
        lock_dir=tmp_path,
        delete="True",
        redis_url=redis_url,
    )
    result = s3s3bucket("--config", str(ini), cwd=tmp_path)
    assert result.returncode == 2
    assert (
        "refusing to delete 8 of the 8 keys in scope (more than max_delete_fraction = 0.5)"
        in result.stderr
    )
    assert len(keys(b, dst)) == 13  # copied, nothing deleted


def test_a_configuration_error_exits_2_naming_file_section_and_key(tmp_path):
    ini = tmp_path / "s3s3.ini"
    ini.write_text(
        endpoint_section("source", "http://127.0.0.1:9", "b")
        + endpoint_section("dest1", "http://127.0.0.1:9", "c")
        + "[bucket]\nworkers = many\n"
    )
    result = s3s3bucket("--config", str(ini), cwd=tmp_path)
    assert result.returncode == 2
    assert (
        f"configuration error: value 'many' for 'workers' is not a valid integer in "
        f"section 'bucket' (file: '{ini}')"
    ) in result.stderr


# --------------------------------------------------------------------------- supervisord


class Listener:
    """Drives ``s3s3bucket --supervisord`` the way supervisord does, with timeouts."""

    def __init__(self, ini: Path, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s3s3.scripts.bucket", "--config", str(ini), "--supervisord"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=_env(),
        )
        self.serial = 0

    def read(self, count: int, timeout_s: float = 90.0) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while len(data) < count:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"read {data!r}, wanted {count} bytes")
            chunk = os.read(fd, count - len(data))
            if not chunk:
                raise EOFError(f"read {data!r}, wanted {count} bytes")
            data += chunk
        return data

    def send(self, event: str, payload: str) -> None:
        self.serial += 1
        body = payload.encode()
        header = (
            f"ver:3.0 server:supervisor serial:{self.serial} pool:s3s3bucket "
            f"poolserial:{self.serial} eventname:{event} len:{len(body)}\n"
        )
        self.proc.stdin.write(header.encode() + body)
        self.proc.stdin.flush()


def test_supervisord_event_listener_protocol(buckets, tmp_path, redis_url):
    a, b, src, dst = buckets
    ini = write_ini(
        tmp_path / "s3s3.ini",
        (a["endpoint_url"], src),
        [("dest1", b["endpoint_url"], dst)],
        lock_dir=tmp_path,
        redis_url=redis_url,
    )
    listener = Listener(ini, tmp_path)
    try:
        assert listener.read(6) == b"READY\n"
        listener.send("TICK_60", "when:1700000000")
        assert listener.read(11) == b"RESULT 2\nOK"
        assert keys(b, dst) == [f"k{i}" for i in range(5)]

        # The INI is read again for each tick: a broken one fails that tick only.
        assert listener.read(6) == b"READY\n"
        ini.write_text(ini.read_text().replace("lock = local", "lock = sometimes"))
        listener.send("TICK_60", "when:1700000060")
        assert listener.read(13) == b"RESULT 4\nFAIL"

        assert listener.read(6) == b"READY\n"
        listener.proc.send_signal(signal.SIGTERM)  # supervisord stopping an idle listener
        assert listener.proc.wait(timeout=30) == 0
        assert listener.proc.stdout.read() == b""
        stderr = listener.proc.stderr.read().decode()
    finally:
        if listener.proc.poll() is None:
            listener.proc.kill()
            listener.proc.wait()
        for stream in (listener.proc.stdin, listener.proc.stdout, listener.proc.stderr):
            if not stream.closed:
                stream.close()
    assert "TICK_60: starting a run" in stderr
    assert f"[dest1] s3://{dst}: listed 5, copied 5" in stderr
    assert "value 'sometimes' for 'lock' is not one of auto, local, none, redis" in stderr
    assert stderr.count("starting a run") == 2


def test_supervisord_events_other_than_ticks_are_acknowledged_without_a_run():
    payload = b"processname:x groupname:x from_state:STARTING"
    stdin = io.BytesIO(
        b"ver:3.0 server:supervisor serial:1 pool:s3s3bucket poolserial:1 "
        b"eventname:PROCESS_STATE_RUNNING len:%d\n" % len(payload) + payload
    )
    stdout = io.BytesIO()
    status = serve_supervisord(argparse.Namespace(), stdin, stdout, life=Lifecycle())
    # Acknowledged, READY again, then end of input (supervisord gone): a clean exit.
    assert (status, stdout.getvalue()) == (0, b"READY\nRESULT 2\nOKREADY\n")
