"""The AMQP intake against the machine's real RabbitMQ (127.0.0.1:5672) and a real Redis:
messages become stream entries and are acknowledged only then; bad messages become dead
letters; Redis and broker outages lose nothing; refusals are fatal at once. And the real
producer: a Ceph RGW topic with an ``amqp://`` push endpoint, consumed by ``s3s3intake``,
killed with SIGKILL in the middle of a burst.

Every test uses queues of its own in a virtual host this module makes (and deletes).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import boto3
import botocore.config
import pika
import pika.exceptions
import pytest
import redis

from s3s3.config import AmqpConfig, RedisConfig
from s3s3.errors import BrokerRefused
from s3s3.model import MAX_MESSAGE_BYTES
from s3s3.queue.amqp_intake import AmqpIntake
from s3s3.queue.announce import Announcer
from s3s3.queue.link import daemon_client
from s3s3.queue.messages import parse_entry
from s3s3.queue.tally import Tally
from servers import rgw_topics
from servers._common import free_port
from tests.conftest import ROOT, raw_client, unique_bucket
from tests.redis_server import PrivateRedis

BUCKET = "amqp-src"
KEYS = ["plain.txt", "a b+c.txt", "dir/x%2Fy", "ü/日本語", "100% +sure", " lead and trail "]


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"rabbitmqctl {args}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def vhost():
    name = f"s3s3-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


def amqp_url(vhost: str, *, password: str = "guest", port: int = 5672) -> str:
    return f"amqp://guest:{password}@127.0.0.1:{port}/{quote(vhost, safe='')}"


class Broker:
    """A plain pika connection of the test's own, to publish and to look at queues."""

    def __init__(self, vhost: str) -> None:
        self.vhost = vhost
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_url(vhost)))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def declare(self, queue: str) -> None:
        self.channel.queue_declare(queue, durable=True)

    def publish(self, queue: str, body: bytes) -> None:
        self.channel.basic_publish(
            "", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True
        )

    def ready(self, queue: str) -> int:
        """Messages ready in ``queue`` (not counting those delivered and unacknowledged)."""
        return self.channel.queue_declare(queue, passive=True).method.message_count

    def consumers(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).method.consumer_count

    def counts(self, queue: str) -> tuple[int, int]:
        """(ready, unacknowledged) as the broker reports them."""
        for line in rabbitmqctl(
            "list_queues", "-p", self.vhost, "name", "messages_ready", "messages_unacknowledged"
        ).splitlines():
            parts = line.split("\t")
            if parts[0] == queue:
                return int(parts[1]), int(parts[2])
        raise AssertionError(f"no queue {queue!r} in vhost {self.vhost}")

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


@pytest.fixture
def broker(vhost):
    b = Broker(vhost)
    try:
        yield b
    finally:
        b.close()


def redis_config(url: str) -> RedisConfig:
    tag = f"amqp-{uuid.uuid4().hex[:10]}"
    return RedisConfig(
        url=url,
        mode="stream",
        channel=tag,
        stream=f"s3s3:{{{tag}}}:stream",
        dead_letter_stream=f"s3s3:{{{tag}}}:dead",
    )


def make_intake(
    vhost: str, rcfg: RedisConfig, queue: str, *, tally: Tally, **amqp
) -> tuple[AmqpIntake, Tally]:
    cfg = AmqpConfig(url=amqp.pop("url", amqp_url(vhost)), queue=queue, **amqp)
    announcer = Announcer(
        daemon_client(rcfg, socket_timeout_s=5.0),
        rcfg,
        via="amqp",
        tally=tally,
        source_bucket=BUCKET,
    )
    return AmqpIntake(cfg, announcer, tally=tally, retry_base_s=0.05, retry_max_s=0.3), tally


class Serving:
    """``intake.serve(stop)`` in a thread; ``stop()`` ends it and re-raises what it raised."""

    def __init__(self, intake: AmqpIntake) -> None:
        self.intake = intake
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        intake.open()
        self.thread.start()

    def _run(self) -> None:
        try:
            self.intake.serve(self.stop_event)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(20)
        assert not self.thread.is_alive(), "serve() did not return after stop"
        if self.error is not None:
            raise self.error


def wait_for(what: str, check: Callable[[], object], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def rgw_event(key: str, *, n: int = 1, name: str = "ObjectCreated:Put", bucket: str = BUCKET):
    """One record as Ceph RGW 16.2 sends it (../shared/INTEROP.md): the key raw."""
    record = {
        "eventVersion": "2.2",
        "eventSource": "ceph:s3",
        "awsRegion": "",
        "eventTime": "2026-12-01T18:00:42.858865Z",
        "eventName": name,
        "s3": {
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": 10,
                "eTag": "3363ab7b4c4a0e8f8c2e5d6f0a1b2c3d",
                "versionId": "",
                "sequencer": f"{0x4A0B0F6B + n:08X}7BA5D033",
            },
        },
        "eventId": f"e{n}",
    }
    return json.dumps({"Records": [record]}).encode()


def entries(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(stream, "-", "+")
    ]


@pytest.fixture
def rclient(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_rgw_events_land_with_exact_keys_and_are_acknowledged(vhost, broker, redis_url, rclient):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    broker.declare(queue)
    rcfg = redis_config(redis_url)
    bodies = [rgw_event(k, n=i) for i, k in enumerate(KEYS)]
    bodies.append(rgw_event("gone.txt", n=50, name="ObjectRemoved:Delete"))
    bodies.append(rgw_event("elsewhere.txt", n=51, bucket="another-bucket"))
    for body in bodies:
        broker.publish(queue, body)
    intake, tally = make_intake(vhost, rcfg, queue, tally=Tally())
    serving = Serving(intake)
    try:
        wait_for("every message acknowledged", lambda: tally.get("requests") == len(bodies))
    finally:
        serving.stop()
    got = entries(rclient, rcfg.stream)
    assert [e["key"] for e in got] == [*KEYS, "gone.txt"]
    assert [e["op"] for e in got] == ["copy"] * len(KEYS) + ["delete"]
    assert {e["via"] for e in got} == {"amqp"} and {e["bucket"] for e in got} == {BUCKET}
    items = [parse_entry(e, source_bucket=BUCKET).items[0] for e in got]
    assert all(item.compare and item.sequence for item in items)
    assert tally.get("requests", intake="amqp", status="ack") == len(bodies)
    assert tally.get("records", intake="amqp", outcome="queued") == len(KEYS) + 1
    assert tally.get("records", intake="amqp", outcome="skipped") == 1
    # Acknowledged, not merely delivered: after the intake closed its connection nothing
    # came back to the queue.
    assert broker.ready(queue) == 0
    rclient.delete(rcfg.stream)


def test_a_bad_message_is_dead_lettered_and_acknowledged(vhost, broker, redis_url, rclient):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    broker.declare(queue)
    rcfg = redis_config(redis_url)
    wrong_shape = b'{"Records": "not a list"}'
    huge = b"{" + b"x" * (MAX_MESSAGE_BYTES + 100)
    for body in (rgw_event("before.txt"), wrong_shape, huge, rgw_event("after.txt", n=2)):
        broker.publish(queue, body)
    intake, tally = make_intake(vhost, rcfg, queue, tally=Tally())
    serving = Serving(intake)
    try:
        wait_for("four messages taken", lambda: tally.get("requests") == 4)
    finally:
        serving.stop()
    assert [e["key"] for e in entries(rclient, rcfg.stream)] == ["before.txt", "after.txt"]
    raw = rclient.xrange(rcfg.dead_letter_stream, "-", "+")
    letters = [{k.decode(): v for k, v in fields.items()} for _, fields in raw]
    assert [letter["message"] for letter in letters] == [wrong_shape, huge[:MAX_MESSAGE_BYTES]]
    for letter in letters:
        assert letter["reason"] == b"bad message"
        assert letter["original_id"].startswith(b"amqp:" + queue.encode())
        assert letter["consumer"].startswith(b"s3s3intake-amqp@")
        assert letter["failed_at"] and letter["via"] == b"amqp"
    assert b"Records" in letters[0]["error"]
    assert b"limit" in letters[1]["error"]
    assert tally.get("requests", intake="amqp", status="dead") == 2
    assert tally.get("requests", intake="amqp", status="ack") == 2
    assert tally.get("records", intake="amqp", outcome="bad") == 2
    assert broker.ready(queue) == 0
    rclient.delete(rcfg.stream, rcfg.dead_letter_stream)


def test_redis_down_acknowledges_nothing_and_the_messages_land_when_it_is_back(
    vhost, broker, tmp_path, caplog
):
    server = PrivateRedis(tmp_path / "redis", persistent=False).start()
    client = server.client()
    try:
        queue = f"q-{uuid.uuid4().hex[:8]}"
        broker.declare(queue)
        rcfg = redis_config(server.url)
        # A bad message too: its dead letter cannot be written either, so it is not acked.
        bodies = [rgw_event(f"k{i}.txt", n=i) for i in range(5)] + [b'{"Records": 7}']
        for body in bodies:
            broker.publish(queue, body)
        server.stop()
        caplog.set_level(logging.INFO, logger="s3s3.intake")
        intake, tally = make_intake(vhost, rcfg, queue, tally=Tally(), prefetch=4)
        serving = Serving(intake)
        try:
            wait_for(
                "several failed tries",
                lambda: tally.get("records", outcome="unavailable", intake="amqp") >= 3,
            )
            # The broker sees four delivered (the prefetch) and none acknowledged.
            ready, unacked = broker.counts(queue)
            assert (ready, unacked) == (len(bodies) - 4, 4)
            assert tally.get("requests", intake="amqp", status="ack") == 0
        finally:
            serving.stop()
        # Stopped during the outage: the message in hand was nacked, the others went back.
        assert tally.get("requests", intake="amqp", status="nack") == 1
        wait_for("all back in the queue", lambda: broker.ready(queue) == len(bodies))

        intake, tally = make_intake(vhost, rcfg, queue, tally=Tally(), prefetch=4)
        serving = Serving(intake)
        try:
            wait_for(
                "a try against the stopped Redis",
                lambda: tally.get("records", outcome="unavailable", intake="amqp") >= 2,
            )
            server.start()
            wait_for("every message taken", lambda: tally.get("requests") == len(bodies))
        finally:
            serving.stop()
        assert [e["key"] for e in entries(client, rcfg.stream)] == [f"k{i}.txt" for i in range(5)]
        assert client.xlen(rcfg.dead_letter_stream) == 1
        assert broker.ready(queue) == 0
        lines = [r.getMessage() for r in caplog.records if r.name == "s3s3.intake"]
        # One line per outage and one per recovery, however many tries were made.
        assert sum("cannot reach Redis" in line for line in lines) == 2, lines
        assert sum("Redis at" in line and "reachable again" in line for line in lines) == 1
    finally:
        client.close()
        server.stop()


class Relay:
    """A TCP relay in front of RabbitMQ that can drop its connections and turn the broker
    "down": while down it accepts and closes at once (counting the attempts)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.down = False
        self.attempts_while_down = 0
        self.lock = threading.Lock()
        self.live: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                self.attempts_while_down += 1
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", 5672))
            with self.lock:
                self.live += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.down = True
        with self.lock:
            for s in self.live:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.live.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_a_lost_broker_is_reconnected_and_logged_once(vhost, broker, redis_url, rclient, caplog):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    broker.declare(queue)
    rcfg = redis_config(redis_url)
    relay = Relay()
    caplog.set_level(logging.INFO, logger="s3s3.intake")
    intake, tally = make_intake(
        vhost, rcfg, queue, tally=Tally(), url=amqp_url(vhost, port=relay.port)
    )
    serving = Serving(intake)
    try:
        for i in range(3):
            broker.publish(queue, rgw_event(f"before-{i}", n=i))
        wait_for("the first three", lambda: tally.get("requests") == 3)
        relay.cut()
        for i in range(3):
            broker.publish(queue, rgw_event(f"during-{i}", n=10 + i))
        wait_for("three refused reconnects", lambda: relay.attempts_while_down >= 3)
        assert tally.get("requests") == 3
        relay.down = False
        wait_for("the other three", lambda: tally.get("requests") == 6)
    finally:
        serving.stop()
        relay.close()
    keys = [e["key"] for e in entries(rclient, rcfg.stream)]
    assert keys == [f"before-{i}" for i in range(3)] + [f"during-{i}" for i in range(3)]
    assert broker.ready(queue) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "s3s3.intake"]
    assert sum("lost the AMQP broker" in line for line in lines) == 1, lines
    assert sum("AMQP broker" in line and "reachable again" in line for line in lines) == 1
    assert not any("cannot reach the AMQP broker" in line for line in lines), lines
    rclient.delete(rcfg.stream)


def test_a_queue_deleted_under_the_consumer_is_declared_again(vhost, broker, redis_url, rclient):
    queue = f"q-{uuid.uuid4().hex[:8]}"
    rcfg = redis_config(redis_url)
    intake, tally = make_intake(vhost, rcfg, queue, tally=Tally())
    serving = Serving(intake)
    try:
        wait_for("the intake consuming", lambda: _consuming(broker, queue))
        broker.publish(queue, rgw_event("first.txt"))
        wait_for("the first message", lambda: tally.get("requests") == 1)
        broker.channel.queue_delete(queue)  # the broker cancels the consumer
        wait_for("the queue declared again", lambda: _consuming(broker, queue))
        broker.publish(queue, rgw_event("second.txt", n=2))
        wait_for("the second message", lambda: tally.get("requests") == 2)
    finally:
        serving.stop()
    assert [e["key"] for e in entries(rclient, rcfg.stream)] == ["first.txt", "second.txt"]
    rclient.delete(rcfg.stream)


def serve_until_raised(intake: AmqpIntake, timeout_s: float = 10.0) -> BaseException:
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    try:
        intake.serve(stop)
    except BrokerRefused as exc:
        return exc
    finally:
        timer.cancel()
    raise AssertionError(f"serve() ran {timeout_s}s without raising BrokerRefused")


def test_refusals_are_broker_refused_at_once_and_show_no_password(vhost, redis_url):
    rcfg = redis_config(redis_url)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    secret = "not-the-password-42"
    cases = {
        "password": dict(url=amqp_url(vhost, password=secret)),
        "vhost": dict(url=amqp_url(vhost + "-missing")),
        "no queue": dict(declare=False),
    }
    said = {}
    for name, amqp in cases.items():
        intake, _ = make_intake(vhost, rcfg, queue, tally=Tally(), **amqp)
        started = time.monotonic()
        exc = serve_until_raised(intake)
        assert time.monotonic() - started < 5, name
        said[name] = str(exc)
        assert secret not in said[name] and queue in said[name]
        assert intake.cfg.safe_url in said[name]
    assert "user name or password" in said["password"] and "***" in said["password"]
    assert "virtual host" in said["vhost"]
    assert "found no such queue" in said["no queue"] and "declare = true" in said["no queue"]


def test_no_permission_to_declare_is_broker_refused(vhost, redis_url):
    user, password = f"s3s3-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    rabbitmqctl("add_user", user, password)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, "^$", "^$", "^$")
        url = f"amqp://{user}:{password}@127.0.0.1:5672/{quote(vhost, safe='')}"
        intake, _ = make_intake(vhost, redis_config(redis_url), "q-denied", tally=Tally(), url=url)
        said = str(serve_until_raised(intake))
    finally:
        rabbitmqctl("delete_user", user)
    assert "refused access declaring queue 'q-denied' (durable): (403) ACCESS_REFUSED" in said
    assert password not in said


# ---------------------------------------------------------------- s3s3intake, and real RGW


def intake_ini(path: Path, *, source: dict, bucket: str, redis_url: str, channel: str, amqp: dict):
    lines = [
        "[source]",
        f"bucket_name = {bucket}",
        f"endpoint_url = {source['endpoint_url']}",
        f"aws_access_key_id = {source['access_key']}",
        f"aws_secret_access_key = {source['secret_key']}",
        "[dest1]",
        "bucket_name = unused",
        "endpoint_url = http://127.0.0.1:9",
        "aws_access_key_id = unused",
        "aws_secret_access_key = unused",
        "[pubsub]",
        f"url = {redis_url}",
        "mode = stream",
        f"channel = {channel}",
        "[amqp]",
        *(f"{k} = {v}" for k, v in amqp.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_intake(ini: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "s3s3.scripts.intake", "--config", str(ini)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_s3s3intake_exits_2_with_one_line_on_a_wrong_password(vhost, redis_url, tmp_path):
    secret = "wrong-secret-77"
    fake = {"endpoint_url": "http://127.0.0.1:9", "access_key": "a", "secret_key": "b"}
    ini = intake_ini(
        tmp_path / "s3s3.ini",
        source=fake,
        bucket="b",
        redis_url=redis_url,
        channel="refused",
        amqp={"url": amqp_url(vhost, password=secret), "queue": "q-refused"},
    )
    done = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.intake", "--config", str(ini)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert secret not in done.stderr + done.stdout
    # pika logs every failed connect at ERROR on its own logger; s3s3's own say it once.
    ours = [
        line
        for line in done.stderr.splitlines()
        if " ERROR s3s3" in line or " CRITICAL s3s3" in line
    ]
    assert len(ours) == 1, done.stderr
    assert "refused the user name or password, for queue 'q-refused'" in ours[0]
    assert f"guest:***@127.0.0.1:5672/{vhost}" in ours[0]


def test_a_real_rgw_topic_into_rabbitmq_loses_nothing_when_the_consumer_is_killed(
    ceph, vhost, broker, redis_url, rclient, tmp_path
):
    tag = uuid.uuid4().hex[:8]
    bucket, topic, exchange, queue = unique_bucket("amqp"), f"t-{tag}", f"ex-{tag}", f"q-{tag}"
    channel = f"rgw-{tag}"
    stream = f"s3s3:{{{channel}}}:stream"
    ini = intake_ini(
        tmp_path / "s3s3.ini",
        source=ceph,
        bucket=bucket,
        redis_url=redis_url,
        channel=channel,
        amqp={
            "url": amqp_url(vhost),
            "queue": queue,
            "exchange": exchange,
            "routing_key": topic,
        },
    )
    log = tmp_path / "intake.log"
    s3 = raw_client(ceph)
    s3.create_bucket(Bucket=bucket)
    puts = boto3.client(  # a pool as big as the burst's threads: no connection is dropped
        "s3",
        endpoint_url=ceph["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id=ceph["access_key"],
        aws_secret_access_key=ceph["secret_key"],
        config=botocore.config.Config(s3={"addressing_style": "path"}, max_pool_connections=8),
    )
    # RGW takes a password in a push endpoint only over HTTPS (over HTTP CreateTopic fails).
    sns = boto3.client(
        "sns",
        endpoint_url=ceph["https_url"],
        verify=ceph["ca_bundle"],
        region_name="us-east-1",
        aws_access_key_id=ceph["access_key"],
        aws_secret_access_key=ceph["secret_key"],
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    arn = None
    proc = start_intake(ini, log)
    procs = [proc]
    keys = [f"burst/{i:03d} {KEYS[i % len(KEYS)]}" for i in range(200)]
    try:
        # The intake declares the exchange: it must exist before RGW first pushes to it.
        wait_for("the intake consuming", lambda: _consuming(broker, queue), 30)
        arn = sns.create_topic(
            Name=topic,
            Attributes={
                "push-endpoint": amqp_url(vhost),
                "amqp-exchange": exchange,
                "amqp-ack-level": "broker",
            },
        )["TopicArn"]
        rgw_topics.attach(ceph, bucket, arn, events=("s3:ObjectCreated:*",))
        # Four PUTs at a time: with 16, radosgw 16.2 segfaulted twice in ~15 runs (in beast,
        # a synchronous topic waiting for the broker's ack), which would take the session's
        # shared RGW down with it.
        with ThreadPoolExecutor(4) as pool:
            burst = [
                pool.submit(puts.put_object, Bucket=bucket, Key=k, Body=k.encode()) for k in keys
            ]
            wait_for("a third of the burst in the stream", lambda: rclient.xlen(stream) >= 60, 60)
            proc.kill()  # SIGKILL: no goodbye to the broker, unacknowledged messages in hand
            proc.wait(10)
            done_at_kill = sum(put.done() for put in burst)
            time.sleep(0.5)  # the burst goes on into the queue with no consumer
            proc = start_intake(ini, log)
            procs.append(proc)
            for put in burst:
                put.result()
        assert done_at_kill < len(keys) / 2, "the consumer was not killed mid-burst"
        got = Counter()

        def all_in() -> bool:
            got.clear()
            got.update(e["key"] for e in entries(rclient, stream))
            return set(got) >= set(keys)

        wait_for("every key's entry in the stream", all_in, 60)
        wait_for("the queue drained", lambda: broker.counts(queue) == (0, 0), 30)
        assert set(got) == set(keys)
        duplicates = sum(got.values()) - len(keys)
        # At-least-once: a message whose entry was added but whose ack the kill cut off comes
        # again (the listener's stale-event check absorbs it). Seen: 0 or 1 per run.
        print(f"\n{len(keys)} keys, {sum(got.values())} entries, {duplicates} duplicates")
        assert duplicates <= 64, "more duplicates than the prefetch can explain"
        sample = entries(rclient, stream)[0]
        assert sample["via"] == "amqp" and sample["bucket"] == bucket and sample["seq"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        rgw_topics.detach(ceph, bucket)
        assert not rgw_topics.attached(ceph, bucket)
        if arn:
            sns.delete_topic(TopicArn=arn)
        for key in keys:  # one at a time: DeleteObjects on a notified bucket aborts RGW 16.2
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
        rclient.delete(stream)
    text = log.read_text()
    assert "guest:guest" not in text and "lost the AMQP broker" not in text, text[-3000:]


def _consuming(broker: Broker, queue: str) -> bool:
    try:
        return broker.consumers(queue) > 0
    except pika.exceptions.ChannelClosedByBroker:
        broker.channel = broker.connection.channel()  # 404 before the intake declared it
        return False


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch):
    # The subprocesses read S3S3_* settings from the environment: none of the caller's.
    for name in [n for n in os.environ if n.startswith("S3S3_")]:
        monkeypatch.delenv(name)
