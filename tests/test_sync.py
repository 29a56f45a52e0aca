"""The bucket job (s3s3.bucketjob) against two moto server processes.

Requests are counted, and failures injected, by a small HTTP proxy in front of a server.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import http.client
import io
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import redis
from conftest import endpoint_config, raw_client

from s3s3.bucketjob.options import JobOptions, make_options
from s3s3.bucketjob.runner import sync_buckets
from s3s3.bucketjob.sinks import printable
from s3s3.bucketjob.summary import DestinationSummary, JobSummary, render_progress
from s3s3.config import BucketConfig, RedisConfig
from s3s3.errors import FatalEndpointError
from s3s3.listing import prefetch
from s3s3.scripts.progress import TerminalProgress, for_stream
from s3s3.store.endpoint import Endpoint

MiB = 1024 * 1024


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict

    @property
    def is_object(self) -> bool:
        """A request on a key, not on the bucket (lists, HeadBucket, DeleteObjects)."""
        return "/" in self.path.strip("/")


class CountingProxy:
    """Forwards HTTP to one upstream server, recording each request.

    ``answer`` may be set to a function ``(Seen) -> (status, xml) | None`` that answers a
    request instead of the upstream.
    """

    def __init__(self, upstream_url: str) -> None:
        self.upstream = urlsplit(upstream_url)
        self.seen: list[Seen] = []
        self.answer = None
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                parts = urlsplit(self.path)
                seen = Seen(
                    self.command, unquote(parts.path), parse_qs(parts.query, keep_blank_values=True)
                )
                with proxy._lock:
                    proxy.seen.append(seen)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                canned = proxy.answer(seen) if proxy.answer else None
                if canned is not None:
                    status, text = canned
                    data = text.encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                try:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("connection", "transfer-encoding")
                    }
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in (
                        "connection",
                        "transfer-encoding",
                        "content-length",
                        "server",
                        "date",
                    ):
                        self.send_header(key, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
                    self.end_headers()
                else:
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def object_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.is_object]

    def ops(self) -> list[str]:
        """A name per request: GetObject, HeadObject, PutObject, ListObjectsV2, ..."""
        names = []
        for s in self.seen:
            if not s.is_object:
                if s.method == "GET":
                    names.append("ListObjectsV2" if "list-type" in s.query else "ListObjects")
                elif s.method == "POST" and "delete" in s.query:
                    names.append("DeleteObjects")
                else:
                    names.append(f"{s.method.title()}Bucket")
            else:
                names.append(
                    {
                        "GET": "GetObject",
                        "HEAD": "HeadObject",
                        "PUT": "PutObject",
                        "DELETE": "DeleteObject",
                        "POST": "PostObject",
                    }[s.method]
                )
        return names


@pytest.fixture
def proxy_to():
    proxies = []

    def make(info: dict) -> CountingProxy:
        proxies.append(CountingProxy(info["endpoint_url"]))
        return proxies[-1]

    yield make
    for p in proxies:
        p.close()


def put_many(client, bucket: str, items: dict[str, bytes], *, threads: int = 16) -> None:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(
            pool.map(
                lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), items.items()
            )
        )


def contents(endpoint: Endpoint, info: dict) -> dict[str, bytes]:
    client = raw_client(info)
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=endpoint.bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = client.get_object(Bucket=endpoint.bucket, Key=item["Key"])[
                "Body"
            ].read()
    return out


def md5s_of(endpoint: Endpoint, info: dict) -> dict[str, str]:
    """Key -> ETag from a listing: the md5 of each (single-part) object's bytes."""
    client = raw_client(info)
    return {
        item["Key"]: item["ETag"].strip('"')
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=endpoint.bucket)
        for item in page.get("Contents", [])
    }


def keys_of(endpoint: Endpoint, info: dict) -> list[str]:
    client = raw_client(info)
    return [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=endpoint.bucket)
        for item in page.get("Contents", [])
    ]


def via(endpoint: Endpoint, proxy: CountingProxy, **overrides) -> Endpoint:
    """The same bucket, reached through ``proxy``."""
    return Endpoint(dataclasses.replace(endpoint.cfg, endpoint_url=proxy.url, **overrides))


#: The keywords of :func:`options` that are the run's own flags; the others are [bucket]'s.
RUN_FLAGS = ("dry_run", "enqueue", "verify_md5")


def options(**fields) -> JobOptions:
    flags = {name: fields.pop(name) for name in RUN_FLAGS if name in fields}
    return JobOptions(BucketConfig(**fields), **flags)


def run(src, dsts, **fields):
    plan = []
    summary = sync_buckets(src, dsts, options(**fields), on_plan=plan.append)
    return summary, plan


# --------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_a_large_bucket_is_duplicated_and_a_rerun_reads_nothing(moto_servers, src_dst, proxy_to):
    """More than 2,500 keys (the 2015 job stopped at 1,000); then a no-op re-run that
    costs only listings: no HEAD, no GET, no PUT."""
    a, b = moto_servers
    src, dst = src_dst
    items = {f"dir{i % 7}/k{i:05d}": b"%d" % i for i in range(2600)}
    put_many(raw_client(a), src.bucket, items)

    summary, _ = run(src, [dst], workers=32)
    (d,) = summary.destinations
    assert summary.ok
    assert (d.listed, d.copied, d.skipped, d.failed) == (2600, 2600, 0, 0)
    assert d.bytes_copied == sum(len(v) for v in items.values())
    assert md5s_of(dst, b) == {k: hashlib.md5(v).hexdigest() for k, v in items.items()}

    src_proxy, dst_proxy = proxy_to(a), proxy_to(b)
    # One page at a time: the page count below is the serial listing's.
    summary, _ = run(via(src, src_proxy), [via(dst, dst_proxy)], list_concurrency=1)
    (d,) = summary.destinations
    assert summary.ok
    assert (d.listed, d.copied, d.skipped, d.failed) == (2600, 0, 2600, 0)
    assert d.bytes_copied == 0
    assert src_proxy.object_requests() == [] and dst_proxy.object_requests() == []
    # One HeadBucket and three pages of 1,000 keys on each side.
    assert sorted(src_proxy.ops()) == ["HeadBucket"] + ["ListObjectsV2"] * 3
    assert sorted(dst_proxy.ops()) == ["HeadBucket"] + ["ListObjectsV2"] * 3


def test_a_changed_object_of_the_same_size_is_updated(moto_servers, src_dst, proxy_to):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(a), src.bucket, {"same": b"aaaa", "changed": b"bbbb"})
    run(src, [dst])
    raw_client(a).put_object(Bucket=src.bucket, Key="changed", Body=b"cccc")

    src_proxy = proxy_to(a)
    summary, _ = run(via(src, src_proxy), [dst])
    (d,) = summary.destinations
    assert (d.copied, d.skipped, d.bytes_copied) == (1, 1, 4)
    assert contents(dst, b) == {"same": b"aaaa", "changed": b"cccc"}
    # Only the changed key was read; the listing settled the other one.
    assert [(s.method, s.path) for s in src_proxy.object_requests()] == [
        ("GET", f"/{src.bucket}/changed")
    ]


def test_destination_only_keys_are_kept_unless_deletion_is_asked(moto_servers, src_dst):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(a), src.bucket, {f"k{i}": b"x" for i in range(6)})
    put_many(raw_client(b), dst.bucket, {"extra1": b"old", "extra2": b"old"})

    summary, _ = run(src, [dst])
    (d,) = summary.destinations
    assert (d.copied, d.extra, d.deleted) == (6, 2, 0)
    assert {"extra1", "extra2"} <= set(keys_of(dst, b))

    summary, _ = run(src, [dst], delete=True)
    (d,) = summary.destinations
    assert summary.ok
    assert (d.copied, d.skipped, d.extra, d.deleted) == (0, 6, 2, 2)
    assert sorted(keys_of(dst, b)) == [f"k{i}" for i in range(6)]


def test_deletion_above_max_delete_fraction_is_refused(moto_servers, src_dst):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(a), src.bucket, {"k1": b"x"})
    put_many(raw_client(b), dst.bucket, {"k1": b"x", "old1": b"x", "old2": b"x"})

    summary, _ = run(src, [dst], delete=True, max_delete_fraction=0.5)
    (d,) = summary.destinations
    assert not summary.ok and d.delete_refused
    assert d.deleted == 0
    assert d.error.startswith(
        "refusing to delete 2 of the 3 keys in scope (more than "
        "max_delete_fraction = 0.5); nothing was deleted"
    )
    assert sorted(keys_of(dst, b)) == ["k1", "old1", "old2"]

    summary, _ = run(src, [dst], delete=True, max_delete_fraction=0.7)
    assert summary.ok and summary.destinations[0].deleted == 2
    assert keys_of(dst, b) == ["k1"]


def test_an_empty_source_never_empties_the_destination(moto_servers, src_dst):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(b), dst.bucket, {"k1": b"x"})
    summary, _ = run(src, [dst], delete=True, max_delete_fraction=0.99)
    assert summary.destinations[0].delete_refused
    assert keys_of(dst, b) == ["k1"]


def test_dry_run_prints_the_plan_and_changes_nothing(moto_servers, src_dst, proxy_to):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(a), src.bucket, {"new": b"12345", "same": b"s", "two words": b"n"})
    put_many(raw_client(b), dst.bucket, {"same": b"s", "extra": b"e"})
    dst_proxy = proxy_to(b)

    summary, plan = run(
        src, [via(dst, dst_proxy)], dry_run=True, delete=True, max_delete_fraction=1.0
    )
    (d,) = summary.destinations
    assert sorted(plan) == [
        "copy [dest] new (new, 5 bytes)",
        "copy [dest] two words (new, 1 bytes)",
        "delete [dest] extra (not in the source)",
    ]
    assert (d.copied, d.skipped, d.deleted, d.bytes_copied) == (2, 1, 1, 6)
    assert sorted(keys_of(dst, b)) == ["extra", "same"]
    assert {s.method for s in dst_proxy.seen} <= {"GET", "HEAD"}
    assert dst_proxy.object_requests() == []


def test_plan_lines_quote_keys_that_would_break_them():
    assert printable("a/b c.txt") == "a/b c.txt"
    assert printable("line\nbreak") == "'line\\nbreak'"
    assert printable("trailing ") == "'trailing '"


def test_two_destinations_are_reconciled_at_once(moto_servers, make_bucket):
    a, b = moto_servers
    src = make_bucket(a, name="source")
    dst1, dst2 = make_bucket(b, name="dest1"), make_bucket(a, name="dest2")
    items = {f"k{i:02d}": bytes([i]) * (i + 1) for i in range(20)}
    put_many(raw_client(a), src.bucket, items)
    put_many(raw_client(a), dst2.bucket, {k: items[k] for k in list(items)[:10]})

    summary, _ = run(src, [dst1, dst2])
    d1, d2 = summary.destinations
    assert summary.ok
    assert (d1.name, d1.copied, d1.skipped) == ("dest1", 20, 0)
    assert (d2.name, d2.copied, d2.skipped) == ("dest2", 10, 10)
    assert contents(dst1, b) == items and contents(dst2, a) == items


def test_failures_are_counted_with_key_and_cause_and_the_run_goes_on(
    moto_servers, src_dst, proxy_to
):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(a), src.bucket, {f"k{i}": b"x" for i in range(5)})
    dst_proxy = proxy_to(b)
    dst_proxy.answer = lambda s: (
        (403, "<Error><Code>AccessDenied</Code><Message>no</Message></Error>")
        if s.method == "PUT" and s.path.endswith("/k2")
        else None
    )

    summary, _ = run(src, [via(dst, dst_proxy)])
    (d,) = summary.destinations
    assert not summary.ok
    assert (d.copied, d.failed) == (4, 1)
    (failure,) = d.failures
    assert (failure.key, failure.op) == ("k2", "copy")
    assert "AccessDenied" in failure.cause and f"s3://{dst.bucket}/k2" in failure.cause
    assert sorted(keys_of(dst, b)) == ["k0", "k1", "k3", "k4"]


def test_a_missing_bucket_is_fatal_before_any_work(moto_servers, src_dst):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(a), src.bucket, {"k": b"x"})
    missing = Endpoint(endpoint_config(b, dst.bucket + "-missing", name="dest2"))
    with pytest.raises(FatalEndpointError, match=r"HeadBucket s3://.*-missing on \[dest2\]"):
        run(src, [dst, missing])
    assert keys_of(dst, b) == []


def test_include_and_exclude_patterns(moto_servers, src_dst):
    a, b = moto_servers
    src, dst = src_dst
    put_many(
        raw_client(a), src.bucket, {"a.jpg": b"1", "b.png": b"2", "tmp/c.jpg": b"3", "d.txt": b"4"}
    )
    put_many(raw_client(b), dst.bucket, {"old.jpg": b"o", "old.txt": b"o"})
    summary, _ = run(
        src,
        [dst],
        include=("*.jpg", "*.png"),
        exclude=("tmp/*",),
        delete=True,
        max_delete_fraction=1.0,
    )
    (d,) = summary.destinations
    assert (d.listed, d.copied, d.deleted) == (2, 2, 1)
    assert sorted(keys_of(dst, b)) == ["a.jpg", "b.png", "old.txt"]


def test_prefix_and_list_version_1(moto_servers, make_bucket):
    a, b = moto_servers
    src = make_bucket(a, name="source", list_version=1)
    dst = make_bucket(b, name="dest", list_version=1)
    put_many(raw_client(a), src.bucket, {"in/a": b"1", "in/b": b"2", "out/c": b"3"})
    summary, _ = run(src, [dst], prefix="in/")
    assert summary.destinations[0].copied == 2
    assert sorted(keys_of(dst, b)) == ["in/a", "in/b"]


def test_unicode_keys_in_byte_order_are_reconciled(moto_servers, src_dst):
    """Keys whose UTF-16 order differs from S3's UTF-8 byte order, on a real listing."""
    a, b = moto_servers
    src, dst = src_dst
    keys = ["a\ufffd", "a\U0001f600", "a-b", "a/b", "\u00e9t\u00e9", "z"]
    put_many(raw_client(a), src.bucket, {k: k.encode() for k in keys})
    put_many(
        raw_client(b), dst.bucket, {"a\U0001f600": "a\U0001f600".encode(), "a\U0001f601": b"extra"}
    )
    summary, _ = run(src, [dst], delete=True, max_delete_fraction=1.0)
    (d,) = summary.destinations
    assert (d.copied, d.skipped, d.deleted) == (5, 1, 1)
    assert contents(dst, b) == {k: k.encode() for k in keys}


def test_delete_objects_not_implemented_falls_back_to_single_deletes(
    moto_servers, src_dst, proxy_to
):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(a), src.bucket, {f"k{i}": b"x" for i in range(4)})
    put_many(raw_client(b), dst.bucket, {f"k{i}": b"x" for i in range(6)})
    dst_proxy = proxy_to(b)
    dst_proxy.answer = lambda s: (
        (501, "<Error><Code>NotImplemented</Code><Message>no</Message></Error>")
        if s.method == "POST" and "delete" in s.query
        else None
    )
    summary, _ = run(src, [via(dst, dst_proxy, max_attempts=1)], delete=True)
    (d,) = summary.destinations
    assert summary.ok and d.deleted == 2
    assert dst_proxy.ops().count("DeleteObjects") == 1
    assert dst_proxy.ops().count("DeleteObject") == 2
    assert sorted(keys_of(dst, b)) == [f"k{i}" for i in range(4)]


def test_verify_md5_reads_multipart_objects_and_fixes_them(moto_servers, make_bucket, proxy_to):
    """Multipart ETags are not md5s: with verify_md5 the bytes are read and compared; the
    copy gets the md5 it computed as s3s3-md5, so the next run reads only the source's side
    of it."""
    a, b = moto_servers
    mp = dict(multipart_threshold_bytes=5 * MiB, multipart_chunksize_bytes=5 * MiB)
    src = make_bucket(a, name="source", **mp)
    dst = make_bucket(b, name="dest", **mp)
    good = bytes(range(256)) * (12 * MiB // 256)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    upload(raw_client(a), src.bucket, "big", good, part_bytes=5 * MiB)
    upload(raw_client(a), src.bucket, "twin", good, part_bytes=5 * MiB)
    # Same sizes, other part layouts, written after the source: only reading tells.
    upload(raw_client(b), dst.bucket, "big", bytes(bad), part_bytes=6 * MiB)
    upload(raw_client(b), dst.bucket, "twin", good, part_bytes=6 * MiB)

    summary, _ = run(src, [dst])
    assert summary.destinations[0].skipped == 2  # size + mtime: cannot see the difference

    verifying = Endpoint(dataclasses.replace(src.cfg, verify_md5=True))
    summary, _ = run(verifying, [dst])  # verify_md5 as set on the source endpoint
    (d,) = summary.destinations
    assert summary.ok
    assert (d.copied, d.skipped, d.bytes_copied) == (1, 1, len(good))
    got = raw_client(b).get_object(Bucket=dst.bucket, Key="big")
    assert hashlib.md5(got["Body"].read()).hexdigest() == hashlib.md5(good).hexdigest()
    # Written once the upload was complete (the source stated no md5): moto, like AWS and
    # Swift, then gives the object its md5 as ETag; Ceph keeps "-3".
    assert got["Metadata"]["s3s3-md5"] == hashlib.md5(good).hexdigest()

    src_proxy, dst_proxy = proxy_to(a), proxy_to(b)
    summary, _ = run(via(src, src_proxy), [via(dst, dst_proxy)], verify_md5=True)
    (d,) = summary.destinations
    assert (d.copied, d.skipped) == (0, 2)
    # "big" now states its md5 (s3s3-md5): only the source's side of it is read; "twin"
    # is identical but laid out differently and states none, so it is read on both sides.
    assert [s.path.rsplit("/", 1)[1] for s in dst_proxy.object_requests() if s.method == "GET"] == [
        "twin"
    ]
    assert sorted(
        s.path.rsplit("/", 1)[1] for s in src_proxy.object_requests() if s.method == "GET"
    ) == ["big", "twin"]


def upload(client, bucket: str, key: str, data: bytes, *, part_bytes: int) -> None:
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, len(data), part_bytes), start=1):
        resp = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data[offset : offset + part_bytes],
        )
        parts.append({"PartNumber": number, "ETag": resp["ETag"]})
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def test_enqueue_adds_the_keys_to_copy_to_the_stream(moto_servers, src_dst, proxy_to, redis_url):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(a), src.bucket, {"same": b"s", "new1": b"1", "n\u00e9w2": b"2"})
    put_many(raw_client(b), dst.bucket, {"same": b"s"})
    cfg = RedisConfig(url=redis_url, stream=f"s3s3:{{test-{uuid.uuid4().hex}}}:stream", maxlen=1000)
    client = redis.Redis.from_url(redis_url)
    src_proxy = proxy_to(a)
    try:
        summary = sync_buckets(
            via(src, src_proxy),
            [dst],
            JobOptions(enqueue=True),
            redis_client=client,
            redis_cfg=cfg,
        )
        entries = client.xrange(cfg.stream)
    finally:
        client.delete(cfg.stream)
    (d,) = summary.destinations
    assert summary.ok and (d.enqueued, d.skipped, d.copied) == (2, 1, 0)
    assert sorted(fields[b"key"].decode() for _, fields in entries) == ["new1", "n\u00e9w2"]
    assert {fields[b"op"] for _, fields in entries} == {b"copy"}
    assert src_proxy.object_requests() == []
    assert keys_of(dst, b) == ["same"]


def test_make_options_overrides_the_ini_only_where_given():
    cfg = BucketConfig(
        workers=8,
        prefix="p/",
        include=("*.a",),
        delete=True,
        size_only=True,
        max_delete_fraction=0.25,
    )
    assert make_options(cfg) == options(
        prefix="p/",
        include=("*.a",),
        delete=True,
        size_only=True,
        max_delete_fraction=0.25,
        workers=8,
    )
    assert make_options(
        cfg, delete=False, prefix="", include=[], workers=2, dry_run=True
    ) == options(
        prefix="",
        include=(),
        delete=False,
        size_only=True,
        max_delete_fraction=0.25,
        workers=2,
        dry_run=True,
    )
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        options(workers=0)


def test_a_stop_request_finishes_in_flight_work_and_reports_stopped(moto_servers, src_dst):
    a, b = moto_servers
    src, dst = src_dst
    put_many(raw_client(a), src.bucket, {f"k{i:03d}": b"x" for i in range(50)})
    stop = threading.Event()
    stop.set()
    summary = sync_buckets(src, [dst], JobOptions(), stop=stop)
    assert summary.stopped and not summary.ok
    d = summary.destinations[0]
    assert d.copied == len(keys_of(dst, b)) < 50


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal_and_logs_otherwise(caplog):
    summary = JobSummary(
        "source",
        "b",
        [
            DestinationSummary(
                "dest", "c", listed=10, copied=4, skipped=5, failed=1, bytes_copied=2_000_000
            )
        ],
    )
    assert render_progress(summary, 2.0) == (
        "listed 10 | copied 4 (2.0 MB) | skipped 5 | failed 1 | 5 keys/s | 2 s"
    )

    terminal = FakeTerminal()
    progress = for_stream(terminal, interval_s=30)
    assert progress.interval_s == 0.5
    progress.interval_s = 0.01
    progress.start(summary, time.monotonic())
    time.sleep(0.1)
    progress.stop()
    shown = terminal.getvalue()
    assert shown.startswith("\rlisted 10 | copied 4 (2.0 MB)") and shown.endswith("\n")
    assert shown.count("\n") == 1

    progress = for_stream(io.StringIO(), interval_s=0.01)
    assert not isinstance(progress, TerminalProgress)  # not a terminal: log lines
    with caplog.at_level(logging.INFO, logger="s3s3.bucketjob.summary"):
        progress.start(summary, time.monotonic())
        time.sleep(0.1)
        progress.stop()
    assert "progress: listed 10 | copied 4 (2.0 MB) | skipped 5 | failed 1" in caplog.text


# --------------------------------------------------------------------------- listing helpers


def test_prefetch_raises_a_listing_error_where_it_happened():
    def pages():
        yield [1, 2]
        yield [3]
        raise RuntimeError("page 3 failed")

    got = []
    with pytest.raises(RuntimeError, match="page 3 failed"):
        for page in prefetch(pages()):
            got.extend(page)
    assert got == [1, 2, 3]


def test_prefetch_stops_its_thread_when_abandoned():
    produced = []

    def pages():
        for n in range(1000):
            produced.append(n)
            yield [n]

    ahead = prefetch(pages(), depth=2, name="test-prefetch")
    assert next(ahead) == [0]
    ahead.close()
    deadline = time.monotonic() + 5
    while any(t.name == "test-prefetch" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the prefetch thread is still running"
        time.sleep(0.05)
    assert len(produced) <= 5  # read ahead by its depth, not to the end
