"""Helpers for the listener, stream and publish tests (no tests here).

- ``ListenerProcess``: ``python -m s3s3.scripts.listen`` as a subprocess with a temporary INI;
- ``PrivateRedis``: a ``redis-server`` of our own on a free port, for tests that stop it
  (the shared Redis is never restarted);
- ``TcpProxy``: a TCP forwarder that can be closed (connections refused and cut) and
  reopened on the same port, to take a destination away and bring it back;
- ``write_ini``, ``wait_until``, ``keys_in`` and the ``names`` fixture (unique channel,
  stream keys removed afterwards), ``stream_config`` (a stream-mode RedisConfig on them),
  ``stream_ini`` (a stream-mode INI on them), ``start_listener`` (a ListenerProcess
  started and handed to the ``listeners`` fixture) and ``listen_cli`` (a subcommand of
  s3s3listen run to its end).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from conftest import ROOT, raw_client
from redis_server import PrivateRedis  # noqa: F401  (re-exported for the listener tests)

from s3s3.config import RedisConfig
from servers._common import free_port

PYTHON = sys.executable


def wait_until(predicate, timeout_s: float = 30.0, interval_s: float = 0.05, what: str = ""):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)


def keys_in(info: dict, bucket: str) -> set[str]:
    client = raw_client(info)
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(o["Key"] for o in page.get("Contents", ()))
    return keys


def put_keys(info: dict, bucket: str, keys, body: bytes = b"x" * 4096) -> None:
    client = raw_client(info)
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=body)


class Names:
    """Unique Redis names for one test; the keys it creates are deleted afterwards."""

    def __init__(self) -> None:
        self.channel = f"t-{uuid.uuid4().hex[:10]}"
        tag = "{" + self.channel + "}"
        self.stream = f"s3s3:{tag}:stream"
        self.dead = f"s3s3:{tag}:dead"
        self.list_key = f"minio-{self.channel}"
        self.extra: list[str] = []

    def all_keys(self) -> list[str]:
        return [
            self.stream,
            self.dead,
            self.list_key,
            "{" + self.list_key + "}:s3s3-processing",
            *self.extra,
        ]


@pytest.fixture
def names(redis_url):
    n = Names()
    yield n
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(*n.all_keys())
        markers = list(client.scan_iter(match=f"{n.channel}=>*", count=1000))
        if markers:
            client.delete(*markers)
    finally:
        client.close()


def stream_config(names, url: str, **kw) -> RedisConfig:
    """The stream-mode Redis settings of a test's ``names`` (its channel, stream and dead
    letters) at ``url``, for producing entries or reading the stream as a listener would."""
    return RedisConfig(
        url=url,
        channel=names.channel,
        mode="stream",
        stream=names.stream,
        dead_letter_stream=names.dead,
        **kw,
    )


def endpoint_section(name: str, info: dict, bucket: str, **extra) -> str:
    lines = [
        f"[{name}]",
        f"bucket_name = {bucket}",
        f"endpoint_url = {info['endpoint_url']}",
        f"aws_access_key_id = {info['access_key']}",
        f"aws_secret_access_key = {info['secret_key']}",
        f"region = {info['region']}",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def write_ini(
    path: Path,
    *,
    source: tuple[dict, str],
    dests: list[tuple[dict, str]],
    channel: str,
    redis_url: str,
    mode: str = "pubsub",
    pubsub: dict | None = None,
    listen: dict | None = None,
    dest_extra: dict | None = None,
) -> Path:
    text = endpoint_section("source", *source)
    for i, (info, bucket) in enumerate(dests, 1):
        text += "\n" + endpoint_section(f"dest{i}", info, bucket, **(dest_extra or {}))
    ps = {
        "url": redis_url,
        "channel": channel,
        "mode": mode,
        "reclaim_idle": "3",
        "max_deliveries": "3",
        **(pubsub or {}),
    }
    text += "\n[pubsub]\n" + "".join(f"{k} = {v}\n" for k, v in ps.items())
    ls = {
        "workers": "8",
        "grace": "10",
        "summary_interval": "2",
        "retry_base": "0.05",
        "retry_max": "0.5",
        **(listen or {}),
    }
    text += "\n[listen]\n" + "".join(f"{k} = {v}\n" for k, v in ls.items())
    path.write_text(text)
    return path


def stream_ini(
    tmp_path: Path,
    names,
    redis_url: str,
    *,
    source: tuple[dict, str],
    dests: list[tuple[dict, str]],
    file_name: str = "s3s3.ini",
    **kw,
) -> Path:
    """:func:`write_ini` for a stream-mode listener on a test's ``names``, written to
    ``tmp_path / file_name``; ``kw`` are write_ini's other options."""
    return write_ini(
        tmp_path / file_name,
        source=source,
        dests=dests,
        channel=names.channel,
        redis_url=redis_url,
        mode="stream",
        **kw,
    )


class ListenerProcess:
    """One ``s3s3listen`` subprocess; its combined output goes to ``log_path``."""

    def __init__(
        self,
        ini: Path,
        log_path: Path,
        *,
        args: tuple[str, ...] = (),
        module: str = "s3s3.scripts.listen",
    ) -> None:
        self.ini = ini
        self.log_path = log_path
        self.args = args
        self.module = module
        self.proc: subprocess.Popen | None = None

    def start(self, *, ready: str | None = "listening on") -> ListenerProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", self.module, "--config", str(self.ini), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(ROOT),
                env=env,
            )
        if ready:
            self.wait_for(ready, timeout_s=30)
        return self

    def output(self, *, since_start: bool = False) -> str:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return (
            data[self._offset :].decode("utf-8", "replace")
            if since_start
            else data.decode("utf-8", "replace")
        )

    def wait_for(self, text: str, timeout_s: float = 30.0) -> None:
        def seen():
            if (
                self.proc is not None
                and self.proc.poll() is not None
                and text not in self.output(since_start=True)
            ):
                raise AssertionError(
                    f"listener exited ({self.proc.returncode}) before "
                    f"logging {text!r}:\n{self.output()[-4000:]}"
                )
            return text in self.output(since_start=True)

        try:
            wait_until(seen, timeout_s, what=repr(text))
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- listener output ---\n{self.output()[-4000:]}"
            ) from None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Tear-down: SIGTERM, then SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def listeners():
    """Collects ListenerProcess objects and stops whatever is still running at the end."""
    started: list[ListenerProcess] = []
    yield started
    for proc in started:
        proc.stop()


def start_listener(ini: Path, log_path: Path, listeners: list, **start) -> ListenerProcess:
    """Start s3s3listen on ``ini`` (its output in ``log_path``; ``start`` as
    :meth:`ListenerProcess.start` takes it) and add it to the ``listeners`` fixture's list,
    which stops what still runs at the end."""
    listener = ListenerProcess(ini, log_path).start(**start)
    listeners.append(listener)
    return listener


def listen_cli(ini: Path, *args: str) -> subprocess.CompletedProcess:
    """``s3s3listen --config INI ARGS...`` run to its end (a subcommand such as
    ``dead-letters list`` or ``status``), its output captured as text."""
    return subprocess.run(
        [PYTHON, "-m", "s3s3.scripts.listen", "--config", str(ini), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``close()`` refuses and cuts, ``open()`` resumes."""

    def __init__(
        self, target_port: int, *, delay_s: float = 0.0, upstream_timeout_s: float | None = 5.0
    ) -> None:
        self.target = ("127.0.0.1", target_port)
        self.delay_s = delay_s  # added before forwarding each chunk a client sends: a slow server
        # How long a read from the target may wait; None for a slow client whose request
        # body takes longer than that to be forwarded.
        self.upstream_timeout_s = upstream_timeout_s
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> TcpProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return self

    def close(self) -> None:
        with self._lock:
            sock, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(self.upstream_timeout_s)
            with self._lock:
                if self._listener is not sock:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b, delay in ((client, upstream, self.delay_s), (upstream, client, 0.0)):
                threading.Thread(target=self._pipe, args=(a, b, delay), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, delay_s: float) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if delay_s:
                    time.sleep(delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
