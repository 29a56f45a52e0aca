"""Multipart copies that resume, parts retried in place, and ``s3s3-md5`` on every copy.

- A ranged GET (``Store.get(start=, end=, if_match=)``) reads exactly its bytes and still
  says the whole object's size, on both data paths; ``If-Match`` of another version is
  :class:`SourceChanged`.
- A part that fails once is sent again from a ranged GET of exactly its bytes, with
  ``If-Match``; the main GET goes on, and nothing is read twice as a whole.
- An interrupted copy (a failure its caller sees, a kill -9 of ``s3s3bucket``) leaves its
  upload and a record; the next copy lists the parts, reads the source from the first
  missing byte and sends only the missing parts. A source changed in between aborts the old
  upload and starts over.
- A multipart copy of a source whose md5 is not known in advance gets ``s3s3-md5`` once it
  is complete (Ceph and Swift), and a later run skips it without reading it.
- ``s3s3bucket uploads`` lists and aborts, against Ceph.

Requests are counted and their headers read through ``tests/faultproxy.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from conftest import ROOT, endpoint_config, raw_client, unique_bucket
from test_listener_support import (  # noqa: F401  (fixtures)
    endpoint_section,
    listeners,
    names,
    start_listener,
    stream_config,
    wait_until,
    write_ini,
)

from s3s3 import resume
from s3s3.config import GiB, MiB, RedisConfig
from s3s3.errors import SourceChanged, TransientEndpointError
from s3s3.model import MD5_META, Outcome
from s3s3.plan import Verdict, decide
from s3s3.queue.producer import add_entries
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import copy_object, multipart_etag
from tests.faultproxy import FaultProxy

PART = 5 * MiB
PART_NUMBER = re.compile(r"[?&]partNumber=(\d+)")


def part_number(method: str, path: str) -> int | None:
    """The part number of an UploadPart request, else None."""
    m = PART_NUMBER.search(path)
    return int(m.group(1)) if method == "PUT" and m else None


def data_of(size: int, seed: bytes = b"") -> bytes:
    block = hashlib.sha256(seed).digest() * 8  # 256 bytes that differ by seed
    return (bytes(range(256)) + block) * (size // 512) + b"t" * (size % 512)


def endpoint(info: dict, bucket: str, name: str, **overrides) -> Endpoint:
    return Endpoint(endpoint_config(info, bucket, name=name, **overrides))


def multipart_dest(info: dict, bucket: str, state: Path, **overrides) -> Endpoint:
    fields = dict(
        multipart_threshold_bytes=PART,
        multipart_chunksize_bytes=PART,
        upload_state=str(state),
    )
    fields.update(overrides)
    return endpoint(info, bucket, "dest", **fields)


def uploads(info: dict, bucket: str) -> list[dict]:
    return raw_client(info).list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def object_gets(proxy: FaultProxy, key: str) -> list[dict[str, str]]:
    """The headers of each GET of ``key`` the proxy saw (listings left out)."""
    return [h for m, p, h in proxy.sent if m == "GET" and p.split("?")[0].endswith("/" + key)]


def body_of(info: dict, bucket: str, key: str) -> bytes:
    return raw_client(info).get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture
def two_buckets(moto_servers):
    a, b = moto_servers
    src, dst = unique_bucket("src"), unique_bucket("dst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    return a, b, src, dst


# --------------------------------------------------------------------------- ranged GET


@pytest.mark.parametrize("data_path", ["raw", "botocore"])
@pytest.mark.parametrize("server", ["moto", "ceph", "swift"])
def test_a_ranged_get_reads_its_bytes_and_gives_the_whole_size(request, server, data_path):
    info = (
        request.getfixturevalue(server)
        if server != "moto"
        else request.getfixturevalue("moto_servers")[0]
    )
    bucket = unique_bucket("rng")
    raw_client(info).create_bucket(Bucket=bucket)
    data = data_of(3 * MiB + 7)
    etag = raw_client(info).put_object(Bucket=bucket, Key="k", Body=data)["ETag"].strip('"')
    ep = endpoint(info, bucket, "source", data_path=data_path)
    assert ep.transport("get") == ("lean" if data_path == "raw" else "botocore")
    with ep.get("k", start=MiB, end=2 * MiB - 1, if_match=etag) as obj:
        assert obj.body.read() == data[MiB : 2 * MiB]
        assert obj.info.size == len(data) and obj.info.etag == etag
    with ep.get("k", start=3 * MiB) as obj:
        assert obj.body.read() == data[3 * MiB :]
    raw_client(info).put_object(Bucket=bucket, Key="k", Body=b"another version")
    with pytest.raises(SourceChanged, match=r"GetObject s3://.*/k on \[source\] failed"):
        ep.get("k", start=0, end=9, if_match=etag)
    # If-Match a multipart ETag too (Swift 2.30 refuses it on CopyObject, not on GET).
    big = data_of(11 * MiB)
    multipart = _multipart_put(raw_client(info), bucket, "m", big, PART)
    with ep.get("m", start=PART, end=2 * PART - 1, if_match=multipart) as obj:
        assert obj.body.read() == big[PART : 2 * PART] and obj.info.size == len(big)


# --------------------------------------------------------------------------- retry in place


@pytest.mark.parametrize("data_path", ["raw", "botocore"])
def test_a_part_that_fails_once_is_sent_again_from_its_range(two_buckets, tmp_path, data_path):
    a, b, src_bucket, dst_bucket = two_buckets
    data = data_of(12 * MiB + 100)
    etag = raw_client(a).put_object(Bucket=src_bucket, Key="k", Body=data)["ETag"].strip('"')
    failed: list[int] = []

    def fail_part_2_once(method: str, path: str) -> bool:
        if part_number(method, path) == 2 and not failed:
            failed.append(2)
            return True
        return False

    with FaultProxy(a["endpoint_url"]) as sp, FaultProxy(b["endpoint_url"]) as dp:
        dp.fail_if = fail_part_2_once
        src = endpoint(a, src_bucket, "source", endpoint_url=sp.url, data_path=data_path)
        dst = multipart_dest(b, dst_bucket, tmp_path, endpoint_url=dp.url)
        result = copy_object(src, dst, "k", force=True)
        parts_sent = [part_number(m, p) for _, m, p in dp.requests if part_number(m, p)]
    assert result.outcome is Outcome.COPIED and result.parts == 3
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert parts_sent == [1, 2, 2, 3]
    gets = object_gets(sp, "k")
    assert len(gets) == 2, gets  # the main GET and one of part 2's bytes, no other
    assert "range" not in gets[0]
    assert gets[1]["range"] == f"bytes={PART}-{2 * PART - 1}"
    assert gets[1]["if-match"].strip('"') == etag
    assert body_of(b, dst_bucket, "k") == data
    assert uploads(b, dst_bucket) == []


def test_a_part_failing_past_the_attempts_is_left_for_the_caller(two_buckets, tmp_path):
    """In-place tries stay within the destination's max_attempts, over every copy attempt
    of the upload: a part that keeps failing is not sent attempts x attempts times."""
    a, b, src_bucket, dst_bucket = two_buckets
    data = data_of(12 * MiB)
    raw_client(a).put_object(Bucket=src_bucket, Key="k", Body=data)
    with FaultProxy(b["endpoint_url"]) as dp:
        dp.fail_if = lambda m, p: part_number(m, p) == 2
        dst = multipart_dest(b, dst_bucket, tmp_path, endpoint_url=dp.url, max_attempts=3)
        src = endpoint(a, src_bucket, "source")
        for _ in range(3):  # a caller retrying the whole copy three times
            with pytest.raises(TransientEndpointError, match="UploadPart"):
                copy_object(src, dst, "k", force=True)
        tries = _sent_parts(dp).count(2)
        record = resume.FileProgress(tmp_path).load(dp.url, dst_bucket, "k")
    # 3 in place on the first copy, then one try on each of the two resumed copies.
    assert tries == 3 + 1 + 1
    assert record is not None and [p.number for p in record.parts] == [1]
    assert record.part_failures == 5


# --------------------------------------------------------------------------- resume


def _interrupt_at_part(src: Endpoint, dp: FaultProxy, b: dict, dst_bucket: str, state, number):
    """Copy ``k`` through ``dp`` with part ``number`` failing for good (no tries in place):
    the copy fails with the upload and its record left. (The record names the destination
    by its URL, the proxy's: the copy that resumes goes through the same proxy.)"""
    dp.fail_if = lambda m, p: part_number(m, p) == number
    dst = multipart_dest(b, dst_bucket, state, endpoint_url=dp.url, max_attempts=1)
    with pytest.raises(TransientEndpointError):
        copy_object(src, dst, "k", force=True)
    dp.fail_if = None
    [upload] = uploads(b, dst_bucket)
    record = resume.FileProgress(state).load(dp.url, dst_bucket, "k")
    assert record is not None and record.upload_id == upload["UploadId"]
    assert [p.number for p in record.parts] == list(range(1, number))
    return record


def _sent_parts(dp: FaultProxy, since: int = 0) -> list[int]:
    return [n for _, m, p in dp.requests[since:] if (n := part_number(m, p))]


@pytest.mark.parametrize("source_md5", ["known", "unknown"])
def test_an_interrupted_copy_resumes_from_the_parts_already_there(
    two_buckets, tmp_path, source_md5
):
    a, b, src_bucket, dst_bucket = two_buckets
    data = data_of(22 * MiB)
    client = raw_client(a)
    if source_md5 == "known":
        etag = client.put_object(Bucket=src_bucket, Key="k", Body=data)["ETag"].strip('"')
    else:  # a multipart source without s3s3-md5: its md5 is known only by reading it all
        up = client.create_multipart_upload(Bucket=src_bucket, Key="k")["UploadId"]
        parts = [
            {
                "PartNumber": i + 1,
                "ETag": client.upload_part(
                    Bucket=src_bucket,
                    Key="k",
                    UploadId=up,
                    PartNumber=i + 1,
                    Body=data[i * 8 * MiB : (i + 1) * 8 * MiB],
                )["ETag"],
            }
            for i in range(3)
        ]
        etag = client.complete_multipart_upload(
            Bucket=src_bucket, Key="k", UploadId=up, MultipartUpload={"Parts": parts}
        )["ETag"].strip('"')
    with FaultProxy(a["endpoint_url"]) as sp, FaultProxy(b["endpoint_url"]) as dp:
        # The failed copy got parts 1-3 to the destination.
        record = _interrupt_at_part(
            endpoint(a, src_bucket, "source"), dp, b, dst_bucket, tmp_path, 4
        )
        seen = len(dp.requests)
        src = endpoint(a, src_bucket, "source", endpoint_url=sp.url)
        dst = multipart_dest(b, dst_bucket, tmp_path, endpoint_url=dp.url)
        result = copy_object(src, dst, "k", force=True)
        sent = _sent_parts(dp, seen)
    assert result.outcome is Outcome.COPIED and result.parts == 5
    assert sent == [4, 5]  # parts 1-3 were not sent again
    [get] = object_gets(sp, "k")
    assert get["range"] == f"bytes={3 * PART}-" and get["if-match"].strip('"') == etag
    assert result.bytes_read == len(data) - 3 * PART
    assert body_of(b, dst_bucket, "k") == data
    assert uploads(b, dst_bucket) == []
    assert resume.FileProgress(tmp_path).load(record.endpoint, dst_bucket, "k") is None
    head = endpoint(b, dst_bucket, "dest").head("k")
    part_md5s = [hashlib.md5(data[i : i + PART]).digest() for i in range(0, len(data), PART)]
    assert head.etag == multipart_etag(part_md5s)
    if source_md5 == "known":
        assert result.md5 == head.md5 == hashlib.md5(data).hexdigest()
    else:  # the dead process hashed parts 1-3: the whole md5 is not known, and not guessed
        assert result.md5 is None and head.md5 is None


def test_a_source_changed_since_the_interruption_starts_over(two_buckets, tmp_path):
    a, b, src_bucket, dst_bucket = two_buckets
    client = raw_client(a)
    old = data_of(12 * MiB, b"old")
    client.put_object(Bucket=src_bucket, Key="k", Body=old)
    with FaultProxy(a["endpoint_url"]) as sp, FaultProxy(b["endpoint_url"]) as dp:
        record = _interrupt_at_part(
            endpoint(a, src_bucket, "source"), dp, b, dst_bucket, tmp_path, 2
        )
        new = data_of(12 * MiB, b"new")
        client.put_object(Bucket=src_bucket, Key="k", Body=new)
        seen = len(dp.requests)
        src = endpoint(a, src_bucket, "source", endpoint_url=sp.url)
        dst = multipart_dest(b, dst_bucket, tmp_path, endpoint_url=dp.url)
        result = copy_object(src, dst, "k", force=True)
        sent = _sent_parts(dp, seen)
        aborts = [p for _, m, p in dp.requests[seen:] if m == "DELETE"]
    assert result.outcome is Outcome.COPIED and result.md5 == hashlib.md5(new).hexdigest()
    assert sent == [1, 2, 3]
    assert any(record.upload_id in p for p in aborts)  # the old upload was aborted
    ranged, whole = object_gets(sp, "k")
    assert ranged["range"] == f"bytes={PART}-" and "if-match" in ranged  # answered 412
    assert "range" not in whole
    assert body_of(b, dst_bucket, "k") == new
    assert uploads(b, dst_bucket) == []


def test_copy_from_a_body_at_byte_0_resumes_by_reading_the_parts_through(two_buckets, tmp_path):
    """copy_from (a read other destinations may share) resumes too: the parts already there
    are read from the body and checked, not sent, and the whole md5 is known again."""
    from s3s3.transfer import copy_from

    a, b, src_bucket, dst_bucket = two_buckets
    data = data_of(17 * MiB)
    up = raw_client(a).create_multipart_upload(Bucket=src_bucket, Key="k")["UploadId"]
    part = raw_client(a).upload_part(
        Bucket=src_bucket, Key="k", UploadId=up, PartNumber=1, Body=data
    )
    raw_client(a).complete_multipart_upload(
        Bucket=src_bucket,
        Key="k",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    src = endpoint(a, src_bucket, "source")
    with FaultProxy(b["endpoint_url"]) as dp:
        _interrupt_at_part(src, dp, b, dst_bucket, tmp_path, 3)
        seen = len(dp.requests)
        dst = multipart_dest(b, dst_bucket, tmp_path, endpoint_url=dp.url)
        with src.get("k") as obj:
            result = copy_from(src, dst, "k", "k", obj.body, obj.info, obj.headers)
        sent = _sent_parts(dp, seen)
    assert sent == [3, 4]
    assert result.outcome is Outcome.COPIED and result.md5 == hashlib.md5(data).hexdigest()
    assert body_of(b, dst_bucket, "k") == data
    head = raw_client(b).head_object(Bucket=dst_bucket, Key="k")
    assert head["Metadata"][MD5_META] == hashlib.md5(data).hexdigest()  # written after
    assert uploads(b, dst_bucket) == []


def test_a_source_deleted_since_the_interruption_is_missing_and_its_upload_aborted(
    two_buckets, tmp_path
):
    a, b, src_bucket, dst_bucket = two_buckets
    raw_client(a).put_object(Bucket=src_bucket, Key="k", Body=data_of(12 * MiB))
    src = endpoint(a, src_bucket, "source")
    with FaultProxy(b["endpoint_url"]) as dp:
        _interrupt_at_part(src, dp, b, dst_bucket, tmp_path, 2)
        raw_client(a).delete_object(Bucket=src_bucket, Key="k")
        dst = multipart_dest(b, dst_bucket, tmp_path, endpoint_url=dp.url)
        assert copy_object(src, dst, "k", force=True).outcome is Outcome.MISSING
    assert uploads(b, dst_bucket) == []
    assert list(resume.FileProgress(tmp_path).records()) == []


def test_without_upload_state_a_failed_copy_aborts_and_a_part_is_replayed_once(
    two_buckets, tmp_path
):
    a, b, src_bucket, dst_bucket = two_buckets
    raw_client(a).put_object(Bucket=src_bucket, Key="k", Body=data_of(12 * MiB))
    with FaultProxy(b["endpoint_url"]) as dp:
        dp.fail_if = lambda m, p: part_number(m, p) == 2
        dst = multipart_dest(b, dst_bucket, tmp_path, endpoint_url=dp.url, upload_state="none")
        with pytest.raises(TransientEndpointError):
            copy_object(endpoint(a, src_bucket, "source"), dst, "k", force=True)
        assert _sent_parts(dp) == [1, 2, 2]
    assert uploads(b, dst_bucket) == []
    assert list(tmp_path.iterdir()) == []


def test_progress_kept_in_redis_lets_another_process_resume(two_buckets, redis_url):
    """upload_state = redis: what a fleet of listeners shares, so the host that claims a
    dead listener's entry resumes its upload."""
    a, b, src_bucket, dst_bucket = two_buckets
    data = data_of(12 * MiB)
    raw_client(a).put_object(Bucket=src_bucket, Key="k", Body=data)
    src = endpoint(a, src_bucket, "source")
    shared = dict(
        upload_state="redis",
        upload_state_redis=RedisConfig(url=redis_url),
        abort_uploads_after_s=3600.0,
    )
    r = redis.Redis.from_url(redis_url)
    with FaultProxy(b["endpoint_url"]) as dp:
        dp.fail_if = lambda m, p: part_number(m, p) == 3
        one = multipart_dest(
            b, dst_bucket, Path("unused"), endpoint_url=dp.url, max_attempts=1, **shared
        )
        with pytest.raises(TransientEndpointError):
            copy_object(src, one, "k", force=True)
        dp.fail_if = None
        name = resume.RedisProgress.key_of(dp.url, dst_bucket, "k")
        record = resume.UploadRecord.from_json(r.get(name).decode())
        assert record is not None and [p.number for p in record.parts] == [1, 2]
        assert 0 < r.pttl(name) <= 2 * 3600 * 1000  # expires after twice abort_uploads_after
        seen = len(dp.requests)
        other = multipart_dest(b, dst_bucket, Path("unused"), endpoint_url=dp.url, **shared)
        result = copy_object(src, other, "k", force=True)
        assert _sent_parts(dp, seen) == [3]
    assert result.outcome is Outcome.COPIED and body_of(b, dst_bucket, "k") == data
    assert r.exists(name) == 0
    assert not Path("unused").exists()


def test_upload_state_redis_is_the_pubsub_redis(tmp_path):
    from s3s3.config import load

    ini = tmp_path / "s3s3.ini"
    ini.write_text(
        "[source]\nbucket_name = a\n\n[dest1]\nbucket_name = b\nupload_state = Redis\n\n"
        "[dest2]\nbucket_name = c\n\n[pubsub]\nurl = redis://:pw@10.0.0.1:6390/2\n"
    )
    settings = load(ini, search_path=[], env={})
    redis_dest, file_dest = settings.destinations
    assert redis_dest.upload_state == "redis" and redis_dest.upload_state_redis == settings.redis
    assert isinstance(resume.progress_for(redis_dest), resume.RedisProgress)
    assert file_dest.upload_state_redis is None
    assert isinstance(resume.progress_for(file_dest), resume.FileProgress)
    assert "pw" not in repr(redis_dest)


# --------------------------------------------------------------------------- kill -9


def _run_bucket(ini: Path, log_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "s3s3.scripts.bucket", "--config", str(ini), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(ROOT),
            env=env,
        )


def _bucket_ini(path: Path, src: tuple[dict, str], dst: tuple[dict, str], state: Path) -> Path:
    extra = {
        "multipart_threshold": "5MiB",
        "multipart_chunksize": "5MiB",
        "upload_state": str(state),
    }
    text = endpoint_section("source", *src) + "\n" + endpoint_section("dest1", *dst, **extra)
    text += f"\n[bucket]\nlock = local\nlock_dir = {path.parent}\nworkers = 1\n"
    path.write_text(text)
    return path


@pytest.mark.interop
def test_kill_9_of_the_bucket_job_mid_copy_is_resumed_without_resending_parts(ceph, tmp_path):
    """The issue's proof: kill -9 once the destination has seen k UploadParts; the next
    run sends only the parts that were not acknowledged before the kill."""
    k = 3
    src_bucket, dst_bucket = unique_bucket("src"), unique_bucket("dst")
    for bucket in (src_bucket, dst_bucket):
        raw_client(ceph).create_bucket(Bucket=bucket)
    data = os.urandom(8 * PART)
    raw_client(ceph).put_object(Bucket=src_bucket, Key="big", Body=data)
    state = tmp_path / "state"
    log_path = tmp_path / "bucket.log"
    killed = threading.Event()
    with FaultProxy(ceph["endpoint_url"]) as dp:
        ini = _bucket_ini(
            tmp_path / "s3s3.ini",
            (ceph, src_bucket),
            ({**ceph, "endpoint_url": dp.url}, dst_bucket),
            state,
        )
        proc = _run_bucket(ini, log_path, "-v")

        def kill_at_part(method: str, path: str) -> None:
            if part_number(method, path) == k + 1 and not killed.is_set():
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                killed.set()

        dp.before = kill_at_part
        try:
            assert proc.wait(120) == -signal.SIGKILL, log_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
        first = [part_number(m, p) for _, m, p in dp.requests if part_number(m, p)]
        assert first == list(range(1, k + 2)), first
        [upload] = uploads(ceph, dst_bucket)
        [record] = list(resume.FileProgress(state).records())
        assert record.upload_id == upload["UploadId"]
        assert [p.number for p in record.parts] == list(range(1, k + 1))
        dp.before = None
        seen = len(dp.requests)
        proc = _run_bucket(ini, log_path, "-v")
        assert proc.wait(120) == 0, log_path.read_text()[-3000:]
        second = [part_number(m, p) for _, m, p in dp.requests[seen:] if part_number(m, p)]
    assert second == list(range(k + 1, 9)), log_path.read_text()[-3000:]
    assert "resuming upload" in log_path.read_text()
    assert body_of(ceph, dst_bucket, "big") == data
    assert uploads(ceph, dst_bucket) == []
    assert list(resume.FileProgress(state).records()) == []
    head = raw_client(ceph).head_object(Bucket=dst_bucket, Key="big")
    assert head["Metadata"][MD5_META] == hashlib.md5(data).hexdigest()


@pytest.mark.interop
def test_kill_9_of_the_stream_listener_mid_copy_is_resumed_by_the_next(
    ceph, tmp_path, redis_url, names, listeners
):
    """The same in stream mode: the entry stays pending when the listener dies; the next
    listener reclaims it and sends only the parts that were not acknowledged."""
    k = 2
    src_bucket, dst_bucket = unique_bucket("src"), unique_bucket("dst")
    for bucket in (src_bucket, dst_bucket):
        raw_client(ceph).create_bucket(Bucket=bucket)
    data = os.urandom(6 * PART)
    raw_client(ceph).put_object(Bucket=src_bucket, Key="big", Body=data)
    state = tmp_path / "state"
    killed = threading.Event()
    with FaultProxy(ceph["endpoint_url"]) as dp:
        ini = write_ini(
            tmp_path / "s3s3.ini",
            source=(ceph, src_bucket),
            dests=[({**ceph, "endpoint_url": dp.url}, dst_bucket)],
            channel=names.channel,
            mode="stream",
            redis_url=redis_url,
            listen={"workers": "1"},
            dest_extra={
                "multipart_threshold": "5MiB",
                "multipart_chunksize": "5MiB",
                "upload_state": str(state),
            },
        )
        listener = start_listener(ini, tmp_path / "listen.log", listeners)

        def kill_at_part(method: str, path: str) -> None:
            if part_number(method, path) == k + 1 and not killed.is_set():
                listener.kill()
                killed.set()

        dp.before = kill_at_part
        r = redis.Redis.from_url(redis_url)
        add_entries(r, stream_config(names, redis_url), [{"key": "big", "op": "copy"}])
        wait_until(killed.is_set, 60, what="the kill at part k + 1")
        dp.before = None
        assert _sent_parts(dp) == list(range(1, k + 2))
        assert [p.number for p in next(resume.FileProgress(state).records()).parts] == [1, 2]
        seen = len(dp.requests)
        listener.start()  # reclaims the pending entry after reclaim_idle (3 s)
        wait_until(
            lambda: "big" in [o.key for o in endpoint(ceph, dst_bucket, "d").list_page().objects],
            60,
            what="the resumed copy",
        )
        second = _sent_parts(dp, seen)
    assert second == list(range(k + 1, 7)), listener.output()[-3000:]
    assert "resuming upload" in listener.output(since_start=True)
    assert body_of(ceph, dst_bucket, "big") == data
    assert uploads(ceph, dst_bucket) == []


# --------------------------------------------------------------------------- s3s3-md5


def _multipart_put(client, bucket: str, key: str, data: bytes, part: int, **params) -> str:
    up = client.create_multipart_upload(Bucket=bucket, Key=key, **params)["UploadId"]
    parts = []
    for n, offset in enumerate(range(0, len(data), part), 1):
        etag = client.upload_part(
            Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=data[offset : offset + part]
        )["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts}
    )
    return client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')


@pytest.mark.interop
@pytest.mark.parametrize("server", ["ceph", "swift"])
@pytest.mark.parametrize("layout", ["same parts", "other parts"])
def test_s3s3_md5_is_written_on_a_multipart_copy_of_a_source_without_it(
    request, tmp_path, server, layout
):
    info = request.getfixturevalue(server)
    src_bucket, dst_bucket = unique_bucket("src"), unique_bucket("dst")
    for bucket in (src_bucket, dst_bucket):
        raw_client(info).create_bucket(Bucket=bucket)
    data = data_of(13 * MiB)
    src_etag = _multipart_put(
        raw_client(info),
        src_bucket,
        "k",
        data,
        PART if layout == "same parts" else 6 * MiB,
        ContentType="application/x-test",
        CacheControl="max-age=9",
        Metadata={"owner": "alice"},
    )
    assert src_etag.endswith("-3")
    src = endpoint(info, src_bucket, "source")
    dst = multipart_dest(info, dst_bucket, tmp_path)
    result = copy_object(src, dst, "k")
    md5 = hashlib.md5(data).hexdigest()
    assert result.outcome is Outcome.COPIED and result.md5 == md5
    head = raw_client(info).head_object(Bucket=dst_bucket, Key="k")
    assert head["Metadata"] == {"owner": "alice", MD5_META: md5}
    assert head["ContentType"] == "application/x-test" and head["CacheControl"] == "max-age=9"
    assert head["ContentLength"] == len(data)
    dst_etag = head["ETag"].strip('"')
    # The metadata rewrite keeps the copy's multipart ETag on Ceph and on Swift (moto makes
    # it the md5 of the bytes): with the source's layout it is the source's ETag again.
    part_md5s = [hashlib.md5(data[i : i + PART]).digest() for i in range(0, len(data), PART)]
    assert dst_etag == multipart_etag(part_md5s)
    assert (dst_etag == src_etag) is (layout == "same parts")
    assert body_of(info, dst_bucket, "k") == data
    # A later run skips it without reading: from the listings (s3s3bucket) and from HEADs.
    [listed_src] = src.list_page().objects
    [listed_dst] = dst.list_page().objects
    assert decide(listed_src, listed_dst) is Verdict.SKIP
    assert decide(src.head("k"), dst.head("k")) is Verdict.SKIP
    with FaultProxy(info["endpoint_url"]) as sp:
        watched = endpoint(info, src_bucket, "source", endpoint_url=sp.url)
        assert copy_object(watched, dst, "k").outcome is Outcome.SKIPPED
        assert object_gets(sp, "k") == []


# --------------------------------------------------------------------------- the command


@pytest.mark.interop
def test_the_uploads_command_lists_and_aborts_on_ceph(ceph, tmp_path, request):
    src_bucket, dst_bucket = unique_bucket("src"), unique_bucket("dst")
    for bucket in (src_bucket, dst_bucket):
        raw_client(ceph).create_bucket(Bucket=bucket)
    raw_client(ceph).put_object(Bucket=src_bucket, Key="k", Body=data_of(12 * MiB))
    state = tmp_path / "state"
    dp = FaultProxy(ceph["endpoint_url"]).start()
    request.addfinalizer(dp.stop)
    record = _interrupt_at_part(
        endpoint(ceph, src_bucket, "source"), dp, ceph, dst_bucket, state, 3
    )
    other = raw_client(ceph).create_multipart_upload(Bucket=dst_bucket, Key="other")["UploadId"]
    ini = _bucket_ini(
        tmp_path / "s3s3.ini",
        (ceph, src_bucket),
        ({**ceph, "endpoint_url": dp.url}, dst_bucket),
        state,
    )

    def s3s3bucket(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "s3s3.scripts.bucket", "--config", str(ini), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    listed = s3s3bucket("uploads", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = sorted((json.loads(line) for line in listed.stdout.splitlines()), key=lambda r: r["key"])
    assert [(r["key"], r["upload_id"], r["parts"], r["bytes"], r["resumable"]) for r in rows] == [
        ("k", record.upload_id, 2, 2 * PART, True),
        ("other", other, 0, 0, False),
    ]
    text = s3s3bucket("uploads")
    assert f"[dest1] 'k' upload {record.upload_id} initiated " in text.stdout
    assert "2 parts, 10485760 bytes, resumable" in text.stdout
    # Both are s3s3's (Ceph lists the requester as every upload's Initiator); both are
    # fresh, so the default age (abort_uploads_after, a day) keeps them.
    kept = s3s3bucket("uploads", "--abort")
    assert kept.returncode == 0 and "[dest1] aborted 0 of 0 uploads" in kept.stdout
    assert len(uploads(ceph, dst_bucket)) == 2
    aborted = s3s3bucket("uploads", "--abort", "--older-than", "0")
    assert aborted.returncode == 0, aborted.stderr
    assert "[dest1] aborted 2 of 2 uploads" in aborted.stdout
    assert uploads(ceph, dst_bucket) == []
    assert list(resume.FileProgress(state).records()) == []


# --------------------------------------------------------------------------- over 5 GiB


class _Pattern:
    """``size`` bytes of a repeating pattern, read as a stream (never held whole), md5ed
    into ``md5`` as they are read."""

    def __init__(self, size: int, block: bytes, md5) -> None:
        self.left = size
        self.block = block
        self.md5 = md5

    def read(self, amt: int = -1) -> bytes:
        n = min(self.left, len(self.block) if amt is None or amt < 0 else amt, len(self.block))
        data = self.block[:n]
        self.left -= n
        self.md5.update(data)
        return data

    def __len__(self) -> int:
        return self.left


@pytest.mark.slow
@pytest.mark.interop
def test_an_object_over_5_gib_is_copied_and_verified_on_ceph(ceph, tmp_path):
    size = 6 * GiB + 12345
    part = 512 * MiB
    src_bucket, dst_bucket = unique_bucket("big"), unique_bucket("big")
    for bucket in (src_bucket, dst_bucket):
        raw_client(ceph).create_bucket(Bucket=bucket)
    src = endpoint(ceph, src_bucket, "source")
    # Written through s3s3's botocore client, whose payloads are not signed: a stream
    # that cannot be rewound is sent as it is read.
    up = src.create_upload("huge")
    block = os.urandom(MiB)
    whole = hashlib.md5()
    parts = []
    for n, offset in enumerate(range(0, size, part), 1):
        length = min(part, size - offset)
        parts.append(
            src.upload_part("huge", up, number=n, body=_Pattern(length, block, whole), size=length)
        )
    src.complete_upload("huge", up, parts)
    dst = endpoint(
        ceph,
        dst_bucket,
        "dest",
        multipart_threshold_bytes=GiB,
        multipart_chunksize_bytes=256 * MiB,
        upload_state=str(tmp_path / "state"),
    )
    result = copy_object(src, dst, "huge")
    assert result.outcome is Outcome.COPIED and result.size == size
    assert result.parts == -(-size // (256 * MiB))
    assert result.md5 == whole.hexdigest()
    head = dst.head("huge")
    assert head.size == size and head.etag.endswith(f"-{result.parts}")
    # Over 5 GiB, CopyObject cannot rewrite the metadata: no s3s3-md5, and a later run
    # compares the multipart ETag (and the modification time) instead of reading.
    assert head.md5 is None
    assert decide(src.head("huge"), head) is Verdict.SKIP


# --------------------------------------------------------------------------- the state


@pytest.mark.parametrize(
    "line, kept, where",
    [
        ("", "", "default"),
        ("upload_state = None", "none", None),
        ("upload_state = ~/s3s3-uploads", "~/s3s3-uploads", "home"),
    ],
)
def test_upload_state_names_where_progress_is_kept(tmp_path, line, kept, where):
    from s3s3.config import load

    ini = tmp_path / "s3s3.ini"
    ini.write_text(f"[source]\nbucket_name = a\n\n[dest1]\nbucket_name = b\n{line}\n")
    cfg = load(ini, search_path=[], env={}).destinations[0]
    assert cfg.upload_state == kept
    store = resume.progress_for(cfg)
    if where is None:
        assert store is None
    elif where == "home":
        assert store is not None and store.directory == Path.home() / "s3s3-uploads"
    else:
        assert store is not None and store.directory == resume.default_state_dir()
    assert resume.default_state_dir({"XDG_STATE_HOME": "/var/lib/x"}) == Path(
        "/var/lib/x/s3s3/uploads"
    )


def test_a_record_is_replaced_whole_and_a_foreign_file_is_ignored(tmp_path):
    store = resume.FileProgress(tmp_path / "state")
    source = resume.SourceVersion("src", "k", "e" * 32, 12, "2026-01-01T00:00:00+00:00")
    record = resume.UploadRecord("http://x", "b", "k", "up-1", source, PART)
    store.save(record)
    store.save(record.with_part(resume.PartRecord(1, "a" * 32, PART)))
    got = store.load("http://x", "b", "k")
    assert got is not None and got.parts == (resume.PartRecord(1, "a" * 32, PART),)
    assert got.matches(source, PART) and not got.matches(source, 2 * PART)
    assert store.load("http://y", "b", "k") is None
    # Only the record: the temporary files were renamed over it.
    assert [p.name for p in (tmp_path / "state").iterdir()] == [
        resume.record_name("http://x", "b", "k")
    ]
    (tmp_path / "state" / resume.record_name("http://x", "b", "k")).write_text("{half")
    assert store.load("http://x", "b", "k") is None and list(store.records()) == []
    store.delete("http://x", "b", "k")
    store.delete("http://x", "b", "k")  # a missing record is no error
    assert list((tmp_path / "state").iterdir()) == []
