"""Every console script over malformed INIs: exit 2, one line naming section and key, no
traceback; and no secret, from the INI or the environment, in any output at ``-vv``.

The scripts run as subprocesses (``python -m s3s3.scripts.X``), as an operator runs them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, raw_client, unique_bucket
from redis_server import PrivateRedis

#: What every script is run as: (name, module, arguments after --config FILE).
SCRIPTS = [
    ("s3s3listen", "s3s3.scripts.listen", ["-vv"]),
    ("s3s3bucket", "s3s3.scripts.bucket", ["-vv"]),
    ("s3s3publish", "s3s3.scripts.publish", ["-vv", "some/key"]),
    ("s3s3listen dead-letters list", "s3s3.scripts.listen", ["-vv", "dead-letters", "list"]),
]

INI_SECRET = "ini-secret-5b0d1e"


def env_for(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3S3_")}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}


def run_all(
    ini: Path, cwd: Path, *, env: dict | None = None, scripts=SCRIPTS, timeout_s: float = 60.0
) -> dict[str, subprocess.CompletedProcess]:
    """Run ``scripts`` over ``ini`` at once, each to its exit."""
    procs = {}
    for name, module, args in scripts:
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(ini), *args],
            cwd=cwd,
            env=env or env_for(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(
                f"{name} did not exit within {timeout_s}s:\n{err[-3000:]}"
            ) from None
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


def ini(
    *,
    source: str = "",
    dest: str = "",
    pubsub: str = "",
    listen: str = "",
    bucket: str = "",
    before: str = "",
    after: str = "",
) -> str:
    """A valid INI, with lines added to its sections."""
    return (
        before + "[source]\nbucket_name = src\nendpoint_url = http://127.0.0.1:9\n"
        f"aws_access_key_id = AKID\naws_secret_access_key = {INI_SECRET}\n"
        + source
        + "\n[dest1]\nbucket_name = dst\nendpoint_url = http://127.0.0.1:9\n"
        + dest
        + "\n[pubsub]\nurl = redis://127.0.0.1:9/0\n"
        + pubsub
        + "\n[listen]\nworkers = 2\n"
        + listen
        + "\n[bucket]\nlock = none\n"
        + bucket
        + after
    )


#: (id, INI text or bytes, what the one error line must contain)
MALFORMED = [
    (
        "port-out-of-range",
        ini(dest="host = h\nport = 99999\n").replace(
            "endpoint_url = http://127.0.0.1:9\nhost", "host"
        ),
        ["section 'dest1'", "'port'"],
    ),
    (
        "port-not-a-number",
        ini(dest="port = 80x\n").replace(
            "dst\nendpoint_url = http://127.0.0.1:9\n", "dst\nhost = h\n"
        ),
        ["section 'dest1'", "'port'"],
    ),
    (
        "endpoint-url-bad-port",
        ini(dest="").replace(
            "dst\nendpoint_url = http://127.0.0.1:9", "dst\nendpoint_url = http://127.0.0.1:80x80"
        ),
        ["section 'dest1'", "'endpoint_url'"],
    ),
    (
        "endpoint-url-ipv6-unbalanced",
        ini().replace("dst\nendpoint_url = http://127.0.0.1:9", "dst\nendpoint_url = http://[::1"),
        ["section 'dest1'", "'endpoint_url'"],
    ),
    (
        "endpoint-url-empty",
        ini().replace("dst\nendpoint_url = http://127.0.0.1:9", "dst\nendpoint_url ="),
        ["section 'dest1'", "'endpoint_url'"],
    ),
    (
        "endpoint-url-not-http",
        ini().replace("src\nendpoint_url = http://127.0.0.1:9", "src\nendpoint_url = ftp://h"),
        ["section 'source'", "'endpoint_url'"],
    ),
    ("endpoint-url-and-host", ini(dest="host = h\n"), ["section 'dest1'", "'endpoint_url'"]),
    (
        "redis-url-bad-port",
        ini().replace("redis://127.0.0.1:9/0", "redis://127.0.0.1:99x/0"),
        ["section 'pubsub'", "'url'"],
    ),
    (
        "redis-url-db-not-a-number",
        ini().replace("127.0.0.1:9/0", "127.0.0.1:9/zero"),
        ["section 'pubsub'", "'url'"],
    ),
    (
        "redis-url-unix-without-path",
        ini().replace("redis://127.0.0.1:9/0", "unix://"),
        ["section 'pubsub'", "'url'"],
    ),
    (
        "redis-url-unknown-query",
        ini().replace("127.0.0.1:9/0", "127.0.0.1:9/0?colour=blue"),
        ["section 'pubsub'", "'url'"],
    ),
    (
        "redis-port-key",
        ini(pubsub="port = 70000\n").replace("url = redis://127.0.0.1:9/0\n", ""),
        ["section 'pubsub'", "'port'"],
    ),
    (
        "redis-db-key",
        ini(pubsub="db = x\n").replace("url = redis://127.0.0.1:9/0\n", ""),
        ["section 'pubsub'", "'db'"],
    ),
    ("bad-boolean", ini(dest="verify_md5 = maybe\n"), ["section 'dest1'", "'verify_md5'"]),
    (
        "bad-size",
        ini(dest="multipart_threshold = lots\n"),
        ["section 'dest1'", "'multipart_threshold'"],
    ),
    (
        "chunksize-out-of-range",
        ini(dest="multipart_chunksize = 1MiB\n"),
        ["section 'dest1'", "'multipart_chunksize'"],
    ),
    ("unknown-key", ini(dest="verfy_md5 = True\n"), ["section 'dest1'", "'verfy_md5'"]),
    ("unknown-section", ini(after="\n[wat]\nx = 1\n"), ["section 'wat'", "'[wat]'"]),
    ("default-section", ini(before="[DEFAULT]\nregion = eu\n"), ["'[DEFAULT]'"]),
    ("missing-source", "[dest1]\nbucket_name = b\n", ["'[source]'"]),
    ("no-destination", "[source]\nbucket_name = b\n", ["'dest'"]),
    (
        "duplicate-section",
        ini(after="\n[dest1]\nverify_md5 = True\n"),
        ["section 'dest1'", "duplicate section '[dest1]' at lines 7 and 20"],
    ),
    (
        "duplicate-key",
        ini(source="bucket_name = other\n"),
        ["section 'source'", "duplicate key 'bucket_name' at lines 2 and 6"],
    ),
    (
        "no-equals-under-secret-key",
        ini(dest="aws_secret_access_key NO-EQUALS-SECRET-77\n"),
        ["section 'dest1'", "'aws_secret_access_key'", "line 10"],
    ),
    (
        "line-before-any-section",
        ini(before="aws_secret_access_key = BEFORE-SECRET-12\n"),
        ["'aws_secret_access_key'", "line 1"],
    ),
    (
        "bad-utf8",
        ini(dest="aws_secret_access_key = s\udce9cret\n"),
        ["section 'dest1'", "'aws_secret_access_key'", "not valid UTF-8"],
    ),
    ("negative-duration", ini(listen="grace = -1\n"), ["section 'listen'", "'grace'"]),
    ("nan-duration", ini(pubsub="reclaim_idle = nan\n"), ["section 'pubsub'", "'reclaim_idle'"]),
    ("inf-timeout", ini(dest="read_timeout = inf\n"), ["section 'dest1'", "'read_timeout'"]),
    ("zero-lock-ttl", ini(bucket="lock_ttl = 0\n"), ["section 'bucket'", "'lock_ttl'"]),
    (
        "abort-uploads-after-negative",
        ini(dest="abort_uploads_after = -1h\n"),
        ["section 'dest1'", "'abort_uploads_after'"],
    ),
    ("too-many-workers", ini(bucket="workers = 100000\n"), ["section 'bucket'", "'workers'"]),
    (
        "zero-pool",
        ini(dest="max_pool_connections = 0\n"),
        ["section 'dest1'", "'max_pool_connections'"],
    ),
    (
        "delete-fraction",
        ini(bucket="max_delete_fraction = 2\n"),
        ["section 'bucket'", "'max_delete_fraction'"],
    ),
    ("unknown-mode", ini(pubsub="mode = kafka\n"), ["section 'pubsub'", "'mode'"]),
    ("list-needs-stream", ini(pubsub="list = minio\n"), ["section 'pubsub'", "'list'"]),
    ("sns", ini(pubsub="sns = True\n"), ["section 'pubsub'", "'sns'"]),
    (
        "missing-ca-bundle",
        ini(dest="ca_bundle = /nonexistent/ca.pem\n"),
        ["section 'dest1'", "'ca_bundle'"],
    ),
]


def test_there_are_at_least_25_malformed_inis():
    assert len(MALFORMED) >= 25
    assert len({case_id for case_id, _, _ in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize(
    "text, needles", [(t, n) for _, t, n in MALFORMED], ids=[case_id for case_id, _, _ in MALFORMED]
)
def test_every_script_exits_2_with_one_line_naming_section_and_key(tmp_path, text, needles):
    path = tmp_path / "bad.ini"
    if "\udce9" in text:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    else:
        path.write_text(text)
    for name, result in run_all(path, tmp_path).items():
        output = result.stdout + result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2, f"{name}: exit {result.returncode}\n{output}"
        assert "Traceback" not in output, f"{name}:\n{output}"
        assert result.stdout == "", name
        assert len(lines) == 1, f"{name}: more than one line:\n{output}"
        assert "ERROR s3s3: configuration error: " in lines[0], f"{name}: {lines[0]}"
        assert str(path) in lines[0], lines[0]
        for needle in needles:
            assert needle in lines[0], f"{name}: {needle!r} not in {lines[0]!r}"
        for secret in (INI_SECRET, "NO-EQUALS-SECRET-77", "BEFORE-SECRET-12"):
            assert secret not in output, f"{name} printed a secret:\n{output}"


def test_a_byte_order_mark_is_no_error(tmp_path):
    path = tmp_path / "bom.ini"
    path.write_bytes(b"\xef\xbb\xbf" + ini(pubsub="mode = kafka\n").encode())
    for name, result in run_all(path, tmp_path).items():
        # It is read: the error is the one in the file, not the mark before [source].
        assert "value 'kafka' for 'mode'" in result.stderr, f"{name}:\n{result.stderr}"


# --------------------------------------------------------------------------- no secret printed

REDIS_RIGHT = "right-redis-pw-3c9a"
REDIS_WRONG = "wrong-redis-pw-71fe"
SRC_SECRET_ENV = "src-secret-from-env-a41"
DST_SECRET_ENV = "dst-secret-from-env-b52"
ALL_SECRETS = (REDIS_RIGHT, REDIS_WRONG, INI_SECRET, SRC_SECRET_ENV, DST_SECRET_ENV)


def daemon_output(ini_path: Path, cwd: Path, env: dict, *, expect_running: bool) -> tuple[int, str]:
    """``s3s3listen -vv``: until it exits, or SIGTERM once it is listening."""
    log_path = cwd / f"listen-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3s3.scripts.listen", "--config", str(ini_path), "-vv"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if expect_running and b"listening on" in log_path.read_bytes():
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.1)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, log_path.read_text(errors="replace")


@pytest.fixture
def protected_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis", password=REDIS_RIGHT, persistent=False).start()
    try:
        yield server
    finally:
        server.stop()


# Where the Redis password comes from, and whether it is the right one.
REDIS_VARIANTS = [
    "userinfo-right",
    "query-right",
    "env-right",
    "userinfo-wrong",
    "query-wrong",
    "env-wrong",
]


def redis_setup(variant: str, port: int) -> tuple[str, dict]:
    password = REDIS_RIGHT if variant.endswith("right") else REDIS_WRONG
    where = variant.split("-")[0]
    if where == "userinfo":
        return f"redis://:{password}@127.0.0.1:{port}/0", {}
    if where == "query":
        return f"redis://127.0.0.1:{port}/0?password={password}", {}
    return f"redis://127.0.0.1:{port}/0", {"S3S3_REDIS_PASSWORD": password}


@pytest.mark.parametrize("variant", REDIS_VARIANTS)
def test_no_secret_reaches_any_output_at_the_most_verbose_level(
    moto_servers, protected_redis, tmp_path, variant
):
    """Every script at -vv (botocore and redis-py logging at DEBUG), against moto and a
    password-protected Redis, with the password in the URL's userinfo, in its query, or in
    the environment, right or wrong; S3 secrets in the INI and in the environment."""
    a, b = moto_servers
    src, dst = unique_bucket("src"), unique_bucket("dst")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    raw_client(a).put_object(Bucket=src, Key="some/key", Body=b"hello")
    url, redis_env = redis_setup(variant, protected_redis.port)
    # moto checks no signatures: the secrets only have to be where s3s3 reads them.
    text = (
        f"[source]\nbucket_name = {src}\nendpoint_url = {a['endpoint_url']}\n"
        f"region = {a['region']}\naws_access_key_id = {a['access_key']}\n"
        f"aws_secret_access_key = {INI_SECRET}\n"
        f"\n[dest1]\nbucket_name = {dst}\nendpoint_url = {b['endpoint_url']}\n"
        f"region = {b['region']}\naws_access_key_id = {b['access_key']}\n"
        f"\n[pubsub]\nurl = {url}\nchannel = c-{unique_bucket('ch')}\n"
        f"\n[listen]\nworkers = 2\ngrace = 2\nretry_base = 0.05\nretry_max = 0.2\n"
        f"\n[bucket]\nlock = redis\nlock_dir = {tmp_path}\n"
    )
    path = tmp_path / "s3s3.ini"
    path.write_text(text)
    env = env_for(S3S3_DEST1_AWS_SECRET_ACCESS_KEY=DST_SECRET_ENV, **redis_env)
    # The daemon runs until stopped: it is run on its own below.
    results = run_all(path, tmp_path, env=env, scripts=[s for s in SCRIPTS if s[0] != "s3s3listen"])
    # The environment's secret key wins over the file's, and is not printed either.
    env_src = env_for(
        S3S3_SOURCE_AWS_SECRET_ACCESS_KEY=SRC_SECRET_ENV,
        S3S3_DEST1_AWS_SECRET_ACCESS_KEY=DST_SECRET_ENV,
        **redis_env,
    )
    code, daemon = daemon_output(path, tmp_path, env_src, expect_running=variant.endswith("right"))
    outputs = {name: (r.returncode, r.stdout + r.stderr) for name, r in results.items()}
    outputs["s3s3listen (daemon)"] = (code, daemon)
    for name, (code, output) in outputs.items():
        for secret in ALL_SECRETS:
            assert secret not in output, f"{name} ({variant}) printed {secret!r}:\n{output}"
        assert "Traceback" not in output, f"{name} ({variant}):\n{output}"
        if variant.endswith("wrong"):
            assert code == 2, f"{name} ({variant}): exit {code}\n{output}"
            assert "AuthenticationError" in output, f"{name} ({variant}):\n{output}"
        else:
            assert code == 0, f"{name} ({variant}): exit {code}\n{output}"
    if variant.endswith("right"):
        # The runs did happen at the most verbose level: botocore's debug lines are there.
        assert "DEBUG botocore" in outputs["s3s3bucket"][1]
        assert raw_client(b).get_object(Bucket=dst, Key="some/key")["Body"].read() == b"hello"
    if variant.startswith("query"):
        assert "?password=***" in outputs["s3s3listen (daemon)"][1]


@pytest.mark.interop
def test_a_wrong_secret_against_a_real_server_is_not_printed(ceph, tmp_path):
    """Ceph RGW checks signatures: a wrong secret key is refused, and the refusal, logged
    with botocore at DEBUG, does not show the secret."""
    wrong = "wrong-ceph-secret-9d2e41"
    src, dst = unique_bucket("src"), unique_bucket("dst")
    raw_client(ceph).create_bucket(Bucket=src)
    raw_client(ceph).create_bucket(Bucket=dst)
    text = (
        f"[source]\nbucket_name = {src}\nendpoint_url = {ceph['endpoint_url']}\n"
        f"region = {ceph['region']}\naws_access_key_id = {ceph['access_key']}\n"
        f"aws_secret_access_key = {wrong}\n"
        f"\n[dest1]\nbucket_name = {dst}\nendpoint_url = {ceph['endpoint_url']}\n"
        f"region = {ceph['region']}\naws_access_key_id = {ceph['access_key']}\n"
        f"aws_secret_access_key = {ceph['secret_key']}\n"
        f"\n[bucket]\nlock = local\nlock_dir = {tmp_path}\n"
    )
    path = tmp_path / "s3s3.ini"
    path.write_text(text)
    for module in ("s3s3.scripts.bucket", "s3s3.scripts.listen"):
        result = subprocess.run(
            [sys.executable, "-m", module, "--config", str(path), "-vv"],
            cwd=tmp_path,
            env=env_for(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "SignatureDoesNotMatch" in output or "403" in output, output
        assert "DEBUG botocore" in output
        for secret in (wrong, ceph["secret_key"]):
            assert secret not in output, f"{module} printed a secret:\n{output[-4000:]}"
        assert "Traceback" not in output
