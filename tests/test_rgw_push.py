"""Ceph RGW pushing its bucket notifications to ``s3s3intake``, end to end (issue #12).

A real RGW bucket with a topic POSTs every object event to ``s3s3intake`` (a subprocess);
its entries go through a Redis stream to ``s3s3listen`` (a subprocess with the same INI),
which replicates to a bucket on the suite's Swift s3api. Proven here, each ending with Swift
holding exactly what RGW holds (keys, sizes, md5 of the bytes):

- a synchronous and a persistent topic: keys with spaces, ``+``, ``%2F`` and unicode, a
  multipart upload, a copy, overwrites and deletes;
- real RGW events POSTed out of order and twice: stale ones are dropped without a copy;
- Redis down while a persistent topic pushes: the intake answers 503, RGW retries, nothing
  is lost;
- the intake killed while a synchronous topic fires: RGW loses those events, and
  ``s3s3bucket`` repairs the destination.

One persistent topic serves the whole module: a new one delivers its first event only after
18-27 s, so it is created and warmed up as the module starts (while the synchronous tests
run) and re-pointed at each test's intake: the topic is created again under its name, which
keeps its warm queue, and the bucket is attached after that (a bucket's notification keeps a
copy of the topic as it was when attached). Two RGW 16.2 bugs would take down the RGW every
test shares: DeleteObjects on a notified bucket (so deletes go one key at a time), and a
persistent topic's endpoint refusing connections (so every intake the topic ever pointed at,
and its Redis, runs until the topic is deleted at the module's end).
"""

from __future__ import annotations

import hashlib
import http.client
import inspect
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from conftest import ROOT, raw_client, unique_bucket
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    PrivateRedis,
    names,
    wait_until,
    write_ini,
)

from servers import rgw_topics
from servers._common import free_port

MiB = 1024 * 1024
#: How long a persistent topic's first event may take (18-27 s measured), with a margin.
WARM_UP_S = 60.0
#: How long Redis stays down once the intake has answered RGW 503: long enough for RGW to
#: be seen retrying, short since a persistent topic retries in a tight loop (thousands of
#: POSTs in a few seconds) on the RGW every test shares.
OUTAGE_S = 2.0


# --------------------------------------------------------------------------- an endpoint


class Receiver:
    """An HTTP endpoint of the test's own: answers 200 to every POST and keeps the bodies.

    Where the persistent topic is warmed up, and where real RGW events are recorded to be
    POSTed to an intake later, in an order of the test's choosing.
    """

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as RGW's libcurl expects

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/receiver"

    def records(self) -> list[dict]:
        """The one record of each body received, in arrival order."""
        with self.lock:
            return [json.loads(body)["Records"][0] for body in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- the warm topic


@dataclass
class WarmTopic:
    """The module's persistent topic, warmed up once; see the module docstring."""

    ceph: dict
    name: str
    arn: str
    receiver: Receiver
    probe_bucket: str
    #: Buckets attached to it, detached at the module's end (again: detach is idempotent).
    buckets: list[str] = field(default_factory=list)
    #: What an endpoint it pointed at needs (intakes, their Redis): stopped after the topic
    #: is deleted, never before, so no queued event meets a refused connection.
    keep: list = field(default_factory=list)
    warm: bool = False

    def wait_warm(self) -> None:
        if not self.warm:
            wait_until(
                lambda: any(r["s3"]["object"]["key"] == "probe" for r in self.receiver.records()),
                WARM_UP_S,
                interval_s=0.2,
                what="the persistent topic's first event (its warm-up)",
            )
            rgw_topics.detach(self.ceph, self.probe_bucket)
            self.warm = True

    def point_at(self, endpoint: str, bucket: str) -> None:
        """Send ``bucket``'s events to ``endpoint`` through this (warm) topic."""
        self.wait_warm()
        arn = rgw_topics.create_topic(self.ceph, self.name, endpoint, persistent=True)
        assert arn == self.arn
        self.buckets.append(bucket)
        rgw_topics.attach(self.ceph, bucket, self.arn)


@pytest.fixture(scope="module")
def warm_topic(ceph):
    """Creates the persistent topic and PUTs its warm-up probe; the tests that use it wait
    for the probe's event (``wait_warm``) when they start."""
    receiver = Receiver()
    name = f"s3s3-push-{uuid.uuid4().hex[:8]}"
    arn = rgw_topics.create_topic(ceph, name, receiver.url, persistent=True)
    bucket = unique_bucket("warm")
    s3 = raw_client(ceph)
    s3.create_bucket(Bucket=bucket)
    rgw_topics.attach(ceph, bucket, arn)
    topic = WarmTopic(ceph, name, arn, receiver, bucket, buckets=[bucket])
    s3.put_object(Bucket=bucket, Key="probe", Body=b"probe")
    try:
        yield topic
    finally:
        try:
            # The probe's event is delivered before the topic goes, so that RGW has nothing
            # left for the receiver when it closes.
            topic.wait_warm()
        finally:
            for attached in topic.buckets:
                rgw_topics.detach(ceph, attached)
            rgw_topics.delete_topic(ceph, arn)
            for thing in reversed(topic.keep):
                thing.stop()
            receiver.close()


@pytest.fixture(scope="module", autouse=True)
def warm_up_early(request):
    """Starts the warm-up as the module starts, while the synchronous tests run, when a test
    selected here uses the persistent topic."""
    here = [item for item in request.session.items if item.module is request.module]
    if any("warm_topic" in inspect.signature(item.function).parameters for item in here):
        request.getfixturevalue("warm_topic")


@pytest.fixture
def sync_topic(ceph):
    """Makes synchronous topics; detaches their buckets and deletes them afterwards."""
    made: list[tuple[str, str]] = []

    def make(endpoint: str, bucket: str) -> str:
        arn = rgw_topics.create_topic(ceph, f"s3s3-sync-{uuid.uuid4().hex[:8]}", endpoint)
        made.append((arn, bucket))
        rgw_topics.attach(ceph, bucket, arn)
        return arn

    yield make
    for arn, bucket in made:
        rgw_topics.detach(ceph, bucket)
        rgw_topics.delete_topic(ceph, arn)


# --------------------------------------------------------------------------- the pipeline


@dataclass
class Pipeline:
    """RGW bucket -> s3s3intake -> Redis stream -> s3s3listen -> Swift bucket."""

    ceph: dict
    swift: dict
    src: str
    dst: str
    ini: Path
    token: str
    port: int
    stream: str
    redis_url: str
    intake: ListenerProcess
    listener: ListenerProcess

    @property
    def endpoint(self) -> str:
        """The push endpoint RGW is given: the token is the path."""
        return f"http://127.0.0.1:{self.port}/{self.token}"

    def post(self, body: bytes) -> tuple[int, dict]:
        """POST ``body`` to the intake as RGW does; the status and the JSON answer."""
        status, _, payload = self.post_answer(body)
        return status, payload

    def post_answer(self, body: bytes) -> tuple[int, dict[str, str], dict]:
        """POST ``body`` to the intake as RGW does; the status, headers and JSON answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(
                "POST", f"/{self.token}", body=body, headers={"Content-Type": "application/json"}
            )
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), json.loads(answer.read() or b"{}")
        finally:
            conn.close()

    def arrivals(self) -> list[tuple[str, str, int]]:
        """(key, event, sequence) of every entry the intake wrote, in the order written."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            entries = client.xrange(self.stream)
        finally:
            client.close()
        return [
            (f[b"key"].decode(), f[b"event"].decode(), int(f[b"seq"]))
            for _, f in entries
            if b"via" in f
        ]

    def pending(self) -> int:
        client = redis.Redis.from_url(self.redis_url)
        try:
            return client.xpending(self.stream, "s3s3")["pending"]
        except redis.ResponseError:
            return 0
        finally:
            client.close()

    def wait_equal(self, timeout_s: float = 60.0) -> None:
        """Wait until Swift lists what RGW lists (keys and sizes), every entry is finished,
        and then compare the bytes."""
        wait_until(
            lambda: listing(self.ceph, self.src) == listing(self.swift, self.dst),
            timeout_s,
            interval_s=0.2,
            what=f"Swift bucket {self.dst!r} to list what RGW bucket {self.src!r} lists",
        )
        wait_until(lambda: self.pending() == 0, 30, interval_s=0.1, what="no entry pending")
        assert contents(self.swift, self.dst) == contents(self.ceph, self.src)
        log = self.listener.output()
        assert " failed key=" not in log and "Traceback" not in log, log[-4000:]

    def stop(self) -> None:
        self.listener.stop()
        self.intake.stop()


def start_pipeline(
    tmp_path: Path, ceph: dict, swift: dict, names, redis_url: str, *, src: str | None = None
) -> Pipeline:
    """A source bucket on RGW (``src`` or a new one), a new destination bucket on Swift, an
    INI for both, and s3s3intake and s3s3listen running on it."""
    if src is None:
        src = unique_bucket("rgwp")
        raw_client(ceph).create_bucket(Bucket=src)
    dst = unique_bucket("swp")
    raw_client(swift).create_bucket(Bucket=dst)
    token = f"tok-{uuid.uuid4().hex}"
    port = free_port()
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(ceph, src),
        dests=[(swift, dst)],
        channel=names.channel,
        redis_url=redis_url,
        mode="stream",
        listen={"delete": "true"},
    )
    with ini.open("a") as f:
        f.write(f"\n[http]\ntoken = {token}\nport = {port}\n\n[bucket]\ndelete = true\n")
    keep_every_entry(redis_url, names.stream)
    # -v: the intake logs each POST it accepted at DEBUG, which is how RGW's deliveries are
    # counted.
    intake = ListenerProcess(
        ini, tmp_path / "intake.log", module="s3s3.scripts.intake", args=("-v",)
    ).start(ready="taking events from")
    try:
        listener = ListenerProcess(ini, tmp_path / "listen.log").start()
    except BaseException:
        intake.stop()
        raise
    return Pipeline(
        ceph, swift, src, dst, ini, token, port, names.stream, redis_url, intake, listener
    )


def keep_every_entry(redis_url: str, stream: str) -> None:
    """A consumer group of the test's own that never reads: the listener trims only what
    every group has acknowledged (``XTRIM MINID``), so every entry the intake writes stays
    for :meth:`Pipeline.arrivals` however long the test takes to look."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.xgroup_create(stream, "test-audit", id="0", mkstream=True)
    finally:
        client.close()


@pytest.fixture
def pipelines():
    """Stops the pipelines a test started (those a persistent topic needs are kept)."""
    started: list[Pipeline] = []
    yield started
    for p in started:
        p.stop()


# --------------------------------------------------------------------------- state


def listing(info: dict, bucket: str) -> dict[str, int]:
    client = raw_client(info)
    out: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", ())})
    return out


def contents(info: dict, bucket: str) -> dict[str, tuple[int, str]]:
    """Every key with its size and the md5 of its bytes (not the ETag: a multipart ETag is
    not an md5, and the two stores need not split an object alike)."""
    client = raw_client(info)
    out = {}
    for key in listing(info, bucket):
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        out[key] = (len(data), hashlib.md5(data).hexdigest())
    return out


def rgw_document(bucket: str, key: str, *, size: int) -> bytes:
    """A body as RGW 16.2 POSTs for a PUT of ``key`` now (its sequencer: the clock's
    seconds, then nanoseconds, 4 bytes each, little-endian, in hex)."""
    now = time.time_ns()
    sequencer = (
        ((now // 1_000_000_000).to_bytes(4, "little") + (now % 1_000_000_000).to_bytes(4, "little"))
        .hex()
        .upper()
    )
    record = {
        "eventVersion": "2.2",
        "eventSource": "ceph:s3",
        "awsRegion": "",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now / 1e9)),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "eTag": "",
                "versionId": "",
                "sequencer": sequencer,
            },
        },
        "eventId": f"{now}.test",
    }
    return json.dumps({"Records": [record]}).encode()


def accepted_posts(p: Pipeline) -> int:
    """How many POSTs the intake answered 200 (its DEBUG line for each)."""
    return p.intake.output().count("HTTP intake: POST /*** from")


# --------------------------------------------------------------------------- the workload

#: Keys a store or a URL may mangle: a space, a '+', an encoded slash, unicode.
ODD_KEYS = ("with space.txt", "plus+sign", "dir/x%2Fy", "ü/日本語")


def run_workload(s3, bucket: str) -> list[tuple[str, str]]:
    """Odd keys, a multipart upload, a copy, overwrites and deletes (one DeleteObject at a
    time: the bucket is notified); returns the (key, event) RGW should send, in order."""
    ops: list[tuple[str, str]] = []

    def put(key: str, size: int) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(size))
        ops.append((key, "ObjectCreated:Put"))

    def delete(key: str) -> None:
        s3.delete_object(Bucket=bucket, Key=key)
        ops.append((key, "ObjectRemoved:Delete"))

    for i, key in enumerate(ODD_KEYS):
        put(key, 100 + i)
    multi = "multi/two parts+ü"
    upload = s3.create_multipart_upload(Bucket=bucket, Key=multi)["UploadId"]
    parts = []
    for number in (1, 2):
        etag = s3.upload_part(
            Bucket=bucket, Key=multi, UploadId=upload, PartNumber=number, Body=os.urandom(5 * MiB)
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket=bucket, Key=multi, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    ops.append((multi, "ObjectCreated:CompleteMultipartUpload"))
    s3.copy_object(Bucket=bucket, Key="copy of plus+sign", CopySource=f"{bucket}/plus+sign")
    ops.append(("copy of plus+sign", "ObjectCreated:Copy"))
    for size in (10, 20, 30):  # sizes differ, so a listing tells the versions apart
        put("over written", size)
    put("gone soon ü+", 40)
    delete("gone soon ü+")
    put("dir/x%2Fy", 50)  # an odd key overwritten...
    delete("with space.txt")  # ...and one deleted
    return ops


def check_replicated(p: Pipeline, ops: list[tuple[str, str]], *, exact: bool) -> None:
    p.wait_equal()
    arrivals = p.arrivals()
    if exact:
        # A synchronous topic POSTs before it answers the request: one each, in order.
        assert [(key, event) for key, event, _ in arrivals] == ops
    else:
        # A persistent one may send an event twice, and in any order: each operation is
        # one sequence number, and every one arrived.
        distinct = Counter((key, event) for key, event, _ in set(arrivals))
        assert distinct == Counter(ops)
    copied = p.listener.output().count("copied key=")
    assert 1 <= copied <= sum(1 for _, event in ops if event.startswith("ObjectCreated"))


# --------------------------------------------------------------------------- the tests


def test_synchronous_topic_replicates_odd_keys_multipart_copies_overwrites_deletes(
    tmp_path, ceph, swift, names, redis_url, sync_topic, pipelines
):
    p = start_pipeline(tmp_path, ceph, swift, names, redis_url)
    pipelines.append(p)
    sync_topic(p.endpoint, p.src)
    ops = run_workload(raw_client(ceph), p.src)
    check_replicated(p, ops, exact=True)
    assert accepted_posts(p) == len(ops)


def test_events_out_of_order_and_twice_end_as_the_source_is_without_a_copy(
    tmp_path, ceph, swift, names, redis_url, sync_topic, pipelines
):
    # Real RGW events, recorded by an endpoint of the test's own.
    src = unique_bucket("rgwo")
    s3 = raw_client(ceph)
    s3.create_bucket(Bucket=src)
    recorder = Receiver()
    try:
        sync_topic(recorder.url, src)
        for body in (b"v1" * 50, b"v2" * 70):
            s3.put_object(Bucket=src, Key="k ü+", Body=body)
        s3.delete_object(Bucket=src, Key="k ü+")
        s3.put_object(Bucket=src, Key="k ü+", Body=b"v3" * 90)
        s3.put_object(Bucket=src, Key="j%2F", Body=b"w1" * 30)
        s3.delete_object(Bucket=src, Key="j%2F")
        v1, v2, k_delete, v3, w1, j_delete = recorder.bodies
    finally:
        recorder.close()
    assert [(r["s3"]["object"]["key"], r["eventName"]) for r in recorder.records()] == [
        ("k ü+", "ObjectCreated:Put"),
        ("k ü+", "ObjectCreated:Put"),
        ("k ü+", "ObjectRemoved:Delete"),
        ("k ü+", "ObjectCreated:Put"),
        ("j%2F", "ObjectCreated:Put"),
        ("j%2F", "ObjectRemoved:Delete"),
    ]
    p = start_pipeline(tmp_path, ceph, swift, names, redis_url, src=src)
    pipelines.append(p)

    def post(body: bytes) -> None:
        assert p.post(body) == (200, {"queued": 1, "skipped": 0})

    # The latest event first: its copy is the one copy of "k ü+".
    post(v3)
    p.listener.wait_for("copied key='k ü+'")
    # Acknowledged: the job's sequence is recorded as applied right after.
    wait_until(lambda: p.pending() == 0, what="the copy of the latest event acknowledged")
    # Then what came before it, and it again: all stale, whatever order they come in.
    for body in (v1, k_delete, v2, v3):
        post(body)
    # A delete that arrives before the PUT it followed: the PUT is stale.
    post(j_delete)
    wait_until(lambda: "key='j%2F'" in p.listener.output(), what="the delete of 'j%2F'")
    post(w1)
    post(w1)
    wait_until(lambda: p.listener.output().count("(stale: ") == 6, what="six stale events dropped")
    p.wait_equal()
    assert contents(swift, p.dst) == {"k ü+": (180, hashlib.md5(b"v3" * 90).hexdigest())}
    log = p.listener.output()
    assert log.count("copied key=") == 1
    assert log.count("skipped key='k ü+' event=ObjectCreated:Put (stale: ") == 3
    assert log.count("skipped key='k ü+' event=ObjectRemoved:Delete (stale: ") == 1
    assert log.count("skipped key='j%2F' event=ObjectCreated:Put (stale: ") == 2


def test_intake_down_while_a_synchronous_topic_fires_then_the_bucket_job_repairs(
    tmp_path, ceph, swift, names, redis_url, sync_topic, pipelines
):
    p = start_pipeline(tmp_path, ceph, swift, names, redis_url)
    pipelines.append(p)
    sync_topic(p.endpoint, p.src)
    s3 = raw_client(ceph)
    for i in range(3):
        s3.put_object(Bucket=p.src, Key=f"before/{i} +", Body=os.urandom(1000 + i))
    p.wait_equal()
    written = len(p.arrivals())
    p.intake.kill()  # nothing listens on the endpoint now: RGW's POSTs are refused
    s3.put_object(Bucket=p.src, Key="during/new ü", Body=os.urandom(2000))
    s3.put_object(Bucket=p.src, Key="before/0 +", Body=os.urandom(2001))  # overwritten
    s3.delete_object(Bucket=p.src, Key="before/1 +")
    assert len(p.arrivals()) == written  # RGW dropped them: the PUTs answered all the same
    assert listing(swift, p.dst) != listing(ceph, p.src)
    result = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.bucket", "--config", str(p.ini)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert contents(swift, p.dst) == contents(ceph, p.src)
    assert set(contents(swift, p.dst)) == {"before/0 +", "before/2 +", "during/new ü"}


def test_persistent_topic_replicates_odd_keys_multipart_copies_overwrites_deletes(
    tmp_path, ceph, swift, names, redis_url, warm_topic
):
    p = start_pipeline(tmp_path, ceph, swift, names, redis_url)
    warm_topic.keep.append(p)
    try:
        warm_topic.point_at(p.endpoint, p.src)
        ops = run_workload(raw_client(ceph), p.src)
        check_replicated(p, ops, exact=False)
        assert accepted_posts(p) >= len(ops)
    finally:
        rgw_topics.detach(ceph, p.src)
        p.listener.stop()


def test_redis_down_while_a_persistent_topic_pushes_nothing_is_lost(
    tmp_path, ceph, swift, names, warm_topic
):
    server = PrivateRedis(tmp_path / "redis").start()  # persistent: the stream outlives a stop
    warm_topic.keep.append(server)
    p = start_pipeline(tmp_path, ceph, swift, names, server.url)
    warm_topic.keep.append(p)
    try:
        warm_topic.point_at(p.endpoint, p.src)
        s3 = raw_client(ceph)
        for i in range(3):
            s3.put_object(Bucket=p.src, Key=f"before/{i} +", Body=os.urandom(1000 + i))
        p.wait_equal()
        server.stop()
        ops = [(f"during/{i} ü", "ObjectCreated:Put") for i in range(5)]
        for key, _ in ops:
            s3.put_object(Bucket=p.src, Key=key, Body=os.urandom(3000))
        s3.put_object(Bucket=p.src, Key="before/0 +", Body=os.urandom(3001))
        s3.delete_object(Bucket=p.src, Key="before/1 +")
        p.intake.wait_for("HTTP intake: 503 for POST /***", timeout_s=30)
        status, headers, _ = p.post_answer(rgw_document(p.src, "during/0 ü", size=3000))
        assert (status, headers.get("Retry-After")) == (503, "1")
        held = accepted_posts(p)
        time.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
        assert accepted_posts(p) == held  # nothing was taken while Redis was down
        server.start()
        p.wait_equal()
        assert set(listing(ceph, p.src)) == {
            "before/0 +",
            "before/2 +",
            *(key for key, _ in ops),
        }
        ops += [("before/0 +", "ObjectCreated:Put"), ("before/1 +", "ObjectRemoved:Delete")]
        assert set(ops) <= {(key, event) for key, event, _ in p.arrivals()}
    finally:
        if server.proc is not None and server.proc.poll() is not None:
            server.start()  # so what RGW still retries lands, instead of looping on 503s
        rgw_topics.detach(ceph, p.src)
        p.listener.stop()
