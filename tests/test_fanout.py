"""One read of the source for every destination (s3s3.fanout): the shared read's window and
drop-out, then copies to real servers counted at the source through a fault proxy."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import threading

import pytest

from s3s3 import retry
from s3s3.bucketjob.options import JobOptions
from s3s3.bucketjob.runner import sync_buckets
from s3s3.config import MiB
from s3s3.errors import LeftBehind
from s3s3.fanout import SharedRead, copy_to_all
from s3s3.listener.replicator import Replicator
from s3s3.model import CopyResult, Outcome, WorkItem
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import READ_CHUNK_BYTES
from tests.conftest import raw_client
from tests.faultproxy import FaultProxy

# ------------------------------------------------------------------ the shared read alone


class CountingBody(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, amt=-1):
        self.reads += 1
        return super().read(amt)


def test_readers_in_step_each_get_every_byte_and_the_source_is_read_once():
    data = os.urandom(5 * READ_CHUNK_BYTES + 123)
    body = CountingBody(data)
    shared = SharedRead(body, len(data), 3, window=4 * MiB)
    readers = [shared.reader(i, key="k", src="source", dst=f"d{i}") for i in range(3)]
    got = [bytearray() for _ in readers]
    while any(len(g) < len(data) for g in got):
        for reader, into in zip(readers, got, strict=True):
            into += reader.read(300_000)
        assert shared.held_bytes() <= 4 * MiB + READ_CHUNK_BYTES
    assert all(bytes(g) == data for g in got)
    assert shared.bytes_read == len(data)
    assert body.reads == 6  # one per chunk, whichever reader asked
    assert [r.read(10) for r in readers] == [b"", b"", b""]


def test_a_reader_too_far_behind_is_dropped_and_the_others_never_wait():
    data = os.urandom(8 * READ_CHUNK_BYTES)
    shared = SharedRead(io.BytesIO(data), len(data), 2, window=3 * MiB)
    fast = shared.reader(0, key="k", src="source", dst="fast")
    slow = shared.reader(1, key="k", src="source", dst="slow")
    assert slow.read(1000) == data[:1000]
    got = bytearray()
    while len(got) < len(data):
        got += fast.read(READ_CHUNK_BYTES)
        # The slow reader holds back no more than the window (plus the chunk coming in).
        assert shared.held_bytes() <= 3 * MiB + READ_CHUNK_BYTES
    assert bytes(got) == data
    with pytest.raises(LeftBehind) as caught:
        slow.read(1000)
    assert caught.value.retryable
    assert "[slow]" in str(caught.value) and "'k'" in str(caught.value)
    assert shared.held_bytes() == 0  # nobody left needs what was read


def test_a_reader_that_leaves_frees_what_only_it_needed():
    data = os.urandom(4 * READ_CHUNK_BYTES)
    shared = SharedRead(io.BytesIO(data), len(data), 2, window=64 * MiB)
    first = shared.reader(0, key="k", src="s", dst="a")
    second = shared.reader(1, key="k", src="s", dst="b")
    for _ in range(3):
        first.read(READ_CHUNK_BYTES)
    assert shared.held_bytes() == 3 * READ_CHUNK_BYTES  # second has read nothing yet
    second.close()
    assert shared.held_bytes() == 0


def test_a_source_failure_reaches_every_reader_at_the_front():
    class Failing(io.BytesIO):
        def read(self, amt=-1):
            if self.tell() >= READ_CHUNK_BYTES:
                raise ConnectionResetError("source gone")
            return super().read(amt)

    data = os.urandom(3 * READ_CHUNK_BYTES)
    shared = SharedRead(Failing(data), len(data), 2, window=8 * MiB)
    a = shared.reader(0, key="k", src="s", dst="a")
    b = shared.reader(1, key="k", src="s", dst="b")
    assert a.read(READ_CHUNK_BYTES) == data[:READ_CHUNK_BYTES]
    with pytest.raises(ConnectionResetError):
        a.read(READ_CHUNK_BYTES)
    assert b.read(READ_CHUNK_BYTES) == data[:READ_CHUNK_BYTES]  # what was read is served
    with pytest.raises(ConnectionResetError):
        b.read(READ_CHUNK_BYTES)


def test_readers_in_threads_get_every_byte():
    data = os.urandom(12 * READ_CHUNK_BYTES + 7)
    shared = SharedRead(io.BytesIO(data), len(data), 4, window=64 * MiB)
    out: dict[int, bytes] = {}

    def drain(i: int) -> None:
        reader = shared.reader(i, key="k", src="s", dst=str(i))
        got = bytearray()
        while chunk := reader.read(64 * 1024 * (i + 1)):
            got += chunk
        out[i] = bytes(got)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert {i: hashlib.md5(b).hexdigest() for i, b in out.items()} == {
        i: hashlib.md5(data).hexdigest() for i in range(4)
    }


# ------------------------------------------------------------------ against real servers


def source_gets(proxy: FaultProxy, bucket: str) -> list[str]:
    return [p for _, m, p in proxy.requests if m == "GET" and p.startswith(f"/{bucket}/")]


@pytest.fixture
def ceph_source(ceph, make_bucket):
    """A source bucket on Ceph, reached through a fault proxy that counts its GETs."""
    src = make_bucket(ceph, name="source")
    with FaultProxy(ceph["endpoint_url"]) as proxy:
        yield Endpoint(dataclasses.replace(src.cfg, endpoint_url=proxy.url)), proxy


def put(info: dict, bucket: str, key: str, data: bytes) -> None:
    raw_client(info).put_object(Bucket=bucket, Key=key, Body=data)


def md5_at(info: dict, bucket: str, key: str) -> str:
    body = raw_client(info).get_object(Bucket=bucket, Key=key)["Body"].read()
    return hashlib.md5(body).hexdigest()


def test_one_get_feeds_a_multipart_copy_to_ceph_and_a_streamed_put_to_swift(
    ceph_source, ceph, swift, make_bucket
):
    src, proxy = ceph_source
    data = os.urandom(12 * MiB + 5)
    put(ceph, src.bucket, "big", data)
    to_ceph = make_bucket(
        ceph, name="dest-ceph", multipart_threshold_bytes=5 * MiB, multipart_chunksize_bytes=5 * MiB
    )
    to_swift = make_bucket(swift, name="dest-swift")  # one streamed PUT
    results = copy_to_all(src, [to_ceph, to_swift], "big", force=True)
    assert [type(r) for r in results] == [CopyResult, CopyResult], results
    assert [r.outcome for r in results] == [Outcome.COPIED, Outcome.COPIED]
    assert results[0].parts == 3 and results[1].parts == 0
    assert source_gets(proxy, src.bucket) == [f"/{src.bucket}/big"]
    assert sum(r.bytes_read for r in results) == len(data)  # what the source served
    want = hashlib.md5(data).hexdigest()
    assert md5_at(ceph, to_ceph.bucket, "big") == want
    assert md5_at(swift, to_swift.bucket, "big") == want


def test_small_objects_are_read_once_and_identical_destinations_are_skipped(
    ceph_source, ceph, swift, make_bucket
):
    src, proxy = ceph_source
    put(ceph, src.bucket, "small", b"s" * 4096)
    dsts = [
        make_bucket(ceph, name="d1"),
        make_bucket(swift, name="d2"),
        make_bucket(ceph, name="d3"),
    ]
    put(ceph, dsts[2].bucket, "small", b"s" * 4096)  # already in step
    results = copy_to_all(src, dsts, "small")
    assert [r.outcome for r in results] == [Outcome.COPIED, Outcome.COPIED, Outcome.SKIPPED]
    assert len(source_gets(proxy, src.bucket)) == 1
    again = copy_to_all(src, dsts, "small")
    assert [r.outcome for r in again] == [Outcome.SKIPPED] * 3
    assert len(source_gets(proxy, src.bucket)) == 1  # HEADs only


def test_a_failing_destination_does_not_hold_back_the_others(ceph_source, ceph, make_bucket):
    src, proxy = ceph_source
    data = os.urandom(6 * MiB)
    put(ceph, src.bucket, "k", data)
    good = make_bucket(ceph, name="good")
    bad_bucket = make_bucket(ceph, name="bad")
    with FaultProxy(ceph["endpoint_url"]) as bad_proxy:
        bad_proxy.fail_if = lambda method, path: method == "PUT"
        bad = Endpoint(dataclasses.replace(bad_bucket.cfg, endpoint_url=bad_proxy.url))
        results = copy_to_all(src, [bad, good], "k", force=True)
        bad_puts = bad_proxy.counts["PUT"]
    assert isinstance(results[0], Exception) and results[0].retryable
    assert isinstance(results[1], CopyResult) and results[1].outcome is Outcome.COPIED
    assert results[1].bytes_read == len(data)
    assert md5_at(ceph, good.bucket, "k") == hashlib.md5(data).hexdigest()
    # One shared read; the failing destination's streamed PUT was sent again once, from a
    # ranged GET of its bytes of its own (transfer's retry in place), and no more.
    assert bad_puts == 2
    gets = [h for m, p, h in proxy.sent if m == "GET" and p.startswith(f"/{src.bucket}/")]
    assert len(gets) == 2 and "range" not in gets[0]
    assert gets[1]["range"] == f"bytes=0-{len(data) - 1}" and "if-match" in gets[1]


def test_a_slow_destination_drops_out_and_reads_on_its_own(ceph_source, ceph, make_bucket, caplog):
    src, proxy = ceph_source
    # The window is wider than what loopback sockets buffer (several MiB), so the stalled
    # destination can only fall behind, not race ahead while its bytes sit in a buffer.
    src = Endpoint(dataclasses.replace(src.cfg, fanout_buffer_bytes=16 * MiB))
    data = os.urandom(48 * MiB)
    put(ceph, src.bucket, "k", data)
    fast = make_bucket(ceph, name="fast")
    slow_bucket = make_bucket(ceph, name="slow")
    with FaultProxy(ceph["endpoint_url"]) as slow_proxy:
        stalled = threading.Event()

        def first_put_stalls(method: str, path: str) -> float:
            if method == "PUT" and not stalled.is_set():
                stalled.set()
                return 8.0
            return 0.0

        slow_proxy.delay_if = first_put_stalls
        slow = Endpoint(dataclasses.replace(slow_bucket.cfg, endpoint_url=slow_proxy.url))
        with caplog.at_level(logging.INFO, logger="s3s3.fanout"):
            results = copy_to_all(src, [fast, slow], "k", force=True)
    assert [r.outcome for r in results] == [Outcome.COPIED, Outcome.COPIED], results
    assert "[slow] fell more than 16777216 bytes behind" in caplog.text
    assert "[fast] fell" not in caplog.text
    assert len(source_gets(proxy, src.bucket)) == 2  # the shared read, and the slow one's own
    want = hashlib.md5(data).hexdigest()
    assert md5_at(ceph, fast.bucket, "k") == want == md5_at(ceph, slow_bucket.bucket, "k")
    assert sum(r.bytes_read for r in results) == 2 * len(data)


def test_fanout_buffer_0_reads_once_per_destination(ceph_source, ceph, make_bucket):
    src, proxy = ceph_source
    src = Endpoint(dataclasses.replace(src.cfg, fanout_buffer_bytes=0))
    put(ceph, src.bucket, "k", b"x" * 2 * MiB)
    dsts = [make_bucket(ceph, name="d1"), make_bucket(ceph, name="d2")]
    results = copy_to_all(src, dsts, "k", force=True)
    assert [r.outcome for r in results] == [Outcome.COPIED, Outcome.COPIED]
    assert len(source_gets(proxy, src.bucket)) == 2


def test_the_bucket_job_reads_each_key_once_for_two_destinations(
    ceph_source, ceph, swift, make_bucket
):
    src, proxy = ceph_source
    client = raw_client(ceph)
    for i in range(20):
        client.put_object(Bucket=src.bucket, Key=f"k{i:02d}", Body=os.urandom(4096))
    client.put_object(Bucket=src.bucket, Key="large", Body=os.urandom(3 * MiB))
    d1, d2 = make_bucket(ceph, name="dest-a"), make_bucket(swift, name="dest-b")
    client.put_object(Bucket=d1.bucket, Key="k00", Body=b"stale")  # d1 needs k00 again too
    summary = sync_buckets(src, [d1, d2], JobOptions())
    assert [d.copied for d in summary.destinations] == [21, 21]
    gets = source_gets(proxy, src.bucket)
    assert sorted(gets) == sorted(
        {f"/{src.bucket}/k{i:02d}" for i in range(20)} | {f"/{src.bucket}/large"}
    )


def test_a_destination_failing_in_the_shared_copy_retries_alone(ceph_source, ceph, make_bucket):
    src, proxy = ceph_source
    raw_client(ceph).put_object(Bucket=src.bucket, Key="k", Body=os.urandom(2 * MiB))
    good = make_bucket(ceph, name="dest-good")
    flaky_bucket = make_bucket(ceph, name="dest-flaky")
    with FaultProxy(ceph["endpoint_url"]) as flaky_proxy:
        flaky_proxy.fail_next = 1
        flaky_proxy.fail_methods = {"PUT"}
        flaky = Endpoint(dataclasses.replace(flaky_bucket.cfg, endpoint_url=flaky_proxy.url))
        summary = sync_buckets(src, [good, flaky], JobOptions())
        puts = flaky_proxy.counts["PUT"]
    assert [d.copied for d in summary.destinations] == [1, 1]
    assert [d.failed for d in summary.destinations] == [0, 0]
    assert puts == 2  # the shared try, then one alone: max_attempts counts both
    assert len(source_gets(proxy, src.bucket)) == 2


def test_the_listener_reads_an_event_s_key_once_for_two_destinations(
    ceph_source, ceph, swift, make_bucket
):
    src, proxy = ceph_source
    data = os.urandom(3 * MiB)
    raw_client(ceph).put_object(Bucket=src.bucket, Key="k", Body=data)
    d1, d2 = make_bucket(ceph, name="dest-a"), make_bucket(swift, name="dest-b")
    done = []
    finished = threading.Event()

    def on_complete(tickets, result):
        done.append(result)
        finished.set()

    rep = Replicator(src, [d1, d2], on_complete=on_complete, workers=2, retry=retry.Policy())
    rep.start()
    rep.submit(WorkItem("copy", "k"), "t1")
    assert finished.wait(60)
    rep.drain(timeout_s=10)
    assert done[0].outcome is Outcome.COPIED and set(done[0].destinations) == {d1.name, d2.name}
    assert source_gets(proxy, src.bucket) == [f"/{src.bucket}/k"]
    want = hashlib.md5(data).hexdigest()
    assert md5_at(ceph, d1.bucket, "k") == want and md5_at(swift, d2.bucket, "k") == want


def test_a_multipart_destination_left_behind_resumes_from_its_parts(
    ceph_source, ceph, make_bucket, tmp_path
):
    src, proxy = ceph_source
    src = Endpoint(dataclasses.replace(src.cfg, fanout_buffer_bytes=16 * MiB))
    data = os.urandom(48 * MiB)
    put(ceph, src.bucket, "k", data)
    # Both multipart and both through a proxy of their own, so that only the stall sets
    # them apart (a CreateMultipartUpload alone can take a Ceph here 16 MiB of another
    # destination's single PUT).
    parts = dict(multipart_threshold_bytes=5 * MiB, multipart_chunksize_bytes=5 * MiB)
    fast_bucket = make_bucket(ceph, name="fast", **parts)
    slow_bucket = make_bucket(ceph, name="slow", **parts, upload_state=str(tmp_path / "uploads"))
    with (
        FaultProxy(ceph["endpoint_url"]) as slow_proxy,
        FaultProxy(ceph["endpoint_url"]) as fast_proxy,
    ):
        fast = Endpoint(dataclasses.replace(fast_bucket.cfg, endpoint_url=fast_proxy.url))
        stalled = threading.Event()

        def third_part_stalls(method: str, path: str) -> float:
            if method == "PUT" and "partNumber=3&" in path + "&" and not stalled.is_set():
                stalled.set()
                return 8.0
            return 0.0

        slow_proxy.delay_if = third_part_stalls
        slow = Endpoint(dataclasses.replace(slow_bucket.cfg, endpoint_url=slow_proxy.url))
        results = copy_to_all(src, [fast, slow], "k", force=True)
        sent = list(slow_proxy.sent)
    assert [r.outcome for r in results] == [Outcome.COPIED, Outcome.COPIED], results
    assert stalled.is_set()
    # The copy of its own lists the upload's parts, reads the source from where the parts
    # acknowledged before the drop end, and sends only the parts after them.
    listed = next(n for n, (m, p, _) in enumerate(sent) if m == "GET" and "uploadId=" in p)
    ranges = [h.get("range") for m, p, h in proxy.sent if m == "GET" and p.endswith("/k")]
    assert len(ranges) == 2 and ranges[0] is None, ranges
    done = int(ranges[1].removeprefix("bytes=").removesuffix("-")) // (5 * MiB)
    assert done >= 2 and ranges[1] == f"bytes={done * 5 * MiB}-", ranges
    again = [int(p.rsplit("partNumber=", 1)[1]) for m, p, _ in sent[listed:] if m == "PUT"]
    assert again == list(range(done + 1, 11)), again
    want = hashlib.md5(data).hexdigest()
    assert md5_at(ceph, fast_bucket.bucket, "k") == want == md5_at(ceph, slow_bucket.bucket, "k")
