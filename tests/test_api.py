"""The 2015 Python surface: s3s3.api and s3s3.client keep their names and meaning."""

from __future__ import annotations

import configparser
import hashlib
import subprocess
import sys

import pytest

import s3s3.api
import s3s3.client
from s3s3.api import create_connection, duplicate_bucket, upload
from s3s3.model import Outcome
from tests.conftest import raw_client, unique_bucket


def connection_args(info: dict, bucket: str | None = None) -> dict:
    host, port = info["endpoint_url"].removeprefix("http://").split(":")
    args = {
        "aws_access_key_id": info["access_key"],
        "aws_secret_access_key": info["secret_key"],
        "host": host,
        "port": int(port),
        "is_secure": False,
        "calling_format": "OrdinaryCallingFormat",
    }
    if bucket:
        args["bucket_name"] = bucket
    return args


@pytest.fixture
def two_buckets(moto_servers):
    a, b = moto_servers
    sb, db = unique_bucket("src"), unique_bucket("dst")
    raw_client(a).create_bucket(Bucket=sb)
    raw_client(b).create_bucket(Bucket=db)
    return (
        create_connection(connection_args(a)).get_bucket(sb),
        create_connection(connection_args(b)).get_bucket(db),
    )


def test_upload_to_one_or_many_destination_keys(two_buckets, moto_servers):
    src, dst = two_buckets
    src.endpoint.boto.call("PutObject", "photo.png", Body=b"png-bytes", ContentType="image/png")
    key = src.get_key("photo.png")
    assert (key.size, key.md5) == (9, hashlib.md5(b"png-bytes").hexdigest())
    results = upload(key, dst.new_key("copy.png"))
    assert [r.outcome for r in results] == [Outcome.COPIED]
    results = upload(key, [dst.new_key("copy.png"), dst.new_key("other.png")])
    assert [r.outcome for r in results] == [Outcome.SKIPPED, Outcome.COPIED]
    assert [r.outcome for r in upload(key, [dst.new_key("copy.png")], force=True)] == [
        Outcome.COPIED
    ]
    assert dst.get_key("other.png").md5 == key.md5
    assert sorted(k.name for k in dst.list()) == ["copy.png", "other.png"]
    assert src.get_key("nope") is None


def test_upload_replaces_a_different_destination(two_buckets):
    src, dst = two_buckets
    src.endpoint.boto.call("PutObject", "k", Body=b"new")
    dst.endpoint.boto.call("PutObject", "k", Body=b"old")
    upload(src.get_key("k"), [dst.new_key("k")], verify_md5=True)
    assert dst.endpoint.boto.call("GetObject", "k")["Body"].read() == b"new"


def test_duplicate_bucket_brings_the_destination_in_step(two_buckets):
    src, dst = two_buckets
    for key in ("a", "b/c"):
        src.endpoint.boto.call("PutObject", key, Body=key.encode())
    dst.endpoint.boto.call("PutObject", "a", Body=b"old")
    assert duplicate_bucket(src, dst, verify_md5=True) is True
    assert {k.name: k.md5 for k in dst.list()} == {k.name: k.md5 for k in src.list()}
    assert duplicate_bucket(src, dst) is True


def test_on_notify_copies_to_each_destination_once(moto_servers):
    a, b = moto_servers
    sb, d1, d2 = unique_bucket("src"), unique_bucket("d1"), unique_bucket("d2")
    raw_client(a).create_bucket(Bucket=sb)
    for bucket in (d1, d2):
        raw_client(b).create_bucket(Bucket=bucket)
    raw_client(a).put_object(Bucket=sb, Key="k", Body=b"v")
    results = s3s3.client.on_notify(
        create_connection(connection_args(a, sb)),
        [create_connection(connection_args(b, d1)), create_connection(connection_args(b, d2))],
        "k",
    )
    assert [(r.destination, r.outcome) for r in results] == [("connection", Outcome.COPIED)] * 2
    for bucket in (d1, d2):
        assert raw_client(b).get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_connection_repr_has_no_secret(moto_servers):
    conn = create_connection(
        {**connection_args(moto_servers[0]), "aws_secret_access_key": "very-secret"}
    )
    assert "very-secret" not in repr(conn) + repr(conn.cfg)


def test_echo_ini_template_prints_a_loadable_template(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", "from s3s3.scripts.echo import ini_template;ini_template([])"],
        capture_output=True,
        text=True,
        check=True,
    )
    path = tmp_path / "s3s3.ini"
    path.write_text(out.stdout)
    from s3s3.config import load

    assert load(path, search_path=[], env={}).source.bucket == "{YOUR_S3_BUCKET}"


def test_echo_supervisord_conf_runs_the_bucket_job_as_an_event_listener():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from s3s3.scripts.echo import "
            "supervisord_conf; supervisord_conf(['--bindir', '/opt/env/s3s3/bin'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(out)
    listener = conf["eventlistener:s3s3bucket"]
    assert listener["events"] == "TICK_3600"
    assert listener["command"] == (
        "/opt/env/s3s3/bin/s3s3bucket --supervisord --config /usr/local/etc/s3s3.ini"
    )
    assert listener["stdout_logfile"] == "NONE"  # stdout carries the protocol
    program = conf["program:s3s3listen"]
    assert program["command"] == "/opt/env/s3s3/bin/s3s3listen --config /usr/local/etc/s3s3.ini"
    assert program["autorestart"] == "true"
    intake = conf["program:s3s3intake"]
    assert intake["command"] == "/opt/env/s3s3/bin/s3s3intake --config /usr/local/etc/s3s3.ini"
    assert intake["stopsignal"] == "TERM"
