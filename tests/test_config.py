"""The INI format: 2015 files load unchanged, new keys are typed, errors name everything."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from s3s3 import config
from s3s3.config import GiB, MiB, load
from s3s3.errors import ConfigError

DATA = Path(__file__).parent / "data"


def write(tmp_path: Path, text: str, name: str = "s3s3.ini") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


BASE = """\
[source]
bucket_name = src
endpoint_url = http://127.0.0.1:9000
[dest]
bucket_name = dst
"""


def test_2015_template_loads_unchanged():
    s = load(DATA / "s3s3-2015.ini", search_path=[], env={})
    assert s.source.bucket == "{YOUR_S3_BUCKET}"
    assert s.source.endpoint_url == "https://{YOUR_CEPH_S3_ENDPOINT}"
    assert s.source.addressing_style == "path"
    assert s.source.access_key == "{YOUR_AWS_ACCESS_KEY_ID}"
    assert s.source.verify_md5 is False
    assert [d.name for d in s.destinations] == ["destination"]
    assert s.destinations[0].endpoint_url is None  # AWS
    assert s.destinations[0].addressing_style == "auto"
    assert s.redis.channel == "backup" and s.redis.mode == "pubsub"


def test_shipped_template_loads():
    s = load(Path(__file__).parent.parent / "s3s3.ini.dist", search_path=[], env={})
    assert s.source.multipart_threshold_bytes == 1 * GiB


def test_host_port_is_secure_and_calling_format(tmp_path):
    path = write(tmp_path, """\
        [source]
        bucket_name = a
        host = rgw.example.org
        port = 7480
        is_secure = False
        calling_format = boto.s3.connection.SubdomainCallingFormat
        [dest-1]
        bucket_name = b
        endpoint_url = https://s3.example.org
        signature_version = s3
        multipart_threshold = 0
        multipart_chunksize = 8MiB
        list_version = 1
        verify_tls = False
        [dest-2]
        bucket_name = c
        host = h
        """)
    s = load(path, search_path=[], env={})
    assert s.source.endpoint_url == "http://rgw.example.org:7480"
    assert s.source.addressing_style == "virtual"
    d1, d2 = s.destinations
    assert (d1.signature_version, d1.multipart_enabled, d1.multipart_chunksize_bytes,
            d1.list_version, d1.verify_tls) == ("s3", False, 8 * MiB, 1, False)
    assert d2.endpoint_url == "https://h"


def test_search_path_then_config_file_wins(tmp_path):
    first = write(tmp_path, BASE + "[pubsub]\nchannel = first\n", "a.ini")
    second = write(tmp_path, "[pubsub]\nchannel = second\n", "b.ini")
    s = load(second, search_path=[tmp_path / "missing.ini", first], env={})
    assert s.redis.channel == "second"
    assert s.files == (str(first), str(second))


def test_secrets_from_environment_win_and_never_show(tmp_path):
    path = write(tmp_path, BASE + "aws_secret_access_key = in-file\n")
    env = {"S3S3_DEST_AWS_SECRET_ACCESS_KEY": "from-env", "S3S3_SOURCE_AWS_ACCESS_KEY_ID": "AK",
           "S3S3_REDIS_PASSWORD": "redispw"}
    s = load(path, search_path=[], env=env)
    assert s.destinations[0].secret_key == "from-env"
    assert s.source.access_key == "AK"
    assert s.redis.password == "redispw"
    shown = repr(s)
    for secret in ("from-env", "AK", "redispw", "in-file"):
        assert secret not in shown


def test_redis_url_password_is_masked(tmp_path):
    path = write(tmp_path, BASE + "[pubsub]\nurl = redis://user:s3cret@redis.example:6380/2\n")
    s = load(path, search_path=[], env={})
    assert "s3cret" not in repr(s)
    assert s.redis.safe_url == "redis://user:***@redis.example:6380/2"


@pytest.mark.parametrize("extra, message", [
    ("[dest]\nverify_md5 = maybe\n",
     "value 'maybe' for 'verify_md5' is not a valid boolean in section 'dest' (file: '{path}')"),
    ("[dest]\nport = 80x\nhost = h\n",
     "value '80x' for 'port' is not a valid integer in section 'dest' (file: '{path}')"),
    ("[dest]\nmultipart_chunksize = 1MiB\n",
     "value '1MiB' for 'multipart_chunksize' must be between 5MiB and 5GiB (the S3 part size "
     "limits) in section 'dest' (file: '{path}')"),
    ("[dest]\nmultipart_threshold = 1MiB\n",
     "value '1MiB' for 'multipart_threshold' must be 0 (never use multipart) or at least 5MiB "
     "in section 'dest' (file: '{path}')"),
    ("[dest]\nmultipart_threshold = lots\n",
     "value 'lots' for 'multipart_threshold' is not a valid size (examples: 0, 8388608, 64MiB, "
     "1GiB) in section 'dest' (file: '{path}')"),
    ("[dest]\nlist_version = 3\n",
     "value '3' for 'list_version' is not 1 or 2 in section 'dest' (file: '{path}')"),
    ("[dest]\nsignature_version = s3v5\n",
     "value 's3v5' for 'signature_version' is not one of s3, s3v4, v2, v4 in section 'dest' "
     "(file: '{path}')"),
    ("[dest]\ncalling_format = ProtocolIndependentOrdinaryCallingFormat\n",
     "value 'ProtocolIndependentOrdinaryCallingFormat' for 'calling_format' is not one of "
     "OrdinaryCallingFormat, SubdomainCallingFormat, "
     "boto.s3.connection.OrdinaryCallingFormat, boto.s3.connection.SubdomainCallingFormat "
     "in section 'dest' (file: '{path}')"),
    ("[dest]\nendpoint_url = ftp://x\n",
     "value 'ftp://x' for 'endpoint_url' is not an http:// or https:// URL in section 'dest' "
     "(file: '{path}')"),
    ("[dest]\nmax_pool_connections = 0\n",
     "value '0' for 'max_pool_connections' must be greater than zero in section 'dest' "
     "(file: '{path}')"),
    ("[dest]\nverfy_md5 = True\n",
     "unknown key 'verfy_md5' (known keys: addressing_style, aws_access_key_id, "
     "aws_secret_access_key, bucket_name, ca_bundle, calling_format, connect_timeout, "
     "data_path, endpoint_url, host, is_secure, list_version, max_attempts, "
     "max_pool_connections, multipart_chunksize, multipart_threshold, port, read_timeout, "
     "region, signature_version, verify_md5, verify_tls) in section 'dest' (file: '{path}')"),
    ("[dest]\nca_bundle = /nonexistent/ca.pem\n",
     "value '/nonexistent/ca.pem' for 'ca_bundle' is not a readable file in section 'dest' "
     "(file: '{path}')"),
    ("[pubsub]\nsns = True\n",
     "value 'True' for 'sns': SNS was never implemented; set 'sns = False' and 'redis = True' "
     "in section 'pubsub' (file: '{path}')"),
    ("[pubsub]\nmode = kafka\n",
     "value 'kafka' for 'mode' is not one of pubsub, stream in section 'pubsub' "
     "(file: '{path}')"),
    ("[bucket]\nmax_delete_fraction = 2\n",
     "value '2' for 'max_delete_fraction' must be between 0 and 1 in section 'bucket' "
     "(file: '{path}')"),
    ("[wat]\nx = 1\n",
     "unknown section '[wat]' (known: [source], [dest...], [pubsub], [listen], [bucket]) "
     "in section 'wat' (file: '{path}')"),
])
def test_errors_name_file_section_key_and_value(tmp_path, extra, message):
    path = write(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as err:
        load(path, search_path=[], env={})
    assert str(err.value) == message.format(path=path)


def test_secret_value_is_not_echoed_in_errors(tmp_path):
    path = write(tmp_path, BASE + "[pubsub]\nurl = http://user:hunter2@host/\n")
    with pytest.raises(ConfigError) as err:
        load(path, search_path=[], env={})
    assert "hunter2" not in str(err.value)
    assert "'url'" in str(err.value) and str(path) in str(err.value)


def test_missing_pieces(tmp_path):
    with pytest.raises(ConfigError, match=r"missing section '\[source\]'"):
        load(write(tmp_path, "[dest]\nbucket_name = b\n"), search_path=[], env={})
    with pytest.raises(ConfigError, match="no destination: add a section whose name starts "
                                          "with 'dest'"):
        load(write(tmp_path, "[source]\nbucket_name = b\n"), search_path=[], env={})
    with pytest.raises(ConfigError, match="missing required key 'bucket_name' in section "
                                          "'source'"):
        load(write(tmp_path, "[source]\nhost = h\n[dest]\nbucket_name = b\n"), search_path=[],
             env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.ini", search_path=[], env={})
    with pytest.raises(ConfigError, match="no configuration file found; looked for"):
        load(search_path=[tmp_path / "nope.ini"], env={})


def test_nothing_is_read_at_import(tmp_path):
    """Importing every module reads no file and connects nowhere (a fresh interpreter,
    started where an s3s3.ini would be found, so a read would show)."""
    (tmp_path / "s3s3.ini").write_text("this is not an INI file")
    code = ("import s3s3.config, s3s3.api, s3s3.client, s3s3.sync, s3s3.replicator, "
            "s3s3.scripts.bucket, s3s3.scripts.listen;"
            "c = s3s3.config; assert c.settings is None and c.source == {} "
            "and c.destinations == [], 'read at import'")
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_initialize_fills_2015_module_dicts(tmp_path):
    path = write(tmp_path, BASE)
    config.initialize(path)
    try:
        assert config.source["bucket_name"] == "src"
        assert [d["bucket_name"] for d in config.destinations] == ["dst"]
        assert config.pubsub["channel"] == "backup"
    finally:
        config.source.clear()
        config.destinations.clear()
        config.pubsub.clear()
        config.settings = None


@pytest.mark.parametrize("text, expected", [
    ("0", 0), ("8388608", 8 * MiB), ("8M", 8 * MiB), ("8MiB", 8 * MiB), ("8 MB", 8 * MiB),
    ("1.5GiB", 3 * GiB // 2), ("64k", 64 * 1024),
])
def test_sizes(text, expected):
    assert config.to_size(text) == expected
