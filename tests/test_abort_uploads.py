"""No multipart upload left behind: cancelled copies abort theirs, start-up sweeps stale ones.

- SIGTERM past ``grace`` during a multipart copy: ``s3s3listen`` hands the entry back *and*
  aborts the upload before it exits; ``s3s3bucket`` cancels its copies after its grace and
  exits before a supervisor's SIGKILL would cut it short.
- On start-up both scripts abort s3s3's own uploads older than ``abort_uploads_after``:
  under the job's prefix, initiated by s3s3's principal.

The destination is slowed by a proxy (:class:`SlowProxy`) so that the copy is in flight when the signal
comes. moto lists every upload as initiated in 2010, so age is proved on Ceph RGW, which
(like Swift) also proves the paging.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from conftest import ROOT, endpoint_config, raw_client, unique_bucket
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    TcpProxy,
    endpoint_section,
    keys_in,
    listeners,
    names,
    wait_until,
    write_ini,
)

from s3s3.config import MiB, RedisConfig
from s3s3.model import UploadInfo
from s3s3.queue.producer import add_entries
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import PROBE_KEY_PREFIX, abort_stale_uploads, is_stale

BIG = 40 * MiB
MULTIPART = {"multipart_threshold": "5MiB", "multipart_chunksize": "5MiB"}
#: What supervisord waits after SIGTERM before it sends SIGKILL (stopwaitsecs), here.
STOPWAIT_S = 20.0


def SlowProxy(target_port: int, *, delay_s: float) -> TcpProxy:
    """A ``TcpProxy`` that slows what the client sends and never times out on the server:
    a part that takes longer than 5 s to be sent is slow, not cut off."""
    return TcpProxy(target_port, delay_s=delay_s, upstream_timeout_s=None)


def uploads(info: dict, bucket: str, prefix: str = "") -> list[dict]:
    return raw_client(info).list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])


def port_of(info: dict) -> int:
    return int(info["endpoint_url"].rsplit(":", 1)[1])


def stream_fields(client: redis.Redis, stream: str) -> list[dict]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(stream)
    ]


def pending(client: redis.Redis, stream: str) -> int:
    try:
        return client.xpending(stream, "s3s3")["pending"]
    except redis.ResponseError:
        return 0


# --------------------------------------------------------------------------- the listener


def _listener_sigterm_case(tmp_path, redis_url, names, listeners, src_info, dst_info):
    """Copy a 40 MiB object through a slow proxy, SIGTERM with grace 0.5 s, check both
    promises: the entry is handed back and no upload is left; then finish the copy."""
    src = unique_bucket("src")
    dst = unique_bucket("dst")
    raw_client(src_info).create_bucket(Bucket=src)
    raw_client(dst_info).create_bucket(Bucket=dst)
    raw_client(src_info).put_object(Bucket=src, Key="big", Body=os.urandom(BIG))
    slow = SlowProxy(port_of(dst_info), delay_s=0.05).open()
    ini = tmp_path / "s3s3.ini"
    try:
        write_ini(
            ini,
            source=(src_info, src),
            dests=[({**dst_info, "endpoint_url": slow.url}, dst)],
            channel=names.channel,
            mode="stream",
            redis_url=redis_url,
            listen={"workers": "1", "grace": "0.5"},
            dest_extra=MULTIPART,
        )
        listener = ListenerProcess(ini, tmp_path / "listen.log").start()
        listeners.append(listener)
        r = redis.Redis.from_url(redis_url)
        cfg = RedisConfig(
            url=redis_url,
            channel=names.channel,
            mode="stream",
            stream=names.stream,
            dead_letter_stream=names.dead,
            consumer="test",
        )
        add_entries(r, cfg, [{"key": "big", "op": "copy"}])
        wait_until(lambda: uploads(dst_info, dst), 60, what="the multipart upload to start")
        listener.signal(signal.SIGTERM)
        assert listener.wait(30) == 0
    finally:
        slow.close()
    out = listener.output()
    assert "handed back 1 unfinished entries" in out, out[-3000:]
    assert uploads(dst_info, dst) == [], out[-3000:]
    assert "big" not in keys_in(dst_info, dst)
    # Handed back: re-added for any listener and the original acknowledged.
    assert [f["key"] for f in stream_fields(r, names.stream)] == ["big", "big"]
    assert pending(r, names.stream) == 0
    # A listener with a direct line finishes it.
    write_ini(
        ini,
        source=(src_info, src),
        dests=[(dst_info, dst)],
        channel=names.channel,
        mode="stream",
        redis_url=redis_url,
        listen={"workers": "1"},
        dest_extra=MULTIPART,
    )
    listener.start()
    wait_until(lambda: "big" in keys_in(dst_info, dst), 60, what="the copy after hand-back")
    wait_until(lambda: pending(r, names.stream) == 0, 15, what="the entry acknowledged")
    assert uploads(dst_info, dst) == []


def test_listener_sigterm_past_grace_aborts_the_upload_and_hands_the_entry_back(
    tmp_path, redis_url, names, listeners, moto_servers
):
    a, b = moto_servers
    _listener_sigterm_case(tmp_path, redis_url, names, listeners, a, b)


@pytest.mark.interop
def test_listener_sigterm_past_grace_aborts_the_upload_on_ceph(
    tmp_path, redis_url, names, listeners, ceph
):
    _listener_sigterm_case(tmp_path, redis_url, names, listeners, ceph, ceph)


# --------------------------------------------------------------------------- the bucket job


def bucket_ini(
    path: Path,
    *,
    source: tuple[dict, str],
    dest: tuple[dict, str],
    bucket: dict,
    dest_extra: dict | None = None,
) -> Path:
    text = endpoint_section("source", *source) + "\n"
    text += endpoint_section("dest1", *dest, **(dest_extra or {})) + "\n"
    settings = {
        "lock": "local",
        "lock_dir": str(path.parent),
        "workers": "1",
        "progress_interval": "1",
        **bucket,
    }
    text += "[bucket]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    path.write_text(text)
    return path


def run_bucket(ini: Path, log_path: Path, *args: str) -> subprocess.Popen:
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


def test_bucket_job_sigterm_past_grace_aborts_the_upload(tmp_path, moto_servers, make_bucket):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest").bucket
    raw_client(a).put_object(Bucket=src, Key="big", Body=os.urandom(BIG))
    slow = SlowProxy(port_of(b), delay_s=0.05).open()
    log_path = tmp_path / "bucket.log"
    try:
        ini = bucket_ini(
            tmp_path / "s3s3.ini",
            source=(a, src),
            dest=({**b, "endpoint_url": slow.url}, dst),
            bucket={"grace": "0.5"},
            dest_extra=MULTIPART,
        )
        proc = run_bucket(ini, log_path, "-v")
        wait_until(
            lambda: uploads(b, dst) or proc.poll() is not None,
            60,
            what="the multipart upload to start",
        )
        assert proc.poll() is None, log_path.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(STOPWAIT_S)
        except subprocess.TimeoutExpired:  # as supervisord would, after stopwaitsecs
            proc.kill()
            code = proc.wait(10)
    finally:
        slow.close()
    out = log_path.read_text()
    assert code == 1, out[-3000:]  # stopped before it was done: not everything in step
    assert "did not finish within grace = 0.5s" in out
    assert uploads(b, dst) == [], out[-3000:]
    assert "big" not in keys_in(b, dst)


# --------------------------------------------------------------------------- start-up sweep


def _create_uploads(info: dict, bucket: str, keys) -> dict[str, str]:
    client = raw_client(info)
    return {key: client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"] for key in keys}


def test_bucket_job_aborts_stale_uploads_under_its_prefix_at_start(
    tmp_path, moto_servers, make_bucket
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest").bucket
    ids = _create_uploads(b, dst, ["job/one", "job/two/deeper", "other/kept"])
    time.sleep(1.5)  # moto dates every upload 2010; on Ceph, below, age is real
    ini = bucket_ini(
        tmp_path / "s3s3.ini",
        source=(a, src),
        dest=(b, dst),
        bucket={"prefix": "job/"},
        dest_extra={"abort_uploads_after": "1s"},
    )
    proc = run_bucket(ini, tmp_path / "bucket.log", "-v")
    assert proc.wait(60) == 0, (tmp_path / "bucket.log").read_text()
    out = (tmp_path / "bucket.log").read_text()
    assert [u["Key"] for u in uploads(b, dst)] == ["other/kept"]
    for key in ("job/one", "job/two/deeper"):
        assert f"aborted stale upload bucket={dst} key={key!r} upload_id={ids[key]}" in out
    assert "aborted 2 stale multipart uploads" in out
    assert "2 stale multipart uploads aborted" in out  # in the destination's summary line
    assert not any(u["Key"].startswith(f"job/{PROBE_KEY_PREFIX}") for u in uploads(b, dst))


def test_abort_uploads_after_zero_aborts_nothing(tmp_path, moto_servers, make_bucket):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest").bucket
    _create_uploads(b, dst, ["kept"])
    ini = bucket_ini(
        tmp_path / "s3s3.ini",
        source=(a, src),
        dest=(b, dst),
        bucket={},
        dest_extra={"abort_uploads_after": "0"},
    )
    proc = run_bucket(ini, tmp_path / "bucket.log", "-v")
    assert proc.wait(60) == 0, (tmp_path / "bucket.log").read_text()
    assert [u["Key"] for u in uploads(b, dst)] == ["kept"]


def test_listener_aborts_stale_uploads_at_start(
    tmp_path, redis_url, names, listeners, moto_servers, make_bucket
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest").bucket
    ids = _create_uploads(b, dst, ["stale/a", "stale/b"])
    time.sleep(1.5)
    ini = write_ini(
        tmp_path / "s3s3.ini",
        source=(a, src),
        dests=[(b, dst)],
        channel=names.channel,
        redis_url=redis_url,
        dest_extra={"abort_uploads_after": "1s"},
    )
    listener = ListenerProcess(ini, tmp_path / "listen.log").start()
    listeners.append(listener)
    listener.wait_for("aborted 2 stale multipart uploads")
    assert uploads(b, dst) == []
    out = listener.output()
    for key, upload_id in ids.items():
        assert f"key={key!r} upload_id={upload_id}" in out


def test_a_listing_error_is_a_warning_not_fatal(moto_servers, caplog):
    ep = Endpoint(endpoint_config(moto_servers[1], unique_bucket("gone"), name="dest"))
    with caplog.at_level("WARNING", logger="s3s3.transfer"):
        assert abort_stale_uploads(ep, older_than_s=1) == 0
    assert "[dest] could not list multipart uploads" in caplog.text
    assert "set abort_uploads_after = 0 to stop trying" in caplog.text


def test_stale_means_old_and_initiated_by_s3s3():
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    cutoff = now - timedelta(hours=24)
    old = now - timedelta(hours=25)
    ours = UploadInfo("k", "u1", initiator="s3s3-user", initiated=old)
    assert is_stale(ours, cutoff=cutoff, initiator="s3s3-user")
    assert not is_stale(
        UploadInfo("k", "u2", initiator="someone-else", initiated=old),
        cutoff=cutoff,
        initiator="s3s3-user",
    )
    assert not is_stale(
        UploadInfo("k", "u3", initiator="s3s3-user", initiated=now - timedelta(hours=23)),
        cutoff=cutoff,
        initiator="s3s3-user",
    )
    assert not is_stale(
        UploadInfo("k", "u4", initiator="s3s3-user", initiated=None),
        cutoff=cutoff,
        initiator="s3s3-user",
    )


@pytest.mark.interop
def test_bucket_job_sweep_on_ceph_keeps_fresh_uploads_and_other_prefixes(tmp_path, ceph):
    client = raw_client(ceph)
    src, dst = unique_bucket("src"), unique_bucket("dst")
    client.create_bucket(Bucket=src)
    client.create_bucket(Bucket=dst)
    ids = _create_uploads(ceph, dst, ["job/old", "elsewhere/old"])
    time.sleep(5.5)
    fresh = _create_uploads(ceph, dst, ["job/fresh"])
    ini = bucket_ini(
        tmp_path / "s3s3.ini",
        source=(ceph, src),
        dest=(ceph, dst),
        bucket={"prefix": "job/"},
        dest_extra={"abort_uploads_after": "5s"},
    )
    proc = run_bucket(ini, tmp_path / "bucket.log", "-v")
    assert proc.wait(60) == 0, (tmp_path / "bucket.log").read_text()
    out = (tmp_path / "bucket.log").read_text()
    left = {u["Key"]: u["UploadId"] for u in uploads(ceph, dst)}
    assert left == {"elsewhere/old": ids["elsewhere/old"], "job/fresh": fresh["job/fresh"]}
    assert f"key='job/old' upload_id={ids['job/old']}" in out


@pytest.mark.interop
@pytest.mark.parametrize("server", ["ceph", "swift"])
def test_the_sweep_pages_through_every_upload(server, request):
    """Five uploads in pages of two (Swift 2.30 leaves a truncated page's Next markers
    empty at some page sizes: the last upload listed carries the listing on)."""
    info = request.getfixturevalue(server)
    bucket = unique_bucket("pg")
    raw_client(info).create_bucket(Bucket=bucket)
    _create_uploads(info, bucket, [f"pg/{i % 3}" for i in range(5)] + ["out/1"])
    ep = Endpoint(endpoint_config(info, bucket, name="dest"))
    botocore_calls = botocore_listings(ep)
    for page_size in (1, 2):
        listed = list(ep.list_uploads("pg/", page_size=page_size))
        assert len({u.upload_id for u in listed}) == len(listed) == 5, page_size
    time.sleep(2.2)  # Swift lists Initiated rounded up to the next whole second
    assert abort_stale_uploads(ep, prefix="pg/", older_than_s=1, page_size=2) == 5
    assert [u["Key"] for u in uploads(info, bucket)] == ["out/1"]
    assert botocore_calls == []  # every page went through the lean store


def botocore_listings(ep: Endpoint) -> list:
    """The ListMultipartUploads calls ``ep``'s botocore client makes, as they are made."""
    seen: list = []
    ep.client.meta.events.register(
        "before-call.s3.ListMultipartUploads", lambda params, **_: seen.append(params)
    )
    return seen


#: Keys the servers must list back as they were named.
ODD_UPLOAD_KEYS = [
    "odd/with space",
    "odd/plus+sign",
    "odd/per%25cent%",
    "odd/ünï/日本語/😀",
    "odd/a&b<c>d",
    "odd/~tilde*star'(paren)",
]


def _pages(ep: Endpoint, params: dict, *, lean: bool) -> list[dict]:
    """Every ListMultipartUploads page, through the lean store or through botocore, in
    botocore's shape (the fields botocore answers, without its metadata), paged as
    Endpoint.list_uploads pages."""
    params = dict(params)
    pages = []
    while True:
        if lean:
            assert ep.lean is not None
            page = ep.lean.uploads_answer(
                params["Prefix"],
                page_size=params["MaxUploads"],
                key_marker=params.get("KeyMarker"),
                upload_id_marker=params.get("UploadIdMarker"),
            )
        else:
            page = ep.boto.call("ListMultipartUploads", **params)
        page = {k: v for k, v in page.items() if k != "ResponseMetadata"}
        pages.append(page)
        ups = page.get("Uploads") or []
        if not page.get("IsTruncated") or not ups or len(pages) > 50:
            return pages
        params["KeyMarker"] = page.get("NextKeyMarker") or ups[-1]["Key"]
        params["UploadIdMarker"] = page.get("NextUploadIdMarker") or ups[-1]["UploadId"]


@pytest.mark.interop
@pytest.mark.parametrize("server", ["ceph", "swift"])
def test_lean_upload_listing_equals_botocores(server, request):
    """Odd keys (space, +, %, unicode, XML metacharacters), two uploads of one key, pages of
    1, 2 and 1000, with and without a prefix: the lean store's pages are botocore's, field
    for field, and list every upload by its own key."""
    info = request.getfixturevalue(server)
    bucket = unique_bucket("lu")
    raw_client(info).create_bucket(Bucket=bucket)
    made = [
        *_create_uploads(info, bucket, ODD_UPLOAD_KEYS + ["elsewhere"]).items(),
        *_create_uploads(info, bucket, ["odd/with space"]).items(),
    ]
    lean = Endpoint(endpoint_config(info, bucket, name="dest"))
    boto = Endpoint(endpoint_config(info, bucket, name="dest", data_path="botocore"))
    assert lean.lean is not None and boto.lean is None
    calls = botocore_listings(lean)
    for prefix in ("", "odd/", "odd/ünï/", "odd/with "):
        for page_size in (1, 2, 1000):
            params = {"Prefix": prefix, "MaxUploads": page_size}
            ours, theirs = _pages(lean, params, lean=True), _pages(boto, params, lean=False)
            assert ours == theirs, (prefix, page_size)
            listed = list(lean.list_uploads(prefix, page_size=page_size))
            assert listed == list(boto.list_uploads(prefix, page_size=page_size))
            expected = [(k, i) for k, i in made if k.startswith(prefix)]
            assert sorted((u.key, u.upload_id) for u in listed) == sorted(expected)
            assert all(
                u.initiated is not None and u.initiated.tzinfo is not None and u.initiator
                for u in listed
            )
    assert calls == []


@pytest.mark.interop
@pytest.mark.parametrize("server", ["ceph", "swift"])
def test_a_sigv2_endpoint_lists_uploads_through_botocore(server, request):
    info = request.getfixturevalue(server)
    bucket = unique_bucket("l2")
    raw_client(info).create_bucket(Bucket=bucket)
    ids = _create_uploads(info, bucket, ODD_UPLOAD_KEYS[:3])
    ep = Endpoint(endpoint_config(info, bucket, name="dest", signature_version="s3"))
    calls = botocore_listings(ep)
    listed = list(ep.list_uploads("odd/", page_size=2))
    assert {(u.key, u.upload_id) for u in listed} == set(ids.items())
    assert len(calls) >= 2  # the pages, by botocore
    assert ep.lean is not None  # the endpoint keeps its lean store for the other calls
