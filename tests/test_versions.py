"""Versioned replication (``versions = true``): the pure planner, and the bucket job and the
listener replaying a key's whole history between real Ceph RGW buckets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis

from s3s3.bucketjob.options import JobOptions
from s3s3.bucketjob.runner import sync_buckets
from s3s3.config import RedisConfig
from s3s3.errors import FatalEndpointError
from s3s3.listing.versions import list_key_versions, versions_of_key
from s3s3.model import DELETE, VersionInfo
from s3s3.queue.producer import publish_keys
from s3s3.store.endpoint import Endpoint
from s3s3.versionplan import COPY, MARKER, plan_key
from tests.conftest import ROOT, endpoint_config, raw_client, unique_bucket

# --------------------------------------------------------------------------- the planner


def v(vid: str, etag: str = "", size: int = 1, marker: bool = False) -> VersionInfo:
    return VersionInfo("k", vid, delete_marker=marker, size=0 if marker else size, etag=etag)


MD5 = {n: f"{n:0>32}" for n in "abcdef"}


def test_plan_replays_all_of_an_empty_destination_oldest_first():
    src = [v("1", MD5["a"]), v("2", MD5["b"]), v("m", marker=True), v("3", MD5["c"])]
    plan = plan_key("k", src, [], delete_markers=True)
    assert [(s.op, s.version.version_id) for s in plan.steps] == [
        (COPY, "1"),
        (COPY, "2"),
        (MARKER, "m"),
        (COPY, "3"),
    ]
    without = plan_key("k", src, [], delete_markers=False)
    assert [s.version.version_id for s in without.steps] == ["1", "2", "3"]


def test_plan_is_a_no_op_once_the_history_is_there_and_replays_only_the_tail():
    src = [v("1", MD5["a"]), v("2", MD5["b"]), v("3", MD5["c"])]
    dest = [v("x1", MD5["a"]), v("x2", MD5["b"]), v("x3", MD5["c"])]
    assert plan_key("k", src, dest, delete_markers=False).in_step
    tail = plan_key("k", src, dest[:1], delete_markers=False)
    assert [s.version.version_id for s in tail.steps] == ["2", "3"]


def test_plan_copies_again_after_a_version_copied_out_of_order():
    src = [v("1", MD5["a"]), v("2", MD5["b"]), v("3", MD5["c"])]
    dest = [v("x1", MD5["a"]), v("x3", MD5["c"])]  # the listener ran ahead
    plan = plan_key("k", src, dest, delete_markers=False)
    assert [s.version.version_id for s in plan.steps] == ["2", "3"]
    after = dest + [v("x2", MD5["b"]), v("x3b", MD5["c"])]
    assert plan_key("k", src, after, delete_markers=False).in_step


def test_plan_passes_over_destination_versions_the_source_no_longer_has():
    src = [v("1", MD5["a"]), v("3", MD5["c"])]  # version 2 deleted for good at the source
    dest = [v("x1", MD5["a"]), v("x2", MD5["b"]), v("x3", MD5["c"])]
    assert plan_key("k", src, dest, delete_markers=False).in_step


def test_plan_restores_the_latest_when_the_destination_was_written_to():
    src = [v("1", MD5["a"])]
    dest = [v("x1", MD5["a"]), v("x2", MD5["d"])]
    plan = plan_key("k", src, dest, delete_markers=False)
    assert [s.version.version_id for s in plan.steps] == ["1"]


def test_plan_asks_for_identities_of_multipart_copies_and_uses_them():
    src = [v("1", "aaaa-2", size=10), v("2", "bbbb-2", size=10)]
    dest = [v("x1", "cccc-3", size=10), v("x2", "dddd-3", size=10)]
    first = plan_key("k", src, dest, delete_markers=False)
    assert {d.version_id for d in first.identify} == {"x1", "x2"}
    known = plan_key("k", src, dest, delete_markers=False, identities={"x1": "1", "x2": "2"})
    assert known.in_step
    half = plan_key("k", src, dest, delete_markers=False, identities={"x1": "1", "x2": None})
    assert [s.version.version_id for s in half.steps] == ["2"]


# --------------------------------------------------------------------------- on Ceph


def versioned(info: dict, name: str, *, status: str | None = "Enabled") -> Endpoint:
    bucket = unique_bucket(name[:4])
    client = raw_client(info)
    client.create_bucket(Bucket=bucket)
    if status is not None:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
    return Endpoint(endpoint_config(info, bucket, name=name))


def history(info: dict, ep: Endpoint, key: str) -> list[bytes | None]:
    """``key``'s history at ``ep``, oldest first: each version's bytes, None for a marker."""
    client = raw_client(info)
    out: list[bytes | None] = []
    for found in versions_of_key(ep, key).versions:
        if found.delete_marker:
            out.append(None)
        else:
            got = client.get_object(Bucket=ep.bucket, Key=key, VersionId=found.version_id)
            out.append(got["Body"].read())
    return out


@pytest.fixture(scope="module")
def swift_versioned(tmp_path_factory):
    """A Swift with s3api whose object versioning is on (bucket versioning needs it)."""
    from servers import swift_s3api

    workdir = tmp_path_factory.mktemp("swift-versioned")
    info = swift_s3api.start(workdir, tls=False, object_versioning=True)
    try:
        yield info
    finally:
        swift_s3api.stop(workdir)


@pytest.fixture(params=["ceph-ceph", "ceph-swift"])
def dest_server(request):
    if request.param == "ceph-swift":
        return request.getfixturevalue("swift_versioned")
    return request.getfixturevalue("ceph")


def test_five_versions_and_a_delete_marker_replay_in_order_and_a_rerun_is_a_no_op(
    ceph, dest_server
):
    src, dst = versioned(ceph, "source"), versioned(dest_server, "dest")
    client = raw_client(ceph)
    bodies = [os.urandom(100 + i) for i in range(5)]
    for i, body in enumerate(bodies):
        client.put_object(Bucket=src.bucket, Key="k ü+", Body=body)
        if i == 1:
            client.delete_object(Bucket=src.bucket, Key="k ü+")
    client.put_object(Bucket=src.bucket, Key="single", Body=b"one")
    options = JobOptions(versions=True, delete_markers=True)
    first = sync_buckets(src, [dst], options).destinations[0]
    expected = [bodies[0], bodies[1], None, bodies[2], bodies[3], bodies[4]]
    assert history(dest_server, dst, "k ü+") == expected
    assert history(dest_server, dst, "single") == [b"one"]
    assert (first.copied, first.versions_copied, first.markers_written, first.failed) == (
        2,
        6,
        1,
        0,
    )
    # Each copy names the source version it holds.
    source_ids = [x.version_id for x in versions_of_key(src, "k ü+").versions]
    for dest_version, source_id in zip(
        versions_of_key(dst, "k ü+").versions, source_ids, strict=True
    ):
        if not dest_version.delete_marker:
            head = dst.head("k ü+", version_id=dest_version.version_id)
            assert head is not None and head.source_version_id == source_id
    before = [x.version_id for x in versions_of_key(dst, "k ü+").versions]
    again = sync_buckets(src, [dst], options).destinations[0]
    assert (again.copied, again.skipped, again.versions_copied) == (0, 2, 0)
    assert [x.version_id for x in versions_of_key(dst, "k ü+").versions] == before


def test_without_delete_markers_the_versions_replay_and_the_marker_does_not(ceph, dest_server):
    src, dst = versioned(ceph, "source"), versioned(dest_server, "dest")
    client = raw_client(ceph)
    client.put_object(Bucket=src.bucket, Key="k", Body=b"1")
    client.delete_object(Bucket=src.bucket, Key="k")
    client.put_object(Bucket=src.bucket, Key="k", Body=b"2")
    sync_buckets(src, [dst], JobOptions(versions=True))
    assert history(dest_server, dst, "k") == [b"1", b"2"]
    assert sync_buckets(src, [dst], JobOptions(versions=True)).destinations[0].copied == 0


def test_a_version_overwritten_during_the_run_is_copied_as_listed(ceph):
    """Each version is read by its id: an overwrite after the listing changes nothing the run
    copies, and the next run replays the new version."""
    src, dst = versioned(ceph, "source"), versioned(ceph, "dest")
    client = raw_client(ceph)
    for i in range(60):
        client.put_object(Bucket=src.bucket, Key=f"a/{i:03}", Body=b"x" * i)
    client.put_object(Bucket=src.bucket, Key="z", Body=b"old-1")
    client.put_object(Bucket=src.bucket, Key="z", Body=b"old-2")
    listed = versions_of_key(src, "z").versions
    from s3s3.replay import replay_key

    client.put_object(Bucket=src.bucket, Key="z", Body=b"new")  # after the listing
    replay_key(src, dst, "z", listed, (), delete_markers=False)
    assert history(ceph, dst, "z") == [b"old-1", b"old-2"]
    sync_buckets(src, [dst], JobOptions(versions=True, bucket=_workers(2)))
    assert history(ceph, dst, "z") == [b"old-1", b"old-2", b"new"]
    assert history(ceph, dst, "a/007") == [b"x" * 7]
    assert sync_buckets(src, [dst], JobOptions(versions=True)).destinations[0].copied == 0


def _workers(n: int):
    from s3s3.config import BucketConfig

    return BucketConfig(workers=n)


@pytest.mark.parametrize("status", [None, "Suspended"])
def test_a_destination_without_versioning_is_a_clear_error(ceph, status):
    src, dst = versioned(ceph, "source"), versioned(ceph, "dest", status=status)
    raw_client(ceph).put_object(Bucket=src.bucket, Key="k", Body=b"1")
    with pytest.raises(FatalEndpointError) as caught:
        sync_buckets(src, [dst], JobOptions(versions=True))
    assert caught.value.code == "VersioningNotEnabled"
    text = str(caught.value)
    assert dst.bucket in text and "[dest]" in text
    assert ("suspended" if status else "never enabled") in text
    assert versions_of_key(dst, "k").versions == ()


def test_the_listener_follows_put_put_delete_put(ceph, tmp_path, redis_url):
    src, dst = versioned(ceph, "source"), versioned(ceph, "dest")
    client = raw_client(ceph)
    channel = f"versions-{uuid.uuid4().hex[:10]}"
    ini = tmp_path / "s3s3.ini"

    def section(name: str, ep: Endpoint, extra: str = "") -> str:
        return (
            f"[{name}]\nbucket_name = {ep.bucket}\nendpoint_url = {ep.cfg.endpoint_url}\n"
            f"aws_access_key_id = {ep.cfg.access_key}\n"
            f"aws_secret_access_key = {ep.cfg.secret_key}\n{extra}"
        )

    ini.write_text(
        section("source", src, "versions = true\ndelete_markers = true\n")
        + section("dest", dst)
        + f"[pubsub]\nurl = {redis_url}\nmode = stream\nchannel = {channel}\n"
        "[listen]\nworkers = 4\ngrace = 10\n"
    )
    cfg = RedisConfig(
        url=redis_url,
        channel=channel,
        mode="stream",
        stream=f"s3s3:{{{channel}}}:stream",
        dead_letter_stream=f"s3s3:{{{channel}}}:dead",
    )
    rc = redis.Redis.from_url(redis_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3s3.scripts.listen", "--config", str(ini)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    want: list[bytes | None] = []

    def wait_for(expected: list[bytes | None]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and history(ceph, dst, "k") != expected:
            time.sleep(0.2)
        assert history(ceph, dst, "k") == expected

    try:
        for step in (b"v1", b"v2", None, b"v3"):
            if step is None:
                client.delete_object(Bucket=src.bucket, Key="k")
                publish_keys(rc, cfg, ["k"], op=DELETE)
            else:
                client.put_object(Bucket=src.bucket, Key="k", Body=step)
                publish_keys(rc, cfg, ["k"])
            want.append(step)
            wait_for(want)
        # Old events again, out of order: nothing changes.
        publish_keys(rc, cfg, ["k"], op=DELETE)
        publish_keys(rc, cfg, ["k"])
        time.sleep(1.5)
        assert history(ceph, dst, "k") == [b"v1", b"v2", None, b"v3"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        rc.delete(cfg.stream, cfg.dead_letter_stream)
        rc.close()
    assert proc.returncode == 0, err[-3000:]


def test_a_server_without_versioning_is_a_clear_error(ceph, swift):
    """The suite's plain Swift has no object versioning: s3api answers GetBucketVersioning
    as for a bucket never versioned (and PutBucketVersioning with NotImplemented)."""
    src = versioned(ceph, "source")
    bucket = unique_bucket("dest")
    raw_client(swift).create_bucket(Bucket=bucket)
    dst = Endpoint(endpoint_config(swift, bucket, name="dest"))
    raw_client(ceph).put_object(Bucket=src.bucket, Key="k", Body=b"1")
    with pytest.raises(FatalEndpointError) as caught:
        sync_buckets(src, [dst], JobOptions(versions=True))
    assert caught.value.code == "VersioningNotEnabled", caught.value
    text = str(caught.value)
    assert bucket in text and "[dest]" in text and "allow_object_versioning" in text
    assert dst.head("k") is None


def test_small_pages_list_the_same_history_as_one_page(ceph, dest_server):
    """KeyMarker and VersionIdMarker resume exactly after the last entry: pages of 2 and 3
    split keys mid-history, odd keys included, and lose or repeat nothing."""
    ep = versioned(dest_server, "source")
    client = raw_client(dest_server)
    for key in ("a", "a b+ü", "a/b", "b%2Fc"):
        for n in range(3):
            client.put_object(Bucket=ep.bucket, Key=key, Body=f"{key}{n}".encode())
        client.delete_object(Bucket=ep.bucket, Key=key)
    whole = list(list_key_versions(ep, page_size=1000))
    assert [k.key for k in whole] == ["a", "a b+ü", "a/b", "b%2Fc"]
    assert all(len(k.versions) == 4 and k.versions[-1].delete_marker for k in whole)
    for size in (2, 3):
        assert list(list_key_versions(ep, page_size=size)) == whole
    assert versions_of_key(ep, "a", page_size=2) == whole[0]
