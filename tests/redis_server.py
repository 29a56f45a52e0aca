"""A redis-server of the tests' own on a free port: the session's shared one, and private
ones for tests that stop, restart or password-protect Redis (6379 is never touched)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from servers._common import free_port, wait_for_port


class PrivateRedis:
    """A redis-server of our own; ``persistent`` (the default) turns the append-only file on,
    so a restart keeps the stream."""

    def __init__(
        self, workdir: Path, *, password: str | None = None, persistent: bool = True
    ) -> None:
        self.persistent = persistent
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                *(
                    ["--appendonly", "yes", "--appendfsync", "always"]
                    if self.persistent
                    else ["--appendonly", "no"]
                ),
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_for_port("127.0.0.1", self.port, 15.0, proc=self.proc)
        client = self.client()
        _wait_for_ping(client, 15.0)
        client.close()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, password=self.password)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _wait_for_ping(client: redis.Redis, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _ping(client):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer PING within {timeout_s}s")
        time.sleep(0.05)
