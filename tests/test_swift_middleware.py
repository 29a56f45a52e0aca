"""The Swift proxy middleware (s3s3.queue.swift_middleware) in real Swift proxies.

A private Swift with the filter in its pipeline announces writes made through s3api (boto3)
and through the native Swift API (tempauth, http.client) to a stream of this module's own;
a real listener then replicates them to the session's Ceph RGW. A second private Swift,
pointed at a private redis-server that the tests stop and start, carries two filters: one
that queues while Redis is away, one with ``require_announce``. The pure parts (reading a
request, the options, Swift timestamps) are checked on their own, and the module is imported
where boto3 and botocore cannot be.
"""

from __future__ import annotations

import http.client
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import boto3
import botocore.config
import botocore.exceptions
import pytest
import redis
from conftest import ROOT, raw_client, unique_bucket
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_server import PrivateRedis
from test_listener_support import wait_until, write_ini

from s3s3.config import RedisConfig, load
from s3s3.errors import ConfigError
from s3s3.listener.daemon import Listener, Status
from s3s3.queue.intake import open_intake
from s3s3.queue.redis_client import connect
from s3s3.queue.swift_backlog import Backlog, RedisHealth
from s3s3.queue.swift_options import SwiftOptions, options_from
from s3s3.queue.swift_requests import Write, timestamp_order, write_of
from s3s3.queue.tally import Tally
from servers import swift_s3api
from servers.swift_s3api import ProxyFilter

FACTORY = "s3s3.queue.swift_middleware:filter_factory"
MiB = 1024 * 1024


def s3s3_filter(name: str, **options: str) -> ProxyFilter:
    """The filter at the position the module's docstring recommends: right after slo."""
    return ProxyFilter(name, {"paste.filter_factory": FACTORY, **options}, after="slo")


# --------------------------------------------------------------------------- helpers


class NativeSwift:
    """The native Swift API of one proxy, with a tempauth token (GET /auth/v1.0)."""

    def __init__(self, info: dict) -> None:
        parts = urlsplit(info["endpoint_url"])
        self.host, self.port = parts.hostname, parts.port
        status, headers, _, _ = self._send(
            "GET",
            "/auth/v1.0",
            headers={"X-Auth-User": swift_s3api.ACCESS_KEY, "X-Auth-Key": swift_s3api.SECRET_KEY},
        )
        assert status == 200, status
        self.token = headers["X-Auth-Token"]
        self.account_path = urlsplit(headers["X-Storage-Url"]).path  # /v1/AUTH_test
        assert self.account_path == "/v1/AUTH_test"

    def _send(self, method: str, path: str, *, body: bytes = b"", headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        began = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, dict(response.getheaders()), data, time.monotonic() - began

    def request(self, method: str, container: str, key: str = "", *, body=b"", headers=None):
        """(status, body, seconds) of one request on ``container`` or one of its objects."""
        path = f"{self.account_path}/{quote(container)}"
        if key:
            path += "/" + quote(key, safe="/")
        status, _, data, elapsed = self._send(
            method, path, body=body, headers={"X-Auth-Token": self.token, **(headers or {})}
        )
        return status, data, elapsed


def stream_entries(client: redis.Redis, stream: str, bucket: str) -> list[dict[str, str]]:
    """The entries of ``stream`` for ``bucket``, in order, fields decoded."""
    found = []
    for _, fields in client.xrange(stream):
        entry = {k.decode(): v.decode("utf-8") for k, v in fields.items()}
        if entry.get("bucket") == bucket:
            found.append(entry)
    return found


def ops_of(entries: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(e["op"], e["key"], e["event"]) for e in entries]


def wait_for_entries(client, stream, bucket, count, timeout_s=15.0) -> list[dict[str, str]]:
    return wait_until(
        lambda: (found := stream_entries(client, stream, bucket)) and len(found) >= count and found,
        timeout_s,
        0.05,
        what=f"{count} entries for {bucket} in {stream}",
    )


def listing(info: dict, bucket: str) -> dict[str, int]:
    client = raw_client(info)
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        sizes.update((o["Key"], o["Size"]) for o in page.get("Contents", ()))
    return sizes


def contents(info: dict, bucket: str) -> dict[str, bytes]:
    client = raw_client(info)
    return {
        key: client.get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in listing(info, bucket)
    }


def replicate(tmp_path: Path, swift: Announcing, container: str, ceph: dict, dest: str) -> None:
    """Run a real listener (stream mode, deletes on) on the module's stream until the Ceph
    bucket lists what the Swift container holds; then stop it."""
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(swift.info, container),
        dests=[(ceph, dest)],
        channel=swift.channel,
        redis_url=swift.redis_url,
        mode="stream",
        # A group of the test's own reads the module's stream from its start.
        pubsub={"stream": swift.stream, "group": f"g-{uuid.uuid4().hex[:8]}"},
        listen={"delete": "true", "workers": "4"},
    )
    listener = Listener(load(str(ini)), open_intake=open_intake)
    stop = threading.Event()
    result: list = []
    thread = threading.Thread(target=lambda: result.append(listener.run(stop=stop)), daemon=True)
    thread.start()
    try:
        wanted = listing(swift.info, container)

        def caught_up() -> bool:
            if not thread.is_alive():
                raise AssertionError(f"the listener stopped early: {result}")
            return listing(ceph, dest) == wanted

        wait_until(caught_up, 60.0, 0.2, what=f"{dest} to list what {container} holds")
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the listener did not stop"
    assert [stopped.status for stopped in result] == [Status.STOPPED], result


@dataclass
class Announcing:
    """The private Swift whose filter announces everything in AUTH_test to ``stream``."""

    info: dict
    stream: str
    channel: str
    redis_url: str
    redis: redis.Redis


@pytest.fixture(scope="module")
def announcing(tmp_path_factory, redis_url):
    channel = f"swm-{uuid.uuid4().hex[:10]}"
    stream = "s3s3:{" + channel + "}:stream"
    workdir = tmp_path_factory.mktemp("swift-announcing")
    info = swift_s3api.start(
        workdir,
        tls=False,
        filters=[s3s3_filter("s3s3", redis_url=redis_url, stream=stream, accounts="AUTH_test")],
        python_path=[ROOT],
    )
    client = redis.Redis.from_url(redis_url)
    try:
        yield Announcing(info, stream, channel, redis_url, client)
    finally:
        swift_s3api.stop(workdir)
        try:
            client.delete(stream)
            markers = list(client.scan_iter(match=f"{channel}=>*", count=1000))
            if markers:
                client.delete(*markers)
        finally:
            client.close()


@pytest.fixture
def ceph_bucket(ceph):
    """An empty bucket on the session's Ceph RGW (no notifications), emptied afterwards."""
    bucket = unique_bucket("swm")
    client = raw_client(ceph)
    client.create_bucket(Bucket=bucket)
    yield bucket
    for key in listing(ceph, bucket):
        client.delete_object(Bucket=bucket, Key=key)
    client.delete_bucket(Bucket=bucket)


# --------------------------------------------------------------------------- replication

#: Keys that a decoding slip would change: spaces, "+", a literal "%2F", unicode, nesting.
HARD_KEYS = [
    "plain.txt",
    "with space.txt",
    "a+b.txt",
    "literal%2Fslash",
    "dir/sub/ünïcødé €.txt",
    "日本語/ファイル 1+1",
    " leading and trailing ",
]


def test_s3api_writes_are_announced_and_replicated_to_ceph(tmp_path, announcing, ceph, ceph_bucket):
    info, r = announcing.info, announcing.redis
    bucket = unique_bucket("s3api")
    s3 = raw_client(info)
    s3.create_bucket(Bucket=bucket)
    for i, key in enumerate(HARD_KEYS):
        s3.put_object(Bucket=bucket, Key=key, Body=f"body {i} of {key}".encode())
    # Multipart uploads: the parts go to <bucket>+segments, the completion is a manifest
    # PUT of the key. One is kept, one deleted (an SLO delete: segments, then the manifest).
    for key in ("multi part/big.bin", "multi/doomed.bin"):
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for number, body in ((1, os.urandom(5 * MiB)), (2, os.urandom(1000))):
            etag = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body
            )["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )
    s3.copy_object(
        Bucket=bucket, Key="copy of a+b.txt", CopySource={"Bucket": bucket, "Key": "a+b.txt"}
    )
    s3.delete_object(Bucket=bucket, Key="a+b.txt")
    s3.delete_object(Bucket=bucket, Key="multi/doomed.bin")

    expected = [
        *(("copy", key, "ObjectCreated:Put") for key in HARD_KEYS),
        ("copy", "multi part/big.bin", "ObjectCreated:CompleteMultipartUpload"),
        ("copy", "multi/doomed.bin", "ObjectCreated:CompleteMultipartUpload"),
        ("copy", "copy of a+b.txt", "ObjectCreated:Copy"),
        ("delete", "a+b.txt", "ObjectRemoved:Delete"),
        ("delete", "multi/doomed.bin", "ObjectRemoved:Delete"),
    ]
    entries = wait_for_entries(r, announcing.stream, bucket, len(expected))
    assert ops_of(entries) == expected
    assert all(e["via"] == "swift" for e in entries)
    # Swift's X-Timestamp orders the writes: later writes have larger sequences.
    sequences = [int(e["seq"]) for e in entries]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    # Nothing of the uploads' parts, markers or segment deletes reached the stream.
    buckets = {f[b"bucket"] for _, f in r.xrange(announcing.stream)}
    assert not [b for b in buckets if b.endswith(b"+segments")]

    replicate(tmp_path, announcing, bucket, ceph, ceph_bucket)
    source = contents(info, bucket)
    assert sorted(source) == sorted(
        [k for k in HARD_KEYS if k != "a+b.txt"] + ["multi part/big.bin", "copy of a+b.txt"]
    )
    assert contents(ceph, ceph_bucket) == source


def test_native_swift_writes_are_announced_and_replicated_to_ceph(
    tmp_path, announcing, ceph, ceph_bucket
):
    info, r = announcing.info, announcing.redis
    swift = NativeSwift(info)
    container = unique_bucket("native")
    assert swift.request("PUT", container)[0] == 201
    keys = ["native one.txt", "plus+sign", "literal%2Fslash", "ünï/cødé ✓.txt"]
    for key in keys:
        assert swift.request("PUT", container, key, body=f"native {key}".encode())[0] == 201
    assert (
        swift.request("POST", container, "native one.txt", headers={"X-Object-Meta-Color": "blue"})[
            0
        ]
        == 202
    )
    # COPY names its destination in a percent-encoded header; PUT names its source.
    destination = f"{container}/{quote('copied by COPY ✓.txt')}"
    assert (
        swift.request("COPY", container, "ünï/cødé ✓.txt", headers={"Destination": destination})[0]
        == 201
    )
    copy_from = f"/{container}/{quote('plus+sign')}"
    assert (
        swift.request(
            "PUT", container, "copied+by x-copy-from", headers={"X-Copy-From": copy_from}
        )[0]
        == 201
    )
    assert swift.request("DELETE", container, "plus+sign")[0] == 204
    # Not announced: a read, a failed write, a write elsewhere, a container request.
    assert swift.request("GET", container, "native one.txt")[0] == 200
    assert swift.request("DELETE", container, "never there")[0] == 404
    assert swift.request("POST", container, headers={"X-Container-Meta-A": "b"})[0] == 204

    expected = [
        *(("copy", key, "ObjectCreated:Put") for key in keys),
        ("copy", "native one.txt", "ObjectCreated:Post"),
        ("copy", "copied by COPY ✓.txt", "ObjectCreated:Copy"),
        ("copy", "copied+by x-copy-from", "ObjectCreated:Copy"),
        ("delete", "plus+sign", "ObjectRemoved:Delete"),
    ]
    entries = wait_for_entries(r, announcing.stream, container, len(expected))
    assert ops_of(entries) == expected

    replicate(tmp_path, announcing, container, ceph, ceph_bucket)
    source = contents(info, container)
    assert sorted(source) == sorted(
        [
            "native one.txt",
            "literal%2Fslash",
            "ünï/cødé ✓.txt",
            "copied by COPY ✓.txt",
            "copied+by x-copy-from",
        ]
    )
    assert source["copied by COPY ✓.txt"] == "native ünï/cødé ✓.txt".encode()
    assert contents(ceph, ceph_bucket) == source


# --------------------------------------------------------------------------- Redis away


@dataclass
class Outage:
    """The private Swift whose two filters write to a private, stoppable Redis."""

    info: dict
    server: PrivateRedis
    stream: str
    queued: str  # container of the filter that queues while Redis is away
    strict: str  # container of the filter with require_announce
    log: Path

    def client(self) -> redis.Redis:
        return self.server.client()

    def log_since(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode("utf-8", "replace")


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("swift-redis")).start()
    stream = "s3s3:{swm-outage}:stream"
    queued, strict = unique_bucket("queued"), unique_bucket("strict")
    common = {"redis_url": server.url, "stream": stream, "timeout": "1"}
    workdir = tmp_path_factory.mktemp("swift-outage")
    try:
        info = swift_s3api.start(
            workdir,
            tls=False,
            filters=[
                s3s3_filter(
                    "s3s3queued", containers=queued, queue_size="4", retry_max="0.3", **common
                ),
                s3s3_filter("s3s3strict", containers=strict, require_announce="true", **common),
            ],
            python_path=[ROOT],
        )
        try:
            yield Outage(info, server, stream, queued, strict, workdir / "log" / "proxy-server.log")
        finally:
            swift_s3api.stop(workdir)
    finally:
        server.stop()


def test_redis_down_never_fails_or_delays_a_write_and_drops_beyond_the_queue(outage):
    swift = NativeSwift(outage.info)
    c = outage.queued
    assert swift.request("PUT", c)[0] == 201
    assert swift.request("PUT", c, "before", body=b"before")[0] == 201
    r = outage.client()
    try:
        assert [e["key"] for e in wait_for_entries(r, outage.stream, c, 1)] == ["before"]
    finally:
        r.close()

    offset = outage.log.stat().st_size
    outage.server.stop()
    answers = [swift.request("PUT", c, f"down-{i}", body=b"x" * 1000) for i in range(10)]
    assert [status for status, _, _ in answers] == [201] * 10
    slowest = max(elapsed for _, _, elapsed in answers)
    assert slowest < 1.0, f"a write took {slowest:.2f}s while Redis was down"
    # The queue holds 4; the 6 after them are dropped, logged once, with the first key.
    wait_until(lambda: "dropping" in outage.log_since(offset), 10, what="the drop line")
    log = outage.log_since(offset)
    assert log.count("cannot take announcements") == 1, log
    assert log.count("is full (4): dropping announcements") == 1, log
    assert "the first for key 'down-4'" in log

    outage.server.start()  # the same port, and the append-only file keeps the stream
    r = outage.client()
    try:
        keys = ["before", *(f"down-{i}" for i in range(4))]
        wait_until(
            lambda: [e["key"] for e in stream_entries(r, outage.stream, c)] == keys,
            15,
            what="the queued announcements to be written",
        )
        assert swift.request("PUT", c, "after", body=b"after")[0] == 201
        wait_until(
            lambda: [e["key"] for e in stream_entries(r, outage.stream, c)] == [*keys, "after"],
            15,
            what="the announcement of a write after Redis came back",
        )
    finally:
        r.close()
    log = outage.log_since(offset)
    assert log.count("takes announcements again") == 1, log
    assert "6 were dropped while it was full" in log
    assert log.count("cannot take announcements") == 1, log


def test_require_announce_answers_503_while_redis_is_down(outage):
    swift = NativeSwift(outage.info)
    c = outage.strict
    assert swift.request("PUT", c)[0] == 201
    r = outage.client()
    try:
        assert swift.request("PUT", c, "first", body=b"1")[0] == 201
        # The XADD is done in the request: the entry is there when the answer is.
        assert [e["key"] for e in stream_entries(r, outage.stream, c)] == ["first"]
    finally:
        r.close()
    # A multipart upload through s3api whose completion (slo's manifest PUT) meets Redis down.
    s3 = boto3.client(
        "s3",
        endpoint_url=outage.info["endpoint_url"],
        aws_access_key_id=outage.info["access_key"],
        aws_secret_access_key=outage.info["secret_key"],
        region_name=outage.info["region"],
        config=botocore.config.Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}
        ),
    )
    upload = s3.create_multipart_upload(Bucket=c, Key="multi part")["UploadId"]
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=c, Key="multi part", UploadId=upload, PartNumber=n, Body=body
            )["ETag"],
        }
        for n, body in ((1, os.urandom(5 * MiB)), (2, b"end"))
    ]

    def complete():
        return s3.complete_multipart_upload(
            Bucket=c, Key="multi part", UploadId=upload, MultipartUpload={"Parts": parts}
        )

    offset = outage.log.stat().st_size
    outage.server.stop()
    status, body, elapsed = swift.request("PUT", c, "second", body=b"2")
    assert status == 503 and b"could not be announced" in body
    assert elapsed < 1.0
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        complete()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    # The backend had written both: the clients' retries announce them.
    assert swift.request("HEAD", c, "second")[0] == 200
    assert swift.request("HEAD", c, "multi part")[0] == 200
    assert "writes are answered 503 until it is back" in outage.log_since(offset)

    outage.server.start()
    assert swift.request("PUT", c, "second", body=b"2")[0] == 201
    assert complete()["ResponseMetadata"]["HTTPStatusCode"] == 200
    r = outage.client()
    try:
        assert ops_of(stream_entries(r, outage.stream, c)) == [
            ("copy", "first", "ObjectCreated:Put"),
            ("copy", "second", "ObjectCreated:Put"),
            ("copy", "multi part", "ObjectCreated:CompleteMultipartUpload"),
        ]
    finally:
        r.close()
    log = outage.log_since(offset)
    assert log.count("cannot take announcements") == 1, log
    assert log.count("takes announcements again") == 1, log


def test_the_backlog_counts_what_it_writes_and_what_it_drops(tmp_path, caplog):
    # The writer, as the proxy runs it, without the proxy: a Redis that is not there yet.
    server = PrivateRedis(tmp_path / "redis")
    cfg = RedisConfig(url=server.url, mode="stream", stream="s3s3:{swm-backlog}:stream")
    tally = Tally()
    log = logging.getLogger("s3s3.test.backlog")
    client = connect(cfg, socket_connect_timeout=1, retry=Retry(NoBackoff(), 1))
    health = RedisHealth(cfg, log=log, tally=tally, consequence="they wait")
    backlog = Backlog(client, cfg, size=4, health=health, tally=tally, log=log, retry_max_s=0.2)
    try:
        with caplog.at_level(logging.WARNING, logger="s3s3.test.backlog"):
            offered = [backlog.offer({"key": f"k{i}", "op": "copy"}) for i in range(6)]
            assert offered == [True] * 4 + [False] * 2
            assert tally.get("records", outcome="dropped", intake="swift") == 2
            wait_until(lambda: tally.get("outages", intake="swift") == 1, 10, what="the outage")
            server.start()
            wait_until(lambda: backlog.pending() == 0, 15, what="the backlog to drain")
        assert tally.get("records", outcome="queued", intake="swift") == 4
        assert tally.get("outages", intake="swift") == 1
        assert [f[b"key"] for _, f in server.client().xrange(cfg.stream)] == [
            b"k0",
            b"k1",
            b"k2",
            b"k3",
        ]
        messages = [rec.getMessage() for rec in caplog.records]
        assert sum("cannot take announcements" in m for m in messages) == 1
        assert sum("takes announcements again" in m for m in messages) == 1
        assert sum("2 were dropped while it was full" in m for m in messages) == 1
    finally:
        backlog.close()
        client.close()
        server.stop()


# --------------------------------------------------------------------------- pure parts


def wsgi(text: str) -> str:
    """``text`` as a WSGI string: its UTF-8 bytes, one latin-1 character each."""
    return text.encode("utf-8").decode("latin-1")


def env_of(method: str, path: str, **extra) -> dict:
    return {"REQUEST_METHOD": method, "PATH_INFO": wsgi(path), "QUERY_STRING": "", **extra}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            env_of("PUT", "/v1/AUTH_test/c/with space"),
            Write("copy", "AUTH_test", "c", "with space", "ObjectCreated:Put"),
        ),
        (
            env_of("PUT", "/v1/AUTH_test/c/a+b"),
            Write("copy", "AUTH_test", "c", "a+b", "ObjectCreated:Put"),
        ),
        # The server has percent-decoded the path once: a "%2F" left is the key's own.
        (
            env_of("PUT", "/v1/AUTH_test/c/lit%2Fslash"),
            Write("copy", "AUTH_test", "c", "lit%2Fslash", "ObjectCreated:Put"),
        ),
        (
            env_of("PUT", "/v1/AUTH_test/c/dir/ü €/日本"),
            Write("copy", "AUTH_test", "c", "dir/ü €/日本", "ObjectCreated:Put"),
        ),
        (
            env_of("PUT", "/v1.0/AUTH_test/ç/k"),
            Write("copy", "AUTH_test", "ç", "k", "ObjectCreated:Put"),
        ),
        (
            env_of("POST", "/v1/AUTH_test/c/k"),
            Write("copy", "AUTH_test", "c", "k", "ObjectCreated:Post"),
        ),
        (
            env_of("DELETE", "/v1/AUTH_test/c/k"),
            Write("delete", "AUTH_test", "c", "k", "ObjectRemoved:Delete"),
        ),
        (
            env_of("PUT", "/v1/AUTH_test/c/k", HTTP_X_COPY_FROM="/c/src"),
            Write("copy", "AUTH_test", "c", "k", "ObjectCreated:Copy"),
        ),
        (
            env_of("PUT", "/v1/AUTH_test/c/k", **{"swift.source": "SSC"}),
            Write("copy", "AUTH_test", "c", "k", "ObjectCreated:Copy"),
        ),
        (
            env_of("PUT", "/v1/AUTH_test/c/k", QUERY_STRING="multipart-manifest=put&heartbeat=on"),
            Write("copy", "AUTH_test", "c", "k", "ObjectCreated:CompleteMultipartUpload"),
        ),
        # COPY writes its Destination (percent-encoded), in Destination-Account if given.
        (
            env_of("COPY", "/v1/AUTH_test/c/src", HTTP_DESTINATION="d/copy%20%C3%BC%252F+"),
            Write("copy", "AUTH_test", "d", "copy ü%2F+", "ObjectCreated:Copy"),
        ),
        (
            env_of(
                "COPY",
                "/v1/AUTH_test/c/src",
                HTTP_DESTINATION="/d/k",
                HTTP_DESTINATION_ACCOUNT="AUTH_other",
            ),
            Write("copy", "AUTH_other", "d", "k", "ObjectCreated:Copy"),
        ),
        (env_of("COPY", "/v1/AUTH_test/c/src"), None),
        (env_of("COPY", "/v1/AUTH_test/c/src", HTTP_DESTINATION="only-a-container"), None),
        (env_of("GET", "/v1/AUTH_test/c/k"), None),
        (env_of("HEAD", "/v1/AUTH_test/c/k"), None),
        (env_of("PUT", "/v1/AUTH_test/c"), None),
        (env_of("PUT", "/v1/AUTH_test/c/"), None),
        (env_of("POST", "/v1/AUTH_test"), None),
        (env_of("PUT", "/bucket/key"), None),  # an S3 path s3api did not translate
        (env_of("DELETE", "/auth/v1.0/x/y"), None),
        ({"REQUEST_METHOD": "PUT", "PATH_INFO": "/v1/AUTH_test/c/\xff"}, None),  # not UTF-8
    ],
)
def test_a_request_names_its_write_with_the_key_exactly(env, expected):
    assert write_of(env) == expected


def test_segments_reserved_and_unlisted_containers_are_not_covered():
    everything = options_from({})
    some = options_from({"accounts": "AUTH_a, AUTH_b", "containers": "photos,with space"})
    assert everything.covers(Write("copy", "AUTH_x", "any", "k", "e"))
    assert not everything.covers(Write("copy", "AUTH_x", "any+segments", "k", "e"))
    assert not everything.covers(Write("copy", "AUTH_x", "\x00versions\x00any", "k", "e"))
    assert some.covers(Write("copy", "AUTH_b", "with space", "k", "e"))
    assert not some.covers(Write("copy", "AUTH_c", "photos", "k", "e"))
    assert not some.covers(Write("copy", "AUTH_a", "videos", "k", "e"))


def test_options_defaults_match_the_pubsub_section(tmp_path):
    ini = tmp_path / "s3s3.ini"
    ini.write_text("[source]\nbucket_name = a\n[dest1]\nbucket_name = b\n[pubsub]\nmode = stream\n")
    pubsub = load(ini, search_path=[]).redis
    options = options_from({})
    assert options == SwiftOptions(
        redis=RedisConfig(mode="stream"), queue_size=10_000, timeout_s=2.0, retry_max_s=5.0
    )
    assert options.redis.stream == pubsub.stream == "s3s3:{backup}:stream"
    assert (options.redis.url, options.redis.maxlen) == (pubsub.url, pubsub.maxlen)
    given = options_from(
        {"url": "redis://h:6380/2", "stream": "s", "maxlen": "50", "require_announce": "yes"}
    )
    assert (given.redis.url, given.redis.stream, given.redis.maxlen) == (
        "redis://h:6380/2",
        "s",
        50,
    )
    assert given.require_announce


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"redis": "x", "queue": "1"},
            "unknown options 'queue', 'redis' (known: redis_url, url, password, ssl_ca_certs, "
            "stream, maxlen, accounts, containers, require_announce, queue_size, timeout, "
            "retry_max) in the s3s3 filter section (file: '/etc/swift/proxy-server.conf')",
        ),
        (
            {"url": "redis://a", "redis_url": "redis://b"},
            "'redis_url' and 'url' are alternatives; set one in the s3s3 filter section "
            "(file: '/etc/swift/proxy-server.conf')",
        ),
        (
            {"redis_url": "http://:hunter2@h/"},
            "value 'http://:***@h/' for 'redis_url' is not a redis://, rediss:// or unix:// URL "
            "in the s3s3 filter section (file: '/etc/swift/proxy-server.conf')",
        ),
        (
            {"maxlen": "lots"},
            "value 'lots' for 'maxlen' is not a valid integer in the s3s3 filter section "
            "(file: '/etc/swift/proxy-server.conf')",
        ),
        (
            {"queue_size": "0"},
            "value '0' for 'queue_size' is not between 1 and 10000000 in the s3s3 filter "
            "section (file: '/etc/swift/proxy-server.conf')",
        ),
        (
            {"require_announce": "maybe"},
            "value 'maybe' for 'require_announce' is not a valid boolean in the s3s3 filter "
            "section (file: '/etc/swift/proxy-server.conf')",
        ),
    ],
)
def test_option_errors_name_the_option_the_value_and_the_file(conf, message):
    with pytest.raises(ConfigError) as caught:
        options_from(conf, conf_file="/etc/swift/proxy-server.conf")
    assert str(caught.value) == message
    assert "hunter2" not in str(caught.value)


def test_swift_timestamps_become_sequences_in_nanoseconds():
    assert timestamp_order("1700000000.12345") == (1_700_000_000_123_450_000, 1700000000.12345)
    assert timestamp_order("1700000000.12345_000000000000000a") == (
        1_700_000_000_123_450_010,
        1700000000.12345,
    )
    assert timestamp_order("0001700000000.00000")[0] == 1_700_000_000_000_000_000
    for bad in (None, "", "soon", "1.2.3", "١٢٣.4", "1700000000.1_zz", "1" * 65):
        assert timestamp_order(bad) is None, bad


# --------------------------------------------------------------------------- imports

#: Run in a fresh interpreter: boto3, botocore and s3transfer cannot be imported.
_WITHOUT_BOTO = r"""
import importlib.abc
import sys

BLOCKED = ("boto3", "botocore", "s3transfer")


class NoBoto(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, NoBoto())
for name in [n for n in sys.modules if n.split(".")[0] in BLOCKED]:
    del sys.modules[name]

from s3s3.queue.swift_middleware import filter_factory


def app(env, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


middleware = filter_factory({}, redis_url=sys.argv[1], stream="s3s3:{noboto}:stream")(app)
seen = []
body = middleware(
    {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/AUTH_test/c/k"},
    lambda status, headers, exc_info=None: seen.append(status),
)
assert b"".join(body) == b"ok" and seen == ["200 OK"], seen
try:
    import boto3  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("the blocker let boto3 in")
loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("imported without boto3")
"""


def test_the_middleware_imports_without_boto3_or_botocore(redis_url):
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_BOTO, redis_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported without boto3"
