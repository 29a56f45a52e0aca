"""One replication suite, run against every pair of real servers.

As rclone runs one backend-agnostic suite against every backend, each test here runs for
every (source, destination, signature) pair: Ceph RGW and OpenStack Swift (s3api) started
by ``servers/``, and moto as a source. moto checks no signatures, so every claim is made
with a real server on at least one side, and on the destination side for writes.

Select pairs with ``-m interop -k 'ceph-swift'`` and so on. The README's compatibility
table is checked against what these tests cover (``test_readme_table_matches_suite``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import redis

from s3s3 import retry
from s3s3.bucketjob.options import JobOptions
from s3s3.bucketjob.runner import sync_buckets
from s3s3.config import BucketConfig, MiB, RedisConfig
from s3s3.model import CopyResult, Outcome
from s3s3.queue.producer import publish_keys
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import copy_object
from tests.conftest import ROOT, endpoint_config, raw_client, unique_bucket
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.interop


@dataclass(frozen=True)
class Side:
    server: str  # fixture name: ceph, swift, moto
    https: bool = False


PAIRS = {
    "ceph-swift": (Side("ceph"), Side("swift")),
    "swift-ceph": (Side("swift"), Side("ceph")),
    "ceph-cephtls": (Side("ceph"), Side("ceph", https=True)),
    "moto-ceph": (Side("moto"), Side("ceph")),
}
PARAMS = [
    pytest.param((pair, sig), id=f"{pair}-{'v2' if sig == 's3' else 'v4'}")
    for pair in PAIRS
    for sig in ("s3v4", "s3")
]


def pairs(*, also_v2: str | None = None, plain_http_only: bool = False) -> list:
    """A subset of PARAMS for the slower tests: every pair with SigV4, plus ``also_v2``."""
    chosen = [
        p
        for p in PARAMS
        if (p.values[0][1] == "s3v4" or p.values[0][0] == also_v2 or also_v2 == "all")
        and not (plain_http_only and PAIRS[p.values[0][0]][1].https)
    ]
    return chosen


@dataclass
class Pair:
    name: str
    src: Endpoint
    dst: Endpoint
    src_info: dict
    dst_info: dict
    signature_version: str

    def dest(self, **overrides) -> Endpoint:
        """The destination endpoint again, with other settings."""
        fields = dict(
            name="dest",
            signature_version=self.signature_version,
            **_url(self.dst_info, self.dst_https),
        )
        fields.update(overrides)
        return Endpoint(endpoint_config(self.dst_info, self.dst.bucket, **fields))

    @property
    def dst_https(self) -> bool:
        return self.dst.cfg.endpoint_url.startswith("https")


def _url(info: dict, https: bool) -> dict:
    if https:
        return {"endpoint_url": info["https_url"], "ca_bundle": info["ca_bundle"]}
    return {"endpoint_url": info["endpoint_url"]}


def _server(request, name: str) -> dict:
    if name == "moto":
        return request.getfixturevalue("moto_servers")[0]
    return request.getfixturevalue(name)


@pytest.fixture(params=PARAMS)
def pair(request) -> Pair:
    name, sig = request.param
    src_side, dst_side = PAIRS[name]
    src_info, dst_info = _server(request, src_side.server), _server(request, dst_side.server)
    src_bucket, dst_bucket = unique_bucket("isrc"), unique_bucket("idst")
    raw_client(src_info).create_bucket(Bucket=src_bucket)
    raw_client(dst_info).create_bucket(Bucket=dst_bucket)
    src = Endpoint(
        endpoint_config(
            src_info,
            src_bucket,
            name="source",
            signature_version=sig,
            **_url(src_info, src_side.https),
        )
    )
    dst = Endpoint(
        endpoint_config(
            dst_info,
            dst_bucket,
            name="dest",
            signature_version=sig,
            **_url(dst_info, dst_side.https),
        )
    )
    return Pair(name, src, dst, src_info, dst_info, sig)


def put_many(ep: Endpoint, items: dict[str, bytes], workers: int = 16) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda kv: ep.boto.call("PutObject", kv[0], Body=kv[1]), items.items()))


def dst_keys(ep: Endpoint) -> dict[str, int]:
    out = {}
    token = None
    while True:
        resp = ep.boto.call("ListObjectsV2", **({"ContinuationToken": token} if token else {}))
        out.update({o["Key"]: o["Size"] for o in resp.get("Contents", [])})
        token = resp.get("NextContinuationToken")
        if not token:
            return out


def copy(src: Endpoint, dst: Endpoint, key: str, **options) -> CopyResult:
    """``copy_object`` as every caller runs it: retried under the destination's policy.

    moto answers a SigV2 request 500 when its signature holds four '/' (it reads the
    signature as a SigV4 credential scope): about one request in a thousand, which the
    next try, signed a second later, gets past.
    """
    return retry.call(
        lambda: copy_object(src, dst, key, **options),
        policy=retry.Policy.for_endpoint(dst.cfg),
        what=f"copy {key!r} to [{dst.name}]",
    )


ODD_KEYS = ["ünïcödé/日本語 😀", "with space", "plus+sign", "per%25cent%", "a//b/", "k" * 1024]


def test_odd_keys_empty_objects_and_metadata(pair):
    for key in ODD_KEYS:
        pair.src.boto.call("PutObject", key, Body=key.encode()[:100])
    pair.src.boto.call("PutObject", "empty", Body=b"")
    pair.src.boto.call(
        "PutObject",
        "meta",
        Body=b"<p>",
        ContentType="text/html",
        CacheControl="max-age=60",
        ContentDisposition="inline",
        ContentLanguage="fr",
        Metadata={"owner": "alice", "note": "x" * 300},
    )
    for key in [*ODD_KEYS, "empty", "meta"]:
        assert copy(pair.src, pair.dst, key).outcome is Outcome.COPIED, key
    for key in ODD_KEYS:
        assert pair.dst.boto.call("GetObject", key)["Body"].read() == key.encode()[:100], key
    assert pair.dst.head("empty").size == 0
    head = pair.dst.boto.call("HeadObject", "meta")
    assert (
        head["ContentType"],
        head["CacheControl"],
        head["ContentDisposition"],
        head["ContentLanguage"],
    ) == ("text/html", "max-age=60", "inline", "fr")
    assert head["Metadata"] == {"owner": "alice", "note": "x" * 300}
    # Identical now: a second pass copies nothing.
    assert {copy(pair.src, pair.dst, k).outcome for k in ODD_KEYS} == {Outcome.SKIPPED}


def test_multipart_on_above_threshold_and_off(pair):
    data = os.urandom(11 * MiB + 123)
    pair.src.boto.call("PutObject", "big", Body=data)
    md5 = hashlib.md5(data).hexdigest()
    on = pair.dest(multipart_threshold_bytes=5 * MiB, multipart_chunksize_bytes=5 * MiB)
    result = copy(pair.src, on, "big", dest_key="parts")
    assert result.parts == 3 and result.md5 == md5
    assert on.head("parts").etag.endswith("-3")
    off = pair.dest(multipart_threshold_bytes=0)
    assert copy(pair.src, off, "big", dest_key="single").parts == 0
    assert off.head("single").etag == md5
    for key in ("parts", "single"):
        assert hashlib.md5(pair.dst.boto.call("GetObject", key)["Body"].read()).hexdigest() == md5
    # The multipart copy carries s3s3-md5, so it is known identical without reading it.
    assert copy(pair.src, on, "big", dest_key="parts").outcome is Outcome.SKIPPED


def test_md5_verified_where_the_etag_is_not_an_md5(pair):
    part = os.urandom(5 * MiB)
    upload = pair.src.boto.call("CreateMultipartUpload", "mp")["UploadId"]
    parts = []
    for n, body in enumerate([part, b"tail"], start=1):
        etag = pair.src.boto.call("UploadPart", "mp", UploadId=upload, PartNumber=n, Body=body)[
            "ETag"
        ]
        parts.append({"PartNumber": n, "ETag": etag})
    pair.src.boto.call(
        "CompleteMultipartUpload", "mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert not pair.src.head("mp").etag_md5  # a multipart ETag: no md5 to compare with
    dst = pair.dest(multipart_threshold_bytes=5 * MiB, multipart_chunksize_bytes=5 * MiB)
    assert copy(pair.src, dst, "mp").outcome is Outcome.COPIED
    assert copy(pair.src, dst, "mp", verify_md5=True).outcome is Outcome.SKIPPED
    # Same size, different bytes at the destination: only reading both sides can tell.
    pair.dst.boto.call("PutObject", "mp", Body=b"x" * (5 * MiB + 4))
    assert copy(pair.src, dst, "mp", verify_md5=True).outcome is Outcome.COPIED
    whole = hashlib.md5(part + b"tail").hexdigest()
    assert hashlib.md5(pair.dst.boto.call("GetObject", "mp")["Body"].read()).hexdigest() == whole


# Paging is proven once per pair with SigV4, and with SigV2 on ceph-swift.
@pytest.mark.parametrize("pair", pairs(also_v2="ceph-swift"), indirect=True)
def test_bucket_job_over_more_than_1000_keys_and_deletes(pair):
    items = {f"many/{i:05d} é": b"%d" % i for i in range(1100)}
    put_many(pair.src, items)
    put_many(pair.dst, {f"extra/{i}": b"x" for i in range(3)})
    options = JobOptions(BucketConfig(workers=16, delete=True, max_delete_fraction=1.0))
    summary = sync_buckets(pair.src, [pair.dst], options)
    dest = summary.destinations[0]
    assert (dest.listed, dest.copied, dest.deleted, dest.failed) == (1100, 1100, 3, 0)
    assert dst_keys(pair.dst) == {k: len(v) for k, v in items.items()}
    again = sync_buckets(pair.src, [pair.dst], options).destinations[0]
    assert (again.copied, again.skipped, again.deleted) == (0, 1100, 0)


# The fault proxy speaks plain HTTP, so the HTTPS destination is left out here.
@pytest.mark.parametrize("pair", pairs(also_v2="all", plain_http_only=True), indirect=True)
def test_destination_answering_5xx_for_a_while(pair):
    items = {f"flaky/{i}": os.urandom(2048) for i in range(20)}
    put_many(pair.src, items)
    with FaultProxy(pair.dst_info["endpoint_url"]) as proxy:
        flaky = pair.dest(endpoint_url=proxy.url, max_attempts=3)
        proxy.fail_methods = {"PUT"}  # writes fail for a while; the bucket check passes
        proxy.fail_next = 8
        summary = sync_buckets(pair.src, [flaky], JobOptions(BucketConfig(workers=4)))
    assert summary.destinations[0].failed == 0
    assert proxy.counts["PUT"] >= 20
    for key, body in items.items():
        assert pair.dst.boto.call("GetObject", key)["Body"].read() == body


# The listener is proven once per pair with SigV4, and with SigV2 on swift-ceph.
@pytest.mark.parametrize("pair", pairs(also_v2="swift-ceph"), indirect=True)
def test_listener_in_stream_mode(pair, tmp_path, redis_url):
    channel = f"interop-{uuid.uuid4().hex[:10]}"
    ini = tmp_path / "s3s3.ini"
    ini.write_text(_ini(pair, channel, redis_url))
    items = {f"live/{i} +%": os.urandom(512) for i in range(30)}
    put_many(pair.src, items)
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3s3.scripts.listen", "--config", str(ini)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    cfg = RedisConfig(
        url=redis_url,
        channel=channel,
        mode="stream",
        stream=f"s3s3:{{{channel}}}:stream",
        dead_letter_stream=f"s3s3:{{{channel}}}:dead",
    )
    client = redis.Redis.from_url(redis_url)
    try:
        assert publish_keys(client, cfg, list(items)) == 30
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(dst_keys(pair.dst)) < 30:
            time.sleep(0.2)
        assert dst_keys(pair.dst) == {k: 512 for k in items}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and client.xpending(cfg.stream, "s3s3")["pending"]:
            time.sleep(0.1)
        assert client.xpending(cfg.stream, "s3s3")["pending"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        client.delete(cfg.stream, cfg.dead_letter_stream)
        client.close()
    assert proc.returncode == 0, err[-3000:]


def _ini(pair: Pair, channel: str, redis_url: str) -> str:
    def section(name: str, ep: Endpoint) -> str:
        lines = [
            f"[{name}]",
            f"bucket_name = {ep.bucket}",
            f"endpoint_url = {ep.cfg.endpoint_url}",
            f"aws_access_key_id = {ep.cfg.access_key}",
            f"aws_secret_access_key = {ep.cfg.secret_key}",
            f"signature_version = {ep.cfg.signature_version}",
        ]
        if ep.cfg.ca_bundle:
            lines.append(f"ca_bundle = {ep.cfg.ca_bundle}")
        return "\n".join(lines) + "\n"

    return (
        section("source", pair.src)
        + section("dest", pair.dst)
        + f"[pubsub]\nurl = {redis_url}\nmode = stream\nchannel = {channel}\n"
        "[listen]\nworkers = 8\ngrace = 10\n"
    )


def test_readme_table_matches_suite():
    """Every pair the README's compatibility table names is a pair this suite runs."""
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- interop-pairs -->")[1].split("<!-- /interop-pairs -->")[0]
    named = {line.split("|")[1].strip().strip("`") for line in table.strip().splitlines()[2:]}
    assert named == {f"{p.id}" for p in PARAMS}
