"""Copying one key: exact bytes, metadata, multipart, verification, cancellation.

Objects are set up and inspected through botocore (``ep.boto.call``), so what a copy wrote
is read back by another client than the one that wrote it. Peak memory is measured, not
asserted, by ``python -m bench.memory``.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import types

import pytest

from s3s3 import retry, transfer
from s3s3.config import GiB, MiB
from s3s3.errors import CorruptedOnTransfer, ObjectTooLarge, TransientEndpointError
from s3s3.model import MD5_META, Outcome
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import copy_object, multipart_etag, part_size_for
from tests.conftest import endpoint_config, raw_client, unique_bucket
from tests.faultproxy import FaultProxy

ODD_KEYS = [
    "plain",
    "with space",
    "plus+sign",
    "per%25cent%",
    "ünïcödé/日本語/😀",
    "/leading",
    "repeated//slashes///x",
    "trailing/",
    "?query&amp=1#frag",
    "k" * 1024,
    ("ü" * 511) + "k",  # 1,023 bytes of UTF-8 plus one
]


def body_of(ep: Endpoint, key: str) -> bytes:
    return ep.boto.call("GetObject", key)["Body"].read()


@pytest.mark.parametrize("key", ODD_KEYS)
def test_keys_copy_exactly(src_dst, key):
    src, dst = src_dst
    src.boto.call("PutObject", key, Body=key.encode())
    result = copy_object(src, dst, key)
    assert result.outcome is Outcome.COPIED
    assert body_of(dst, key) == key.encode()
    assert [o["Key"] for o in dst.boto.call("ListObjectsV2")["Contents"]] == [key]


def test_zero_byte_object(src_dst):
    src, dst = src_dst
    src.boto.call("PutObject", "empty", Body=b"")
    assert copy_object(src, dst, "empty").md5 == hashlib.md5(b"").hexdigest()
    assert dst.head("empty").size == 0


def test_metadata_carries_over(src_dst):
    src, dst = src_dst
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    src.boto.call(
        "PutObject",
        "img",
        Body=b"\x89PNG",
        ContentType="image/png",
        CacheControl="max-age=60",
        ContentEncoding="identity",
        ContentDisposition='attachment; filename="cat.png"',
        ContentLanguage="en",
        Expires=expires,
        Metadata={"owner": "alice", "x-long": "v" * 500},
    )
    copy_object(src, dst, "img")
    head = dst.boto.call("HeadObject", "img")
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentEncoding"] == "identity"
    assert head["ContentDisposition"] == 'attachment; filename="cat.png"'
    assert head["ContentLanguage"] == "en"
    got_expires = head.get("ExpiresString") or head["Expires"]
    assert "2030" in str(got_expires) and "03:04:05" in str(got_expires)
    assert head["Metadata"] == {"owner": "alice", "x-long": "v" * 500}


def multipart_dst(moto_servers, dst: Endpoint, **overrides) -> Endpoint:
    fields = dict(multipart_threshold_bytes=5 * MiB, multipart_chunksize_bytes=5 * MiB)
    fields.update(overrides)
    return Endpoint(endpoint_config(moto_servers[1], dst.bucket, name="dest", **fields))


def test_multipart_above_threshold(moto_servers, src_dst):
    src, dst = src_dst
    data = bytes(range(256)) * (12 * MiB // 256) + b"tail"
    src.boto.call("PutObject", "big", Body=data)
    dst = multipart_dst(moto_servers, dst)
    result = copy_object(src, dst, "big")
    assert result.parts == 3 and result.md5 == hashlib.md5(data).hexdigest()
    head = dst.boto.call("HeadObject", "big")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"][MD5_META] == hashlib.md5(data).hexdigest()
    assert body_of(dst, "big") == data
    # The stored md5 lets a second pass decide "identical" without reading anything.
    assert copy_object(src, dst, "big").outcome is Outcome.SKIPPED


def test_single_put_when_multipart_is_off(moto_servers, src_dst):
    src, dst = src_dst
    data = b"z" * (12 * MiB)
    src.boto.call("PutObject", "big", Body=data)
    dst = multipart_dst(moto_servers, dst, multipart_threshold_bytes=0)
    result = copy_object(src, dst, "big")
    assert result.parts == 0
    assert dst.head("big").etag == hashlib.md5(data).hexdigest()


def test_single_put_over_the_limit_is_a_clear_error(moto_servers, src_dst, monkeypatch):
    src, dst = src_dst
    src.boto.call("PutObject", "big", Body=b"q" * (2 * MiB))
    monkeypatch.setattr(transfer, "MAX_SINGLE_PUT_BYTES", 1 * MiB)
    dst = multipart_dst(moto_servers, dst, multipart_threshold_bytes=0)
    with pytest.raises(
        ObjectTooLarge,
        match=r"over the 5 GiB single-PUT limit and multipart "
        r"is off for \[dest\] \(multipart_threshold = 0\)",
    ):
        copy_object(src, dst, "big")
    assert dst.head("big") is None


@pytest.mark.parametrize(
    "size, configured, expected",
    [
        (100 * MiB, 64 * MiB, 64 * MiB),
        (6 * GiB, 5 * MiB, 5 * MiB),
        (1024 * GiB, 64 * MiB, 105 * MiB),  # 16,384 parts of 64 MiB is too many
        (5 * 1024 * GiB, 8 * MiB, 525 * MiB),
    ],
)
def test_part_size_is_scaled_to_stay_within_10000_parts(size, configured, expected):
    part = part_size_for(size, configured)
    assert part == expected
    assert -(-size // part) <= 10_000


def test_multipart_etag():
    parts = [hashlib.md5(b"a").digest(), hashlib.md5(b"b").digest()]
    assert multipart_etag(parts) == hashlib.md5(b"".join(parts)).hexdigest() + "-2"


def test_changed_object_of_same_size_is_updated_and_identical_is_skipped(src_dst):
    src, dst = src_dst
    src.boto.call("PutObject", "k", Body=b"version-1")
    assert copy_object(src, dst, "k").outcome is Outcome.COPIED
    assert copy_object(src, dst, "k").outcome is Outcome.SKIPPED
    src.boto.call("PutObject", "k", Body=b"version-2")
    assert copy_object(src, dst, "k").outcome is Outcome.COPIED
    assert body_of(dst, "k") == b"version-2"
    assert copy_object(src, dst, "k", force=True).outcome is Outcome.COPIED


def test_missing_source_key_is_an_outcome(src_dst):
    src, dst = src_dst
    assert copy_object(src, dst, "gone").outcome is Outcome.MISSING
    assert copy_object(src, dst, "gone", force=True).outcome is Outcome.MISSING


def test_destination_5xx_for_a_while_is_retried(moto_servers, src_dst):
    src, dst = src_dst
    src.boto.call("PutObject", "k", Body=b"x" * (2 * MiB))
    with FaultProxy(dst.cfg.endpoint_url) as proxy:
        flaky = Endpoint(
            endpoint_config(
                moto_servers[1], dst.bucket, name="dest", endpoint_url=proxy.url, max_attempts=2
            )
        )
        # A streamed PUT that fails is sent once more in place, from a ranged GET of the
        # source; a second failure is its caller's to retry (through s3s3.retry), so a
        # destination that keeps failing sees at most 2 PUTs per attempt of the caller.
        proxy.fail_next = 2
        with pytest.raises(TransientEndpointError):
            copy_object(src, flaky, "k", force=True)
        assert proxy.counts["PUT"] == 2
        proxy.fail_next = 1
        assert copy_object(src, flaky, "k", force=True).outcome is Outcome.COPIED
        assert proxy.counts["PUT"] == 2 + 2
        proxy.fail_next = 3
        result = retry.call(
            functools.partial(copy_object, src, flaky, "k", force=True),
            policy=retry.Policy(attempts=3, base_s=0.01, max_s=0.01),
            what="copy k",
        )
        assert result.outcome is Outcome.COPIED
        assert proxy.counts["PUT"] == 4 + 2 + 2
    assert dst.head("k").size == 2 * MiB


@pytest.mark.parametrize("size", [10, 3 * MiB, 12 * MiB], ids=["small", "streamed", "multipart"])
def test_wrong_destination_etag_deletes_the_copy(moto_servers, src_dst, size):
    src, dst = src_dst
    src.boto.call("PutObject", "k", Body=b"p" * size)
    with FaultProxy(dst.cfg.endpoint_url) as proxy:
        proxy.fake_put_etag = "0" * 32
        bad = multipart_dst(moto_servers, dst, endpoint_url=proxy.url)
        with pytest.raises(CorruptedOnTransfer, match="corrupted on transfer: .*md5 differs"):
            copy_object(src, bad, "k")
    assert dst.head("k") is None
    assert dst.boto.call("ListMultipartUploads").get("Uploads") in (None, [])


@pytest.mark.parametrize("size", [10, 3 * MiB, 12 * MiB], ids=["small", "streamed", "multipart"])
def test_corrupted_source_read_is_caught_and_not_left(moto_servers, src_dst, size):
    src, dst = src_dst
    src.boto.call("PutObject", "k", Body=b"s" * size)
    with FaultProxy(src.cfg.endpoint_url) as proxy:
        proxy.corrupt_get_body = True
        bad_src = Endpoint(
            endpoint_config(moto_servers[0], src.bucket, name="source", endpoint_url=proxy.url)
        )
        with pytest.raises(CorruptedOnTransfer, match=r"md5 differs src\([0-9a-f]{32}\) vs "):
            copy_object(bad_src, multipart_dst(moto_servers, dst), "k")
    assert dst.head("k") is None


def test_streamed_copy_of_a_known_md5_is_checked_by_the_destination(src_dst, monkeypatch):
    """The source states the md5: the PUT carries it as Content-MD5, nothing is hashed."""
    src, dst = src_dst
    data = b"c" * (3 * MiB)
    src.boto.call("PutObject", "k", Body=data)
    sent = {}

    def record(request, **_):
        sent["ContentMD5"] = request.headers.get("Content-MD5")

    dst.client.meta.events.register("before-send.s3.PutObject", record)
    monkeypatch.setattr(
        transfer,
        "hashlib",
        types.SimpleNamespace(md5=lambda *a: pytest.fail("the bytes were hashed by s3s3")),
    )
    result = copy_object(src, dst, "k")
    assert result.outcome is Outcome.COPIED and result.md5 == hashlib.md5(data).hexdigest()
    assert base64.b64decode(sent["ContentMD5"]) == hashlib.md5(data).digest()
    assert body_of(dst, "k") == data


@pytest.mark.interop
@pytest.mark.parametrize("server", ["ceph", "swift"])
def test_corrupted_stream_is_refused_by_the_real_destination(request, server):
    """Ceph and Swift check Content-MD5 on a streamed PUT: corrupted bytes are never stored."""
    info = request.getfixturevalue(server)
    buckets = [unique_bucket("cmd5") for _ in range(2)]
    for bucket in buckets:
        raw_client(info).create_bucket(Bucket=bucket)
    src = Endpoint(endpoint_config(info, buckets[0], name="source"))
    dst = Endpoint(endpoint_config(info, buckets[1], name="dest"))
    data = bytes(range(256)) * (3 * MiB // 256)
    src.boto.call("PutObject", "k", Body=data)
    with FaultProxy(info["endpoint_url"]) as proxy:
        proxy.corrupt_get_body = True
        bad_src = Endpoint(endpoint_config(info, buckets[0], name="source", endpoint_url=proxy.url))
        with pytest.raises(
            CorruptedOnTransfer,
            match=r"md5 differs src\([0-9a-f]{32}\) vs "
            r"the bytes \[dest\] received \(BadDigest\)",
        ):
            copy_object(bad_src, dst, "k")
    assert dst.head("k") is None
    result = copy_object(src, dst, "k")
    assert result.outcome is Outcome.COPIED and dst.head("k").etag == hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------- cancellation


def _slow_multipart_dst(moto_servers, bucket: str, proxy) -> Endpoint:
    return Endpoint(
        endpoint_config(
            {**moto_servers[1], "endpoint_url": proxy.url},
            bucket,
            name="dest",
            multipart_threshold_bytes=5 * MiB,
            multipart_chunksize_bytes=5 * MiB,
        )
    )


def test_a_cancelled_multipart_copy_aborts_its_upload(moto_servers, src_dst):
    """The regression for SIGTERM past grace: cancelled mid-part, the upload is aborted."""
    import threading

    from test_listener_support import TcpProxy, wait_until

    from s3s3.errors import CopyCancelled

    src, dst = src_dst
    src.boto.call("PutObject", "big", Body=b"c" * (40 * MiB))
    inspect = raw_client(moto_servers[1])
    slow = TcpProxy(int(moto_servers[1]["endpoint_url"].rsplit(":", 1)[1]), delay_s=0.02).open()
    cancel = threading.Event()

    def cancel_once_in_flight() -> None:
        wait_until(
            lambda: inspect.list_multipart_uploads(Bucket=dst.bucket).get("Uploads"),
            30,
            what="the upload to start",
        )
        cancel.set()

    canceller = threading.Thread(target=cancel_once_in_flight)
    canceller.start()
    try:
        with pytest.raises(CopyCancelled, match=r"copy 'big' from \[source\] to \[dest\]"):
            copy_object(
                src,
                _slow_multipart_dst(moto_servers, dst.bucket, slow),
                "big",
                force=True,
                cancel=cancel,
            )
    finally:
        canceller.join()
        slow.close()
    assert inspect.list_multipart_uploads(Bucket=dst.bucket).get("Uploads", []) == []
    assert dst.head("big") is None


def test_a_copy_cancelled_before_it_starts_writes_nothing(src_dst):
    import threading

    from s3s3.errors import CopyCancelled

    src, dst = src_dst
    src.boto.call("PutObject", "k", Body=b"x")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CopyCancelled):
        copy_object(src, dst, "k", force=True, cancel=cancel)
    assert dst.head("k") is None
