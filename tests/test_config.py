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
    path = write(
        tmp_path,
        """\
        [source]
        bucket_name = a
        host = rgw.example.org
        port = 7480
        is_secure = False
        calling_format = boto.s3.connection.SubdomainCallingFormat
        fanout_buffer = 16MiB
        [dest-1]
        bucket_name = b
        fanout_buffer = 0
        endpoint_url = https://s3.example.org
        signature_version = s3
        multipart_threshold = 0
        multipart_chunksize = 8MiB
        list_version = 1
        verify_tls = False
        [dest-2]
        bucket_name = c
        host = h
        """,
    )
    s = load(path, search_path=[], env={})
    assert s.source.endpoint_url == "http://rgw.example.org:7480"
    assert s.source.addressing_style == "virtual"
    assert s.source.fanout_buffer_bytes == 16 * MiB
    d1, d2 = s.destinations
    assert (d1.fanout_buffer_bytes, d2.fanout_buffer_bytes) == (0, 64 * MiB)
    assert (
        d1.signature_version,
        d1.multipart_enabled,
        d1.multipart_chunksize_bytes,
        d1.list_version,
        d1.verify_tls,
    ) == ("s3", False, 8 * MiB, 1, False)
    assert d2.endpoint_url == "https://h"


def test_search_path_then_config_file_wins(tmp_path):
    first = write(tmp_path, BASE + "[pubsub]\nchannel = first\n", "a.ini")
    second = write(tmp_path, "[pubsub]\nchannel = second\n", "b.ini")
    s = load(second, search_path=[tmp_path / "missing.ini", first], env={})
    assert s.redis.channel == "second"
    assert s.files == (str(first), str(second))


def test_secrets_from_environment_win_and_never_show(tmp_path):
    path = write(tmp_path, BASE + "aws_secret_access_key = in-file\n")
    env = {
        "S3S3_DEST_AWS_SECRET_ACCESS_KEY": "from-env",
        "S3S3_SOURCE_AWS_ACCESS_KEY_ID": "AK",
        "S3S3_REDIS_PASSWORD": "redispw",
    }
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


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            "[dest]\nverify_md5 = maybe\n",
            "value 'maybe' for 'verify_md5' is not a valid boolean in section 'dest' (file: '{path}')",
        ),
        (
            "[dest]\nport = 80x\nhost = h\n",
            "value '80x' for 'port' is not a valid integer in section 'dest' (file: '{path}')",
        ),
        (
            "[dest]\nmultipart_chunksize = 1MiB\n",
            "value '1MiB' for 'multipart_chunksize' must be between 5MiB and 5GiB (the S3 part size "
            "limits) in section 'dest' (file: '{path}')",
        ),
        (
            "[dest]\nmultipart_threshold = 1MiB\n",
            "value '1MiB' for 'multipart_threshold' must be 0 (never use multipart) or at least 5MiB "
            "in section 'dest' (file: '{path}')",
        ),
        (
            "[dest]\nmultipart_threshold = lots\n",
            "value 'lots' for 'multipart_threshold' is not a valid size (examples: 0, 8388608, 64MiB, "
            "1GiB) in section 'dest' (file: '{path}')",
        ),
        (
            "[dest]\nfanout_buffer = 1MiB\n",
            "value '1MiB' for 'fanout_buffer' must be 0 (one read per destination) or at least "
            "2MiB (two of the 1 MiB chunks a read takes) in section 'dest' (file: '{path}')",
        ),
        (
            "[dest]\nlist_version = 3\n",
            "value '3' for 'list_version' is not 1 or 2 in section 'dest' (file: '{path}')",
        ),
        (
            "[dest]\nsignature_version = s3v5\n",
            "value 's3v5' for 'signature_version' is not one of s3, s3v4, v2, v4 in section 'dest' "
            "(file: '{path}')",
        ),
        (
            "[dest]\ncalling_format = ProtocolIndependentOrdinaryCallingFormat\n",
            "value 'ProtocolIndependentOrdinaryCallingFormat' for 'calling_format' is not one of "
            "OrdinaryCallingFormat, SubdomainCallingFormat, "
            "boto.s3.connection.OrdinaryCallingFormat, boto.s3.connection.SubdomainCallingFormat "
            "in section 'dest' (file: '{path}')",
        ),
        (
            "[dest]\nendpoint_url = ftp://x\n",
            "value 'ftp://x' for 'endpoint_url' is not an http:// or https:// URL in section 'dest' "
            "(file: '{path}')",
        ),
        (
            "[dest]\nmax_pool_connections = 0\n",
            "value '0' for 'max_pool_connections' must be greater than zero in section 'dest' "
            "(file: '{path}')",
        ),
        (
            "[dest]\nverfy_md5 = True\n",
            "unknown key 'verfy_md5' (known keys: abort_uploads_after, addressing_style, "
            "aws_access_key_id, aws_secret_access_key, bucket_name, ca_bundle, calling_format, "
            "connect_timeout, data_path, delete_markers, endpoint_url, fanout_buffer, host, is_secure, "
            "list_version, max_attempts, "
            "max_pool_connections, multipart_chunksize, multipart_threshold, port, read_timeout, "
            "region, retry_deadline, signature_version, tpslimit, tpslimit_burst, upload_state, "
            "verify_md5, verify_tls, versions) in section 'dest' (file: '{path}')",
        ),
        (
            "[dest]\nca_bundle = /nonexistent/ca.pem\n",
            "value '/nonexistent/ca.pem' for 'ca_bundle' is not a readable file in section 'dest' "
            "(file: '{path}')",
        ),
        (
            "[pubsub]\nsns = True\n",
            "value 'True' for 'sns': SNS was never implemented; set 'sns = False' and 'redis = True' "
            "in section 'pubsub' (file: '{path}')",
        ),
        (
            "[pubsub]\nmode = kafka\n",
            "value 'kafka' for 'mode' is not one of pubsub, stream in section 'pubsub' "
            "(file: '{path}')",
        ),
        (
            "[bucket]\nmax_delete_fraction = 2\n",
            "value '2' for 'max_delete_fraction' must be between 0 and 1 in section 'bucket' "
            "(file: '{path}')",
        ),
        (
            "[wat]\nx = 1\n",
            "unknown section '[wat]' (known: [source], [dest...], [pubsub], [listen], [bucket], [http], [amqp], [metrics], [logging]) "
            "in section 'wat' (file: '{path}')",
        ),
    ],
)
def test_errors_name_file_section_key_and_value(tmp_path, extra, message):
    # The faulty keys come from a second file that overrides the first (a section given
    # twice in one file is an error of its own); the error names the file they came from.
    base = write(tmp_path, BASE, "base.ini")
    path = write(tmp_path, extra)
    with pytest.raises(ConfigError) as err:
        load(path, search_path=[base], env={})
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
    with pytest.raises(
        ConfigError, match="no destination: add a section whose name starts with 'dest'"
    ):
        load(write(tmp_path, "[source]\nbucket_name = b\n"), search_path=[], env={})
    with pytest.raises(ConfigError, match="missing required key 'bucket_name' in section 'source'"):
        load(
            write(tmp_path, "[source]\nhost = h\n[dest]\nbucket_name = b\n"), search_path=[], env={}
        )
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.ini", search_path=[], env={})
    with pytest.raises(ConfigError, match="no configuration file found; looked for"):
        load(search_path=[tmp_path / "nope.ini"], env={})


def test_nothing_is_read_at_import(tmp_path):
    """Importing every module reads no file and connects nowhere (a fresh interpreter,
    started where an s3s3.ini would be found, so a read would show)."""
    (tmp_path / "s3s3.ini").write_text("this is not an INI file")
    code = (
        "import importlib, pkgutil, s3s3;"
        "names = [m.name for m in pkgutil.walk_packages(s3s3.__path__, 's3s3.')];"
        "[importlib.import_module(n) for n in names];"
        "assert len(names) > 40, names;"
        "c = s3s3.config; assert c.settings is None and c.source == {} "
        "and c.destinations == [], 'read at import'"
    )
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
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


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0", 0),
        ("8388608", 8 * MiB),
        ("8M", 8 * MiB),
        ("8MiB", 8 * MiB),
        ("8 MB", 8 * MiB),
        ("1.5GiB", 3 * GiB // 2),
        ("64k", 64 * 1024),
    ],
)
def test_sizes(text, expected):
    assert config.to_size(text) == expected


# --------------------------------------------------------------------------- validation at load


def load_error(tmp_path, text: str, *, env: dict | None = None) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load(path, search_path=[], env=env or {})
    return str(err.value), path


SOURCE_ONLY = "[source]\nbucket_name = src\nendpoint_url = http://127.0.0.1:9000\n"


@pytest.mark.parametrize(
    "dest, expected",
    [
        ("host = h\nport = 99999\n", "value '99999' for 'port' is not a port number (1 to 65535)"),
        ("host = h\nport = 0\n", "value '0' for 'port' is not a port number (1 to 65535)"),
        ("host = h\nport = 80.0\n", "value '80.0' for 'port' is not a valid integer"),
        (
            "endpoint_url = http://127.0.0.1:80x80\n",
            "value 'http://127.0.0.1:80x80' for 'endpoint_url' has a port that is not a number "
            "from 1 to 65535",
        ),
        (
            "endpoint_url = http://127.0.0.1:99999\n",
            "value 'http://127.0.0.1:99999' for 'endpoint_url' has a port that is not a number "
            "from 1 to 65535",
        ),
        (
            "endpoint_url = http://[::1\n",
            "value 'http://[::1' for 'endpoint_url' has unbalanced '[' ']' (an IPv6 address is "
            "written http://[::1]:8080)",
        ),
        (
            "endpoint_url = http://[nope]:80\n",
            "value 'http://[nope]:80' for 'endpoint_url' has something in '[' ']' that is not an "
            "IPv6 address (an IPv6 address is written http://[::1]:8080)",
        ),
        ("endpoint_url =\n", "value '' for 'endpoint_url' is empty (remove the key to use AWS)"),
        ("endpoint_url = http://\n", "value 'http://' for 'endpoint_url' has no host name"),
        (
            "endpoint_url = http://h:\n",
            "value 'http://h:' for 'endpoint_url' has a port that is not a number from 1 to 65535",
        ),
        (
            "endpoint_url = http://h/?x=1\n",
            "value 'http://h/?x=1' for 'endpoint_url' must not have a query or a fragment",
        ),
        (
            "endpoint_url = http://h:9000\nport = 9000\n",
            "'port' goes with 'host'; with 'endpoint_url' write the port in the URL",
        ),
        ("host =\n", "'host' is empty (give it a value or remove the line)"),
        (
            "host = rgw:7480\n",
            "value 'rgw:7480' for 'host' is not a host name (the port goes in 'port')",
        ),
        (
            "max_pool_connections = 100000\n",
            "value '100000' for 'max_pool_connections' must be at most 1024",
        ),
        ("max_attempts = 1000\n", "value '1000' for 'max_attempts' must be at most 100"),
        (
            "connect_timeout = nan\n",
            "value 'nan' for 'connect_timeout' is not a valid duration (examples: 90, 0.5, 30s, 15m, "
            "24h, 7d)",
        ),
        (
            "read_timeout = inf\n",
            "value 'inf' for 'read_timeout' is not a valid duration (examples: 90, 0.5, 30s, 15m, "
            "24h, 7d)",
        ),
        ("read_timeout = -5\n", "value '-5' for 'read_timeout' must be greater than zero"),
        ("retry_deadline = 0\n", "value '0' for 'retry_deadline' must be greater than zero"),
        (
            "abort_uploads_after = -1d\n",
            "value '-1d' for 'abort_uploads_after' must be zero or more",
        ),
        (
            "abort_uploads_after = 400d\n",
            "value '400d' for 'abort_uploads_after' must be at most 366d",
        ),
        (
            "multipart_threshold = 6GiB\n",
            "value '6GiB' for 'multipart_threshold' must be at most 5GiB (a single PUT cannot be "
            "larger)",
        ),
    ],
)
def test_endpoint_values_are_checked_at_load(tmp_path, dest, expected):
    message, path = load_error(tmp_path, SOURCE_ONLY + "[dest]\nbucket_name = b\n" + dest)
    assert message == f"{expected} in section 'dest' (file: '{path}')"


def test_retry_deadline_is_a_duration_with_a_default(tmp_path):
    path = write(tmp_path, SOURCE_ONLY + "[dest]\nbucket_name = b\nretry_deadline = 2m\n")
    settings = load(path, search_path=[], env={})
    assert settings.destinations[0].retry_deadline_s == 120.0
    assert settings.source.retry_deadline_s == 300.0


@pytest.mark.parametrize(
    "pubsub, expected",
    [
        (
            "url = redis://127.0.0.1:99x/0\n",
            "value 'redis://127.0.0.1:99x/0' for 'url' has a port that is not a number from 1 to "
            "65535",
        ),
        (
            "url = redis://127.0.0.1:70000/0\n",
            "value 'redis://127.0.0.1:70000/0' for 'url' has a port that is not a number from 1 to "
            "65535",
        ),
        (
            "url = redis://127.0.0.1:6379/zero\n",
            "value 'redis://127.0.0.1:6379/zero' for 'url' has a database number (the path, as in "
            "redis://host:6379/0) that is not a number",
        ),
        (
            "url = redis://127.0.0.1:6379/0?db=one\n",
            "value 'redis://127.0.0.1:6379/0?db=one' for 'url' has a query parameter 'db' that is "
            "not a whole number",
        ),
        (
            "url = redis://127.0.0.1:6379/0?colour=blue\n",
            "value 'redis://127.0.0.1:6379/0?colour=blue' for 'url' has an unknown query parameter "
            "'colour' (known: client_name, db, health_check_interval, legacy_responses, "
            "max_connections, password, protocol, retry_on_timeout, socket_connect_timeout, "
            "socket_keepalive, socket_read_size, socket_timeout, ssl_ca_certs, ssl_ca_path, "
            "ssl_cert_reqs, ssl_certfile, ssl_check_hostname, ssl_keyfile, ssl_min_version, "
            "ssl_password, timeout, username)",
        ),
        (
            "url = redis://127.0.0.1:6379/0?socket_timeout=nan\n",
            "value 'redis://127.0.0.1:6379/0?socket_timeout=nan' for 'url' has a query parameter "
            "'socket_timeout' that is not a number of seconds above 0",
        ),
        (
            "url = unix://\n",
            "value 'unix://' for 'url' has no socket path (unix:///run/redis/redis.sock)",
        ),
        (
            "url = unix://run/redis.sock\n",
            "value 'unix://run/redis.sock' for 'url' names a host; a unix:// URL takes an absolute "
            "path after three slashes (unix:///run/redis/redis.sock)",
        ),
        (
            "url = redis://[::1/0\n",
            "value 'redis://[::1/0' for 'url' has unbalanced '[' ']' (an IPv6 address is written "
            "redis://[::1]:6379/0)",
        ),
        ("url = redis:///0\n", "value 'redis:///0' for 'url' has no host name"),
        ("url =\n", "value '' for 'url' is empty"),
        ("port = 65536\n", "value '65536' for 'port' is not a port number (1 to 65535)"),
        ("db = x\n", "value 'x' for 'db' is not a valid integer"),
        (
            "reclaim_idle = nan\n",
            "value 'nan' for 'reclaim_idle' is not a valid duration (examples: 90, 0.5, 30s, 15m, "
            "24h, 7d)",
        ),
        ("max_deliveries = 0\n", "value '0' for 'max_deliveries' must be greater than zero"),
        (
            "ssl_ca_certs = /nonexistent/ca.pem\n",
            "value '/nonexistent/ca.pem' for 'ssl_ca_certs' is not a readable file",
        ),
    ],
)
def test_redis_values_are_checked_at_load(tmp_path, pubsub, expected):
    message, path = load_error(tmp_path, BASE + "[pubsub]\n" + pubsub)
    assert message == f"{expected} in section 'pubsub' (file: '{path}')"


def test_a_password_in_a_bad_redis_url_is_not_shown(tmp_path):
    message, _ = load_error(
        tmp_path, BASE + "[pubsub]\nurl = redis://u:pw-in-userinfo@h:99x/0?password=pw-in-query\n"
    )
    assert "pw-in-userinfo" not in message and "pw-in-query" not in message
    assert message.startswith("value 'redis://u:***@h:99x/0?password=***' for 'url' has a port")


def test_a_bad_url_from_the_environment_names_the_variable(tmp_path):
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError) as err:
        load(path, search_path=[], env={"S3S3_REDIS_URL": "redis://:sekrit@h:0/0"})
    assert str(err.value) == (
        "value 'redis://:***@h:0/0' for 'url' has a port that is not a "
        "number from 1 to 65535 (from environment variable "
        "S3S3_REDIS_URL) in section 'pubsub'"
    )


@pytest.mark.parametrize(
    "section, expected",
    [
        ("[listen]\nworkers = 100000\n", "value '100000' for 'workers' must be at most 1024"),
        ("[listen]\ngrace = -1\n", "value '-1' for 'grace' must be zero or more"),
        (
            "[listen]\nsummary_interval = 0\n",
            "value '0' for 'summary_interval' must be greater than zero",
        ),
        (
            "[listen]\nretry_base = 1m\nretry_max = 30s\n",
            "value '1m' for 'retry_base' must not exceed 'retry_max' (30s)",
        ),
        (
            "[bucket]\nlock_ttl = NaN\n",
            "value 'NaN' for 'lock_ttl' is not a valid duration (examples: 90, 0.5, 30s, 15m, 24h, "
            "7d)",
        ),
        (
            "[bucket]\nmax_delete_fraction = nan\n",
            "value 'nan' for 'max_delete_fraction' is not a finite number",
        ),
        ("[bucket]\nworkers = 1_000\n", "value '1_000' for 'workers' is not a valid integer"),
    ],
)
def test_listen_and_bucket_values_are_checked_at_load(tmp_path, section, expected):
    message, path = load_error(tmp_path, BASE + section)
    name = section[1 : section.index("]")]
    assert message == f"{expected} in section '{name}' (file: '{path}')"


def test_duplicate_key_in_one_file_names_both_lines(tmp_path):
    message, path = load_error(
        tmp_path,
        "[source]\nendpoint_url = http://h\n"
        "bucket_name = a\n\n# again\n"
        "Bucket_Name = b\n[dest]\nbucket_name = c\n",
    )
    assert message == (
        f"duplicate key 'bucket_name' at lines 3 and 6 in section 'source' (file: '{path}')"
    )


def test_duplicate_section_in_one_file_names_both_lines(tmp_path):
    message, path = load_error(
        tmp_path, BASE + "[listen]\nworkers = 2\n[dest]  # again\nverify_md5 = True\n"
    )
    assert message == (
        "duplicate section '[dest]' at lines 4 and 8 (merge them into one) in "
        f"section 'dest' (file: '{path}')"
    )


def test_a_later_file_still_overrides_an_earlier_one(tmp_path):
    first = write(tmp_path, BASE + "[listen]\nworkers = 2\n", "a.ini")
    second = write(tmp_path, "[dest]\nbucket_name = other\n[listen]\nworkers = 3\n", "b.ini")
    s = load(second, search_path=[first], env={})
    assert s.destinations[0].bucket == "other" and s.listen.workers == 3


def test_a_line_without_equals_under_a_secret_key_is_not_quoted(tmp_path):
    message, path = load_error(
        tmp_path, BASE + "aws_secret_access_key TOPSECRET\nAKIA-A-PASTED-SECRET\n"
    )
    assert "TOPSECRET" not in message and "AKIA-A-PASTED-SECRET" not in message
    assert message == (
        "line 6 (key 'aws_secret_access_key') is not 'key = value', a [section] "
        "header or a comment; also line 7 (the line is not shown: it may hold a "
        f"secret) in section 'dest' (file: '{path}')"
    )


def test_a_line_before_any_section_is_not_quoted(tmp_path):
    message, path = load_error(tmp_path, "password = TOPSECRET\n" + BASE)
    assert "TOPSECRET" not in message
    assert message == (
        "line 1 (key 'password') comes before any [section] header (the line is "
        f"not shown: it may hold a secret) in file: '{path}'"
    )


def test_bad_utf8_names_the_line(tmp_path):
    path = tmp_path / "s3s3.ini"
    path.write_bytes(BASE.encode() + b"aws_secret_access_key = s\xe9cret\n")
    with pytest.raises(ConfigError) as err:
        load(path, search_path=[], env={})
    assert str(err.value) == (
        "line 6 (key 'aws_secret_access_key') is not valid UTF-8 (the "
        "line is not shown: it may hold a secret) in section 'dest' "
        f"(file: '{path}')"
    )


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "s3s3.ini"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load(path, search_path=[], env={}).source.bucket == "src"


def test_a_default_section_is_an_unknown_section(tmp_path):
    message, path = load_error(tmp_path, "[DEFAULT]\nregion = eu\n" + BASE)
    assert message.startswith("unknown section '[DEFAULT]'")


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90.0),
        ("0.5", 0.5),
        ("30s", 30.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        (" 2 h ", 7200.0),
        ("0", 0.0),
        (".25", 0.25),
    ],
)
def test_durations(text, seconds):
    assert config.to_duration(text) == seconds


@pytest.mark.parametrize("text", ["nan", "inf", "1e3", "5 minutes", "5M", "", "s", "1.2.3"])
def test_not_durations(text):
    with pytest.raises(ValueError):
        config.to_duration(text)


def test_duration_keys_take_plain_seconds_and_suffixes(tmp_path):
    path = write(
        tmp_path,
        SOURCE_ONLY + "connect_timeout = 2.5\nread_timeout = 2m\n"
        "[dest]\nbucket_name = b\nabort_uploads_after = 7d\n"
        "[dest-never]\nbucket_name = c\nabort_uploads_after = 0\n"
        "[pubsub]\nreclaim_idle = 5m\n"
        "[listen]\ngrace = 0\nretry_max = 1h\n"
        "[bucket]\nlock_ttl = 2h\nprogress_interval = 10\n",
    )
    s = load(path, search_path=[], env={})
    assert (s.source.connect_timeout_s, s.source.read_timeout_s) == (2.5, 120.0)
    assert s.source.abort_uploads_after_s == 86400.0  # the default: one day
    assert [d.abort_uploads_after_s for d in s.destinations] == [7 * 86400.0, 0.0]
    assert s.redis.reclaim_idle_s == 300.0
    assert (s.listen.grace_s, s.listen.retry_max_s) == (0.0, 3600.0)
    assert (s.bucket.lock_ttl_s, s.bucket.progress_interval_s) == (7200.0, 10.0)


def test_the_query_password_of_a_redis_url_is_masked_and_known_as_a_secret(tmp_path):
    path = write(tmp_path, BASE + "[pubsub]\nurl = redis://127.0.0.1:6379/0?password=qpw-1234\n")
    env = {"S3S3_SOURCE_AWS_SECRET_ACCESS_KEY": "src-secret-1"}
    s = load(path, search_path=[], env=env)
    assert s.redis.safe_url == "redis://127.0.0.1:6379/0?password=***"
    assert set(s.secrets()) == {"qpw-1234", "src-secret-1"}
    assert config.mask_url("redis://:p@h/0?password=q") == "redis://:***@h/0?password=***"


def test_secrets_in_environment():
    env = {
        "S3S3_SOURCE_AWS_SECRET_ACCESS_KEY": "s1",
        "S3S3_REDIS_PASSWORD": "p1",
        "S3S3_REDIS_URL": "redis://:p2@h/0?token=t1",
        "S3S3_SOURCE_BUCKET_NAME": "b",
        "HOME": "/root",
        "S3S3_DEST_AWS_ACCESS_KEY_ID": "AKID",
    }
    assert sorted(config.secrets_in_environment(env)) == ["p1", "p2", "s1", "t1"]


def token_example(key: str) -> str:
    return "a-token-of-24-characters" if key == "token" else ""


def test_every_key_the_template_documents_loads_with_its_example_value(tmp_path):
    """Each commented-out ``# key = value`` of the shipped template, set on its own."""
    import re

    template = (Path(__file__).parent.parent / "s3s3" / "data" / "s3s3.ini.dist").read_text()
    section, tried = None, []
    for line in template.splitlines():
        header = re.match(r"^#?\s*\[(\w+)\]", line)
        if header:
            section = "dest" if header.group(1) == "destination" else header.group(1)
            continue
        m = re.match(r"^\s*#\s*(\w+) =[ \t]*([^\s#]*)", line)
        # ca_bundle and textfile name files of this machine; port is a number in context.
        if not m or section is None or m.group(1) in ("ca_bundle", "port", "textfile"):
            continue
        key, value = m.groups()
        text = (
            SOURCE_ONLY.replace("endpoint_url = http://127.0.0.1:9000\n", "")
            + "[dest]\nbucket_name = b\n"
        )
        if section in ("source", "dest"):
            text = text.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n")
        elif section == "http":  # the token is required: give one beside the key tried
            token = "" if key == "token" else "token = a-token-of-24-characters\n"
            text += f"[{section}]\n{token}{key} = {value or token_example(key)}\n"
        else:
            text += f"[{section}]\n{key} = {value}\n"
        load(write(tmp_path, text), search_path=[], env={})
        tried.append(key)
    assert {
        "abort_uploads_after",
        "reclaim_idle",
        "grace",
        "lock_ttl",
        "max_attempts",
        "connect_timeout",
        "tpslimit",
        "tpslimit_burst",
        "bwlimit",
    } <= set(tried)


@pytest.mark.parametrize("text", ["9" * 400, "9" * 5000 + "GiB"])
def test_absurd_sizes_and_counts_are_config_errors(tmp_path, text):
    for extra in (f"multipart_threshold = {text}\n", f"max_attempts = {text}\n"):
        with pytest.raises(ConfigError):
            load(write(tmp_path, BASE + extra), search_path=[], env={})


def test_a_port_is_digits_only(tmp_path):
    message, _ = load_error(
        tmp_path, SOURCE_ONLY + "[dest]\nbucket_name = b\nendpoint_url = http://h:+80\n"
    )
    assert "has a port that is not a number from 1 to 65535" in message


def test_versions_is_a_source_key_only(tmp_path):
    from s3s3.config import load
    from s3s3.errors import ConfigError

    ini = tmp_path / "s3s3.ini"
    ini.write_text(
        "[source]\nbucket_name = a\nversions = true\ndelete_markers = true\n"
        "[dest]\nbucket_name = b\n"
    )
    cfg = load(ini).source
    assert (cfg.versions, cfg.delete_markers) == (True, True)
    ini.write_text("[source]\nbucket_name = a\n[dest]\nbucket_name = b\nversions = true\n")
    with pytest.raises(ConfigError) as caught:
        load(ini)
    assert "'versions' is read on [source] only" in str(caught.value)
    assert "dest" in str(caught.value)
