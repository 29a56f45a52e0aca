"""The bucket-job lock: Redis (against the real Redis), local flock, and the choice between."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from s3s3.config import BucketConfig, EndpointConfig
from s3s3.errors import LockHeld
from s3s3.lock import (FileLock, LockUnavailable, NoLock, RedisLock, choose_lock, job_lock,
                       lock_path, redis_key)


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def key(client):
    name = f"s3s3:test-lock:{{{uuid.uuid4().hex}}}"
    yield name
    client.delete(name)


def source(bucket: str | None = None) -> EndpointConfig:
    return EndpointConfig(name="source", bucket=bucket or f"b-{uuid.uuid4().hex[:8]}",
                          endpoint_url="http://127.0.0.1:9")


def closed_port_redis() -> redis.Redis:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # No retries: redis-py retries a refused connection with backoff by default.
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1,
                       retry=Retry(NoBackoff(), 0))


def test_a_held_redis_lock_refuses_a_second_holder_until_released(client, key):
    first = RedisLock(client, key, ttl_s=30, what="s3://b on X")
    first.acquire()
    try:
        second = RedisLock(client, key, ttl_s=30, what="s3://b on X")
        with pytest.raises(LockHeld) as caught:
            second.acquire()
        message = str(caught.value)
        assert message.startswith(f"another s3s3bucket run holds the lock for s3://b on X "
                                  f"(Redis key {key}, holder {first.token}, expires in ")
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
    with pytest.raises(LockHeld, match=r"another s3s3bucket run holds the lock for s3://b on "
                                       rf"X \(file {path}, holder .+:\d+:\w+\); not starting"):
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
    with caplog.at_level(logging.INFO, logger="s3s3.lock"):
        with job_lock(src, cfg, closed_port_redis) as lock:
            assert isinstance(lock, FileLock)
            assert lock.path == lock_path(src, str(tmp_path))
    assert "Redis does not answer (ConnectionError: " in caplog.text
    assert f"holding local lock {lock.path}" in caplog.text


def test_lock_redis_without_redis_is_an_error(tmp_path):
    with pytest.raises(LockUnavailable, match=r"lock = redis, but Redis does not answer "
                                              r"\(ConnectionError: "):
        choose_lock(source(), BucketConfig(lock="redis"), closed_port_redis)


def test_lock_local_and_none(client, tmp_path):
    src = source()
    assert isinstance(choose_lock(src, BucketConfig(lock="local", lock_dir=str(tmp_path)),
                                  lambda: client), FileLock)
    assert isinstance(choose_lock(src, BucketConfig(lock="none"), lambda: client), NoLock)


def test_job_lock_is_per_source_bucket_and_released_after_the_block(client, tmp_path, caplog):
    cfg = BucketConfig(lock="auto", lock_dir=str(tmp_path))
    a, b = source(), source()
    try:
        with caplog.at_level(logging.INFO, logger="s3s3.lock"):
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


def test_the_redis_key_carries_one_hash_tag():
    key = redis_key(source("bucket"))
    assert key.count("{") == 1 and key.startswith("s3s3:lock:{") and key.endswith("}")
    assert redis_key(source("bucket")) == key
    assert redis_key(source("other")) != key
