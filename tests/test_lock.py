"""The bucket-job lock: Redis (against the real Redis), local flock, and the choice between."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_server import PrivateRedis

from s3s3.bucketjob.lock import (
    FileLock,
    LockMode,
    LockUnavailable,
    NoLock,
    RedisLock,
    choose_lock,
    job_lock,
    lock_path,
    redis_key,
)
from s3s3.config import BucketConfig, EndpointConfig
from s3s3.errors import LockHeld, RedisFatal


@pytest.fixture
def client(redis_any):
    return redis_any  # each test runs on a single Redis and on a Redis Cluster


@pytest.fixture
def key(client):
    name = f"s3s3:test-lock:{{{uuid.uuid4().hex}}}"
    yield name
    client.delete(name)


def source(bucket: str | None = None) -> EndpointConfig:
    return EndpointConfig(
        name="source",
        bucket=bucket or f"b-{uuid.uuid4().hex[:8]}",
        endpoint_url="http://127.0.0.1:9",
    )


def closed_port_redis() -> redis.Redis:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # No retries: redis-py retries a refused connection with backoff by default.
    return redis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )


def quick_client(url: str) -> redis.Redis:
    """A client that gives up at once when Redis is gone, as the tests want."""
    return redis.Redis.from_url(url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


def test_a_held_redis_lock_refuses_a_second_holder_until_released(client, key):
    first = RedisLock(client, key, ttl_s=30, what="s3://b on X")
    first.acquire()
    try:
        second = RedisLock(client, key, ttl_s=30, what="s3://b on X")
        with pytest.raises(LockHeld) as caught:
            second.acquire()
        message = str(caught.value)
        assert message.startswith(
            f"another s3s3bucket run holds the lock for s3://b on X "
            f"(Redis key {key}, holder {first.token}, expires in "
        )
        assert message.endswith("; not starting")
        assert 0 < client.pttl(key) <= 30_000
    finally:
        first.release()
    assert client.get(key) is None
    second.acquire()
    second.release()


def test_release_never_deletes_a_lock_taken_over_by_another_run(client, key):
    mine = RedisLock(client, key, ttl_s=30)
    mine.acquire()
    client.set(key, "someone-else")  # as if ours had expired and another run took it
    mine.release()
    assert client.get(key) == b"someone-else"


def test_a_redis_lock_is_renewed_while_held(client, key):
    lock = RedisLock(client, key, ttl_s=1.2)
    lock.acquire()
    try:
        time.sleep(2.0)  # longer than the TTL: only renewals keep it
        assert client.get(key) == lock.token.encode()
        assert not lock.lost.is_set()
    finally:
        lock.release()
    assert client.get(key) is None


def test_a_lock_found_taken_by_another_run_is_reported_lost(client, key, caplog):
    lost = threading.Event()
    lock = RedisLock(client, key, ttl_s=1.2, lost=lost)
    lock.acquire()
    try:
        client.set(key, "another-run")
        assert lost.wait(3.0)
    finally:
        lock.release()
    assert client.get(key) == b"another-run"
    assert f"lost Redis lock {key}" in caplog.text


def test_a_file_lock_refuses_a_second_holder_until_released(tmp_path):
    path = tmp_path / "job.lock"
    first = FileLock(path, what="s3://b on X")
    first.acquire()
    second = FileLock(path, what="s3://b on X")
    with pytest.raises(
        LockHeld,
        match=r"another s3s3bucket run holds the lock for s3://b on "
        rf"X \(file {path}, holder .+:\d+:\w+\); not starting",
    ):
        second.acquire()
    first.release()
    second.acquire()
    second.release()
    assert path.exists()  # kept, so two runs can never lock two different files


def test_auto_uses_redis_when_it_answers(client, tmp_path):
    src = source()
    lock = choose_lock(src, BucketConfig(lock="auto", lock_dir=str(tmp_path)), lambda: client)
    assert isinstance(lock, RedisLock) and lock.key == redis_key(src)


def test_auto_falls_back_to_a_local_lock_when_redis_does_not_answer(tmp_path, caplog):
    src = source()
    cfg = BucketConfig(lock="auto", lock_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="s3s3.bucketjob.lock"):
        with job_lock(src, cfg, closed_port_redis) as lock:
            assert isinstance(lock, FileLock)
            assert lock.path == lock_path(src, str(tmp_path))
    assert "Redis does not answer (ConnectionError: " in caplog.text
    assert f"holding local lock {lock.path}" in caplog.text


def test_lock_redis_without_redis_is_an_error(tmp_path):
    with pytest.raises(
        LockUnavailable,
        match=r"lock = redis, but Redis does not answer "
        r"\(ConnectionError: ",
    ):
        choose_lock(source(), BucketConfig(lock="redis"), closed_port_redis)


def test_lock_local_and_none(client, tmp_path):
    src = source()
    assert isinstance(
        choose_lock(src, BucketConfig(lock="local", lock_dir=str(tmp_path)), lambda: client),
        FileLock,
    )
    assert isinstance(choose_lock(src, BucketConfig(lock="none"), lambda: client), NoLock)


def test_job_lock_is_per_source_bucket_and_released_after_the_block(client, tmp_path, caplog):
    cfg = BucketConfig(lock="auto", lock_dir=str(tmp_path))
    a, b = source(), source()
    try:
        with caplog.at_level(logging.INFO, logger="s3s3.bucketjob.lock"):
            with job_lock(a, cfg, lambda: client):
                with job_lock(b, cfg, lambda: client):  # another bucket: no conflict
                    pass
                with pytest.raises(LockHeld):
                    with job_lock(a, cfg, lambda: client):
                        pass
        assert f"holding Redis lock {redis_key(a)}" in caplog.text
        assert client.get(redis_key(a)) is None
    finally:
        client.delete(redis_key(a), redis_key(b))


def test_lock_modes_are_the_ini_values_and_say_whether_redis_is_asked():
    assert [m.value for m in LockMode] == ["auto", "redis", "local", "none"]
    assert LockMode("auto") is LockMode.AUTO and str(LockMode.REDIS) == "redis"
    assert [m for m in LockMode if m.wants_redis] == [LockMode.AUTO, LockMode.REDIS]


def test_the_redis_key_carries_one_hash_tag():
    key = redis_key(source("bucket"))
    assert key.count("{") == 1 and key.startswith("s3s3:lock:{") and key.endswith("}")
    assert redis_key(source("bucket")) == key
    assert redis_key(source("other")) != key


# ------------------------------------------------------------ the local lock is always held


def test_two_runs_on_one_host_never_overlap_when_redis_goes_away(tmp_path, caplog):
    server = PrivateRedis(tmp_path / "redis", persistent=False).start()
    src = source()
    cfg = BucketConfig(lock="auto", lock_dir=str(tmp_path))
    path = lock_path(src, str(tmp_path))
    try:
        with job_lock(src, cfg, lambda: quick_client(server.url)) as first:
            assert isinstance(first, RedisLock)  # Redis answered: run 1 holds its lock
            server.stop()  # ...and Redis goes away while run 1 goes on
            with pytest.raises(
                LockHeld,
                match=(
                    rf"another s3s3bucket run holds the lock for s3://{src.bucket} on "
                    rf"http://127.0.0.1:9 \(file {re.escape(str(path))}, holder "
                    rf"{re.escape(socket.gethostname())}:\d+:\w+\); not starting"
                ),
            ):
                with job_lock(src, cfg, lambda: quick_client(server.url)):
                    pytest.fail("run 2 ran alongside run 1")
    finally:
        server.stop()
    # Run 1 is over: with Redis still down, the next run goes ahead on the local lock.
    with caplog.at_level(logging.INFO, logger="s3s3.bucketjob.lock"):
        with job_lock(src, cfg, lambda: quick_client(server.url)) as third:
            assert isinstance(third, FileLock) and third.path == path
    assert "Redis does not answer (ConnectionError: " in caplog.text
    assert "does not exclude runs on other hosts" in caplog.text


def test_auto_holds_the_local_lock_then_the_redis_lock_and_releases_both(client, tmp_path, caplog):
    src = source()
    cfg = BucketConfig(lock="auto", lock_dir=str(tmp_path))
    path = lock_path(src, str(tmp_path))
    try:
        with caplog.at_level(logging.INFO, logger="s3s3.bucketjob.lock"):
            with job_lock(src, cfg, lambda: client) as held:
                assert isinstance(held, RedisLock)
                assert client.get(redis_key(src)) == held.token.encode()
                with pytest.raises(LockHeld, match=rf"\(file {re.escape(str(path))}, "):
                    FileLock(path).acquire()
        messages = [r.getMessage() for r in caplog.records if r.name == "s3s3.bucketjob.lock"]
        assert messages == [f"holding local lock {path}", f"holding Redis lock {redis_key(src)}"]
        assert client.get(redis_key(src)) is None
        again = FileLock(path)
        again.acquire()  # released as well
        again.release()
    finally:
        client.delete(redis_key(src))


def test_lock_redis_also_holds_the_local_lock(client, tmp_path):
    src = source()
    cfg = BucketConfig(lock="redis", lock_dir=str(tmp_path))
    other = FileLock(lock_path(src, str(tmp_path)))
    other.acquire()  # a run on this host, whatever Redis says
    try:
        with pytest.raises(LockHeld, match=r"\(file "):
            with job_lock(src, cfg, lambda: client):
                pytest.fail("ran alongside a run holding the local lock")
        assert client.get(redis_key(src)) is None  # refused before Redis was asked
    finally:
        other.release()
        client.delete(redis_key(src))


def test_a_redis_lock_held_elsewhere_refuses_the_run_and_frees_the_local_lock(client, tmp_path):
    src = source()
    cfg = BucketConfig(lock="auto", lock_dir=str(tmp_path))
    elsewhere = RedisLock(client, redis_key(src), ttl_s=30)  # a run on another host
    elsewhere.acquire()
    try:
        with pytest.raises(
            LockHeld,
            match=rf"\(Redis key {re.escape(redis_key(src))}, "
            rf"holder {re.escape(elsewhere.token)}, ",
        ):
            with job_lock(src, cfg, lambda: client):
                pytest.fail("ran alongside a run on another host")
    finally:
        elsewhere.release()
    mine = FileLock(lock_path(src, str(tmp_path)))
    mine.acquire()  # the refused run let go of the local lock
    mine.release()


def test_lock_redis_with_redis_down_is_an_error_and_frees_the_local_lock(tmp_path):
    src = source()
    cfg = BucketConfig(lock="redis", lock_dir=str(tmp_path))
    with pytest.raises(
        LockUnavailable,
        match=r"lock = redis, but Redis does not answer "
        r"\(ConnectionError: ",
    ):
        with job_lock(src, cfg, closed_port_redis):
            pytest.fail("ran without the Redis lock")
    mine = FileLock(lock_path(src, str(tmp_path)))
    mine.acquire()
    mine.release()


# ------------------------------------------------- Redis refusing s3s3 is not an outage


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A password-protected Redis with two ACL users: one that may not PING, one that may
    not touch the lock keys."""
    server = PrivateRedis(
        tmp_path_factory.mktemp("redis-acl"), password="right-one", persistent=False
    ).start()
    admin = server.client()
    admin.acl_setuser(
        "noping", enabled=True, passwords=["+noping-pw"], keys=["*"], commands=["+@all", "-ping"]
    )
    admin.acl_setuser(
        "nolock", enabled=True, passwords=["+nolock-pw"], keys=["other:*"], commands=["+@all"]
    )
    admin.close()
    try:
        yield server
    finally:
        server.stop()


REFUSALS = {
    "wrong-password": (":hunter2-wrong@", "AuthenticationError"),
    "no-password": ("", "AuthenticationError"),
    "acl-no-ping": ("noping:noping-pw@", "NoPermissionError"),
    "acl-no-lock-keys": ("nolock:nolock-pw@", "NoPermissionError"),
}


@pytest.mark.parametrize("mode", ["auto", "redis"])
@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_redis_refusing_s3s3_is_fatal_not_a_fallback(guarded, tmp_path, caplog, refusal, mode):
    userinfo, error = REFUSALS[refusal]
    url = f"redis://{userinfo}127.0.0.1:{guarded.port}/0"
    src = source()
    cfg = BucketConfig(lock=mode, lock_dir=str(tmp_path))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(RedisFatal) as caught:
            with job_lock(src, cfg, lambda: quick_client(url)):
                pytest.fail("ran although Redis refused s3s3")
    message = str(caught.value)
    assert message.startswith(
        f"Redis at redis://127.0.0.1:{guarded.port}/0 refused s3s3: {error}: "
    )
    assert "not falling back to a local lock" in message
    for secret in ("hunter2-wrong", "noping-pw", "nolock-pw", "right-one"):
        assert secret not in message and secret not in caplog.text
    assert "using a local lock" not in caplog.text
    mine = FileLock(lock_path(src, str(tmp_path)))
    mine.acquire()  # the local lock was let go
    mine.release()
