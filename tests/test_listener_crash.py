"""s3s3listen cannot die quietly: a thread that crashes ends the process, which hands back.

The failure is a real one, injected from outside: a TCP proxy in front of Redis garbles one
reply, which redis-py reports as ``InvalidResponse`` (a protocol error, neither a lost
connection nor a refusal), an exception the intake loops do not expect. Before, the intake
thread died of it and the process lived on, copying nothing. A worker crash is shown in
process, through the ``counters`` object a Listener takes; the MinIO list mover meeting a
key of the wrong type is shown as a subprocess.
"""

from __future__ import annotations

import functools
import re
import socket
import threading
import time

import pytest
import redis
from conftest import endpoint_config, raw_client, unique_bucket
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    TcpProxy,
    keys_in,
    listeners,
    names,
    put_keys,
    start_listener,
    stream_ini,
    wait_until,
    write_ini,
)

from s3s3.config import load
from s3s3.listener.counters import Counters
from s3s3.listener.daemon import Listener
from s3s3.listener.replicator import Replicator
from s3s3.model import WorkItem
from s3s3.queue.intake import open_intake
from s3s3.scripts.listen import EXIT_CRASH, exit_code
from s3s3.store.endpoint import Endpoint
from servers._common import free_port


class GarblingProxy:
    """Forwards 127.0.0.1:port to Redis; ``garble_next()`` replaces the next reply chunk
    (on whichever connection gets one first) with bytes that are not RESP."""

    GARBAGE = b"?this is not RESP\r\n"

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._garble = threading.Event()
        self.garbled = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def garble_next(self) -> None:
        self.garbled.clear()
        self._garble.set()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if replies and self._garble.is_set():
                    self._garble.clear()
                    data = self.GARBAGE
                    self.garbled.set()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
def garbling(redis_url):
    proxy = GarblingProxy(_port(redis_url))
    yield proxy
    proxy.close()


def _setup(tmp_path, moto_servers, make_bucket, names, redis_url, *, mode, dest_proxy, **pubsub):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest").bucket
    via_proxy = {**b, "endpoint_url": dest_proxy.url}
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, src),
        dests=[(via_proxy, dst)],
        channel=names.channel,
        redis_url=redis_url,
        mode=mode,
        pubsub={"consumer": "crash-1", **pubsub},
        listen={"grace": "1"},
    )
    return a, b, src, dst, ini


def _crash_logged_once(out: str) -> None:
    """One crash, logged once: of the stream's reader, or, in stream mode, of the range
    stream's reader beside it, whichever read the garbled answer first."""
    assert out.count("Traceback (most recent call last)") == 1, out[-4000:]
    crashed = re.findall(r"thread (s3s3-intake|s3s3-range-intake) crashed: InvalidResponse", out)
    assert len(crashed) == 1, out[-4000:]
    assert f"s3s3listen stopped after thread {crashed[0]} crashed (exit code 3)" in out


def test_stream_intake_crash_exits_3_and_hands_back(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url, garbling
):
    dest = TcpProxy(_port(moto_servers[1]["endpoint_url"]))  # closed: the destination is down
    a, b, src, dst, ini = _setup(
        tmp_path, moto_servers, make_bucket, names, redis_url, mode="stream", dest_proxy=dest
    )
    put_keys(a, src, ["held/1", "held/2", "after/1"])
    # The listener reaches Redis through the garbling proxy.
    crashing_ini = tmp_path / "crash.ini"
    crashing_ini.write_text(ini.read_text().replace(f"url = {redis_url}", f"url = {garbling.url}"))
    r = redis.Redis.from_url(redis_url)
    listener = ListenerProcess(crashing_ini, tmp_path / "crash.log").start(
        ready="listening on stream"
    )
    listeners.append(listener)
    r.xadd(names.stream, {"key": "held/1", "op": "copy"})
    r.xadd(names.stream, {"key": "held/2", "op": "copy"})
    # Both entries are read and held (their destination is down) ...
    wait_until(lambda: r.xpending(names.stream, "s3s3")["pending"] == 2, 20, what="2 held")
    # Redis counts an entry pending when it sends it: the reply carrying held/2 may still
    # be in the proxy, and garbling that one would leave held/2 unread (pending, reclaimed
    # later, but never handed back). A moment lets it through on loopback.
    time.sleep(0.3)
    # ... when one Redis reply comes back garbled.
    garbling.garble_next()
    assert listener.wait(30) == EXIT_CRASH
    assert garbling.garbled.is_set()
    out = listener.output()
    _crash_logged_once(out)
    assert "handed back 2 unfinished entries" in out, out[-4000:]
    # Handed back: acknowledged, and re-added for any listener with their attempt count.
    assert r.xpending(names.stream, "s3s3")["pending"] == 0
    entries = [f for _, f in r.xrange(names.stream)]
    readded = [f for f in entries if b"attempts" in f]
    assert sorted(f[b"key"] for f in readded) == [b"held/1", b"held/2"]
    # The supervisor's restart (here: a plain second listener) finishes the work.
    dest.open()
    try:
        second = start_listener(
            ini, tmp_path / "second.log", listeners, ready="listening on stream"
        )
        r.xadd(names.stream, {"key": "after/1", "op": "copy"})
        wait_until(
            lambda: keys_in(b, dst) == {"held/1", "held/2", "after/1"},
            30,
            what="every key at the destination",
        )
        second.stop()
        assert second.proc.returncode == 0
    finally:
        dest.close()
    r.close()


def test_pubsub_intake_crash_exits_3_and_names_the_lost_keys(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url, garbling
):
    dest = TcpProxy(_port(moto_servers[1]["endpoint_url"]))  # closed: the destination is down
    a, b, src, dst, ini = _setup(
        tmp_path, moto_servers, make_bucket, names, redis_url, mode="pubsub", dest_proxy=dest
    )
    put_keys(a, src, ["held/1"])
    ini.write_text(ini.read_text().replace(f"url = {redis_url}", f"url = {garbling.url}"))
    listener = start_listener(ini, tmp_path / "listen.log", listeners, ready="listening on pub/sub")
    r = redis.Redis.from_url(redis_url)
    assert r.publish(names.channel, "held/1") == 1
    # The destination is down and the key is held. Neither the start-up check nor the
    # upload sweep's retries ("... on [dest1] failed (attempt 1 of 5)") say anything of the
    # key: only the breaker's line does.
    listener.wait_for("; holding its work and retrying", 20)
    garbling.garble_next()
    r.publish(names.channel, "never/parsed")  # its delivery is the reply that is garbled
    assert listener.wait(30) == EXIT_CRASH
    out = listener.output()
    _crash_logged_once(out)
    assert (
        "1 announced keys were not replicated before shutdown and are lost to pub/sub "
        "(the bucket job will copy them): 'held/1'"
    ) in out
    r.close()


def test_list_mover_on_a_key_of_the_wrong_type_is_fatal(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    # The mover's thread used to end on WRONGTYPE, unseen, while the process ran on.
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest").bucket
    r = redis.Redis.from_url(redis_url)
    r.set(names.list_key, "not a list")
    ini = stream_ini(
        tmp_path,
        names,
        redis_url,
        source=(a, src),
        dests=[(b, dst)],
        pubsub={"list": names.list_key},
    )
    listener = start_listener(ini, tmp_path / "listen.log", listeners, ready=None)
    assert listener.wait(30) == 2
    out = listener.output()
    assert f"Redis rejected a command on list '{names.list_key}': WRONGTYPE" in out
    assert "Traceback" not in out
    r.close()


def run_in_thread(listener: Listener) -> tuple[threading.Thread, threading.Event, list]:
    """Start ``listener.run`` in a thread; the exit code s3s3listen maps its end to is
    appended to the list."""
    stop = threading.Event()
    result: list = []
    thread = threading.Thread(target=lambda: result.append(exit_code(listener.run(stop=stop))))
    thread.start()
    return thread, stop, result


class ExplodingCounters(Counters):
    """Counters with a bug: counting a retry raises, inside a worker's error handling."""

    def add(self, **amounts: int) -> None:
        if "retried" in amounts:
            raise RuntimeError("counter bug")
        super().add(**amounts)


def test_worker_crash_is_reported_not_silent(moto_servers, make_bucket, caplog):
    a, b = moto_servers
    source = make_bucket(a, name="source")
    put_keys(a, source.bucket, ["k"])
    # A destination whose bucket does not exist: a failure that is retried, so counted.
    missing = Endpoint(endpoint_config(b, unique_bucket("gone"), name="dest"))
    crashes: list = []
    replicator = Replicator(
        source,
        [missing],
        on_complete=lambda *_: None,
        workers=1,
        counters=ExplodingCounters(),
        on_crash=lambda name, exc: crashes.append((name, exc)),
    )
    replicator.start()
    replicator.submit(WorkItem("copy", "k"), "ticket")
    wait_until(lambda: crashes, 20, what="the worker's crash")
    assert crashes[0][0] == "s3s3-worker-0" and str(crashes[0][1]) == "counter bug"
    assert isinstance(replicator.crashed, RuntimeError)
    errors = [rec for rec in caplog.records if "thread s3s3-worker-0 crashed" in rec.message]
    assert len(errors) == 1 and errors[0].exc_info is not None
    # Its job was never reported: drain hands its ticket back.
    assert replicator.drain(0.1) == ["ticket"]


def test_listener_with_a_crashed_worker_stops_with_exit_3(
    tmp_path, moto_servers, make_bucket, names, redis_url
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    put_keys(a, src, ["k"])
    dst = unique_bucket("gone")
    ini = stream_ini(
        tmp_path, names, redis_url, source=(a, src), dests=[(b, dst)], listen={"grace": "1"}
    )
    # The destination is checked at start-up: give it a bucket, then take it away.
    raw_client(b).create_bucket(Bucket=dst)
    listener = Listener(load(str(ini)), open_intake=open_intake, counters=ExplodingCounters())
    thread, stop, result = run_in_thread(listener)
    r = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: r.exists(names.stream), 20, what="the stream")
        raw_client(b).delete_bucket(Bucket=dst)
        r.xadd(names.stream, {"key": "k", "op": "copy"})
        thread.join(30)
        assert result == [EXIT_CRASH]
        # The entry was handed back, not lost and not left pending.
        assert r.xpending(names.stream, "s3s3")["pending"] == 0
        assert [f[b"key"] for _, f in r.xrange(names.stream) if b"attempts" in f] == [b"k"]
    finally:
        stop.set()
        thread.join(30)
        r.close()


# --------------------------------------------------------------------------- the intakes


def test_any_exception_from_parsing_makes_a_bad_message_not_a_dead_intake(names, redis_url):
    # The parser raises only MessageError for any input; an exception of another type (here
    # the ValueError it documents for a key_encoding it does not know, standing in for a
    # parser bug) still costs only that message, in both intakes.
    from s3s3.config import RedisConfig
    from s3s3.queue.link import RedisLink
    from s3s3.queue.pubsub import PubSubSource
    from s3s3.queue.stream import StreamSource, ensure_group

    cfg = RedisConfig(
        url=redis_url,
        channel=names.channel,
        mode="stream",
        stream=names.stream,
        dead_letter_stream=names.dead,
        consumer="test",
    )
    r = redis.Redis.from_url(redis_url)
    counters = Counters()
    pubsub = PubSubSource(
        r, cfg, link=RedisLink(cfg.safe_url), counters=counters, key_encoding="bogus"
    )
    pubsub.handle(b"some/key", replicator=None)
    assert counters["bad_messages"] == 1

    stream = StreamSource(
        r, cfg, link=RedisLink(cfg.safe_url), counters=counters, key_encoding="bogus"
    )
    stream.start()
    ensure_group(r, cfg)
    entry_id = r.xadd(names.stream, {"message": "some/key"})
    entries = r.xreadgroup(cfg.group, cfg.consumer, {names.stream: ">"})[0][1]
    stream._accept(entries, {})
    stream.close(5.0)
    assert counters["bad_messages"] == 2 and counters["dead_lettered"] == 1
    [(_, letter)] = r.xrange(names.dead)
    assert letter[b"original_id"] == entry_id and letter[b"reason"] == b"bad message"
    assert letter[b"error"].startswith(b"cannot be parsed (ValueError: key_encoding must be")
    assert r.xpending(names.stream, cfg.group)["pending"] == 0
    r.close()


class ExplodingPipelineRedis(redis.Redis):
    """A real Redis client whose MULTI/EXEC pipelines fail with an error no loop expects,
    as a bug in the writer would: the writer thread dies on its first acknowledgement."""

    def pipeline(self, transaction=True, shard_hint=None):
        if transaction:
            raise RuntimeError("writer bug")
        return super().pipeline(transaction=transaction, shard_hint=shard_hint)


def test_a_crashed_redis_writer_stops_the_listener_with_exit_3(
    tmp_path, moto_servers, make_bucket, names, redis_url
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest").bucket
    put_keys(a, src, ["k"])
    ini = stream_ini(
        tmp_path, names, redis_url, source=(a, src), dests=[(b, dst)], listen={"grace": "1"}
    )
    client = ExplodingPipelineRedis.from_url(redis_url)
    listener = Listener(load(str(ini)), open_intake=functools.partial(open_intake, client=client))
    thread, stop, result = run_in_thread(listener)
    r = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: r.exists(names.stream), 20, what="the stream")
        r.xadd(names.stream, {"key": "k", "op": "copy"})
        thread.join(30)
        assert result == [EXIT_CRASH]
        # The copy was made but never acknowledged: the entry stays pending for this
        # consumer, which resumes it when supervisord restarts the process.
        assert keys_in(b, dst) == {"k"}
        assert r.xpending(names.stream, "s3s3")["pending"] == 1
    finally:
        stop.set()
        thread.join(30)
        r.close()
        client.close()
