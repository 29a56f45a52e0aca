"""Start and stop a single-node OpenStack Swift with s3api on 127.0.0.1 for tests and benchmarks.

memcached, account/container/object servers (one device, one replica), an object-updater and
a proxy with s3api + tempauth (plus a second proxy serving HTTPS), every file under one work
directory and every port free, so several instances can run side by side.

    python -m servers.swift_s3api start --workdir DIR [--port P] [--no-tls]
    python -m servers.swift_s3api stop --workdir DIR

``start`` prints the path of ``DIR/endpoint.json`` (URLs, CA bundle, keys, PIDs) and leaves
the daemons running; ``stop`` stops them.

From Python, ``start(..., filters=[ProxyFilter(...)], python_path=[...])`` adds filters of
one's own to the proxies' pipeline (the s3s3 middleware, for instance) and directories to the
proxies' ``sys.path`` (where that middleware's package lives); by default neither is changed.

Swift itself is never imported here: the daemons run under the interpreter that has it
(Debian's /usr/bin/python3 by default; ``S3S3_SWIFT_BIN`` names another directory holding
``python3`` and the ``swift-*`` scripts, e.g. a venv's ``bin``), through a small launcher
written into the work directory. The launcher points Swift at this instance's swift.conf
and sends its logs to a file instead of syslog: /etc/swift is neither needed nor used.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import os
import pwd
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servers._common import (
    ENDPOINT_FILE,
    clear_workdir,
    endpoint_info,
    free_ports,
    make_self_signed_ca,
    pid_is_running,
    running_pids,
    spawn,
    stop_pids,
    tail,
    wait_for_port,
    write_endpoint,
)

__all__ = ["ProxyFilter", "SwiftStartError", "start", "stop"]

REGION = "us-east-1"
ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"
# Marks every process of an instance in its environment, so that stop() never signals a
# process that merely reuses one of the recorded PIDs (memcached's argv names no path).
_MARKER_ENV = "S3S3_SWIFT_WORKDIR"
# What start() creates in the work directory, and removes again before a fresh start.
_STATE_DIRS = ("etc", "srv", "cache", "log", "tls")
_STORAGE_SERVERS = ("account", "container", "object")


class SwiftStartError(RuntimeError):
    """Swift did not come up; the message carries the tail of the daemon log at fault."""


@dataclass(frozen=True)
class ProxyFilter:
    """One more filter in the proxies' pipeline: a ``[filter:NAME]`` section of ``options``
    (``paste.filter_factory`` or ``use`` among them), placed right after ``after``.

    Several filters placed after the same element keep the order they are given in.
    """

    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    after: str = "slo"


def start(
    workdir: Path,
    *,
    tls: bool = True,
    port: int | None = None,
    timeout_s: float = 60.0,
    filters: Sequence[ProxyFilter] = (),
    python_path: Sequence[str | os.PathLike] = (),
    object_versioning: bool = False,
) -> dict:
    """Bring up memcached, the storage servers, the updater and the proxies; return endpoint.json.

    ``object_versioning`` turns on Swift's object versioning (``allow_object_versioning``),
    which s3api's bucket versioning needs; off, GetBucketVersioning answers as a Swift without
    it does.

    ``port`` is the plain-HTTP port of the proxy (a free one if None); with ``tls`` a second
    proxy serves HTTPS on a free port with a certificate from a CA made for this instance.
    ``filters`` are added to both proxies' pipelines, and ``python_path`` is the proxies'
    PYTHONPATH (Swift's interpreter otherwise sees none: the caller's is never passed on).
    Every start is fresh: objects a previous instance left in ``workdir`` are removed.
    On failure every daemon started so far is stopped and SwiftStartError is raised.
    """
    began = time.monotonic()
    workdir = Path(workdir).resolve()
    pipeline = _pipeline(filters)
    python, bin_dir = _swift_interpreter()
    _prepare_workdir(workdir)
    # One spare, so that a given ``port`` never doubles as another daemon's.
    spare = [p for p in free_ports(7) if p != port]
    ports = dict(zip(("memcached", *_STORAGE_SERVERS, "proxy", "proxy-tls"), spare, strict=False))
    if port is not None:
        ports["proxy"] = port
    ca_pem = cert_pem = key_pem = None
    if tls:
        ca_pem, cert_pem, key_pem = make_self_signed_ca(workdir / "tls")
    etc = workdir / "etc"
    swift_conf = etc / "swift.conf"
    swift_conf.write_text(_swift_conf())
    launcher = etc / "launch.py"
    launcher.write_text(_LAUNCHER)
    for name in _STORAGE_SERVERS:
        (etc / f"{name}-server.conf").write_text(_storage_conf(workdir, name, ports[name]))
    (etc / "proxy-server.conf").write_text(
        _proxy_conf(
            workdir,
            ports["proxy"],
            ports["memcached"],
            pipeline=pipeline,
            filters=filters,
            object_versioning=object_versioning,
        )
    )
    if tls:
        (etc / "proxy-server-tls.conf").write_text(
            _proxy_conf(
                workdir,
                ports["proxy-tls"],
                ports["memcached"],
                cert_pem=cert_pem,
                key_pem=key_pem,
                pipeline=pipeline,
                filters=filters,
                object_versioning=object_versioning,
            )
        )

    instance = _Instance(
        workdir,
        python=python,
        bin_dir=bin_dir,
        deadline=began + timeout_s,
        proxy_path=[str(Path(p).resolve()) for p in python_path],
    )
    try:
        instance.spawn_memcached(ports["memcached"])
        # The storage servers read no ring, so they load while the rings are being built.
        for name in _STORAGE_SERVERS:
            instance.spawn_swift(
                f"{name}-server", f"swift-{name}-server", etc / f"{name}-server.conf"
            )
        version = instance.build_rings({name: ports[name] for name in _STORAGE_SERVERS})
        instance.spawn_swift("object-updater", "swift-object-updater", etc / "object-server.conf")
        instance.spawn_swift("proxy-server", "swift-proxy-server", etc / "proxy-server.conf")
        if tls:
            instance.spawn_swift(
                "proxy-server-tls", "swift-proxy-server", etc / "proxy-server-tls.conf"
            )
        for name in ("memcached", *_STORAGE_SERVERS):
            instance.wait_for_port(name if name == "memcached" else f"{name}-server", ports[name])
        instance.wait_for_s3("proxy-server", f"http://127.0.0.1:{ports['proxy']}")
        if tls:
            instance.wait_for_s3(
                "proxy-server-tls", f"https://127.0.0.1:{ports['proxy-tls']}", ca_pem=ca_pem
            )
        instance.check_alive()
        info = endpoint_info(
            "swift",
            version,
            http_port=ports["proxy"],
            https_port=ports["proxy-tls"] if tls else None,
            ca_bundle=ca_pem if tls else None,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            pids=instance.pids(),
            workdir=workdir,
        )
        write_endpoint(workdir, info)
    except BaseException:
        instance.kill()
        raise
    print(f"swift {version} ready in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return info


def stop(workdir: Path, *, timeout_s: float = 30.0) -> None:
    """Stop the daemons listed in ``workdir/endpoint.json`` and wait until all are gone."""
    workdir = Path(workdir).resolve()
    pids = running_pids(workdir, _is_ours)
    if pids is None:
        return
    # All at once: nothing of a test instance needs to outlive the rest, and each daemon
    # takes up to ~0.7 s to exit.
    stop_pids(list(reversed(pids)), timeout_s)
    _reap_groups(pids, timeout_s)


class _Instance:
    """The daemons of one instance while it starts: their processes and their logs."""

    def __init__(
        self,
        workdir: Path,
        *,
        python: Path,
        bin_dir: Path,
        deadline: float,
        proxy_path: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.python = python
        self.bin_dir = bin_dir
        self.deadline = deadline
        self.logs = workdir / "log"
        self.procs: dict[str, subprocess.Popen] = {}
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_PYTHON_ENV}
        env[_MARKER_ENV] = str(workdir)
        # Skips importing dnspython (about 0.3 s per process); every address here is an IP.
        env["EVENTLET_NO_GREENDNS"] = "yes"
        self.env = env
        # Only the proxies load filters of the caller's; the other daemons keep a bare path.
        self.proxy_env = {**env, "PYTHONPATH": os.pathsep.join(proxy_path)} if proxy_path else env

    def spawn_memcached(self, port: int) -> None:
        argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-t", "2", "-m", "64"]
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root unless told so
        self._spawn("memcached", argv)

    def spawn_swift(self, name: str, script: str, conf: Path) -> None:
        # -v keeps the console log handler, whose stderr is our log file; capture_stdio()
        # would otherwise point every output at /dev/null.
        self._spawn(
            name,
            [
                self.python,
                self.workdir / "etc" / "launch.py",
                self.workdir / "etc" / "swift.conf",
                "run",
                self.bin_dir / script,
                conf,
                "-v",
            ],
            env=self.proxy_env if script == "swift-proxy-server" else self.env,
        )

    def build_rings(self, ports: dict[str, int]) -> str:
        """One replica, one device per ring, with swift-ring-builder's own code; returns Swift's version.

        All nine builder commands run in one interpreter: as separate processes they cost
        about a second each, mostly imports.
        """
        argv = [
            self.python,
            self.workdir / "etc" / "launch.py",
            self.workdir / "etc" / "swift.conf",
            "rings",
            self.workdir / "etc",
            *(f"{name}={port}" for name, port in ports.items()),
        ]
        argv = [str(a) for a in argv]
        self.check_alive()
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, env=self.env, timeout=self._left()
            )
        except subprocess.TimeoutExpired as exc:
            raise SwiftStartError(
                f"building the rings timed out (work directory {self.workdir})"
            ) from exc
        (self.logs / "rings.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise self._error("rings", f"building the rings failed ({result.returncode})")
        version = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        if not version.startswith("swift "):
            raise self._error("rings", "the ring builder did not report Swift's version")
        return version.split(None, 1)[1]

    def wait_for_port(self, name: str, port: int) -> None:
        try:
            wait_for_port("127.0.0.1", port, self._left(), proc=self.procs[name])
        except (RuntimeError, TimeoutError) as exc:
            raise self._error(name, str(exc)) from exc

    def wait_for_s3(self, name: str, url: str, *, ca_pem: Path | None = None) -> None:
        """Until a SigV4-signed ListBuckets answers 200: proxy, auth, memcached and account server work."""
        context = ssl.create_default_context(cafile=str(ca_pem)) if ca_pem else None
        last = ""
        while True:
            self.check_alive()
            request = urllib.request.Request(
                url + "/", headers=_sigv4_headers(url, ACCESS_KEY, SECRET_KEY)
            )
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as response:
                    if b"ListAllMyBucketsResult" in response.read():
                        return
                    last = f"HTTP {response.status} without a bucket list"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read()[:300]!r}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            if time.monotonic() >= self.deadline:
                raise self._error(
                    name, f"no S3 answer from {url} ({last})", also=_STORAGE_SERVERS_LOGS
                )
            time.sleep(0.05)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise self._error(name, f"{name} exited with status {proc.returncode}")

    def pids(self) -> list[int]:
        """PIDs in start order: memcached, storage servers, updater, proxies."""
        return [proc.pid for proc in self.procs.values()]

    def kill(self) -> None:
        pids = self.pids()
        stop_pids(list(reversed(pids)), 5.0)
        for proc in self.procs.values():
            proc.wait()
        _reap_groups(pids, 5.0)

    def _spawn(self, name: str, argv: list, *, env: dict[str, str] | None = None) -> None:
        self.procs[name] = spawn(
            [str(a) for a in argv], self.logs / f"{name}.log", env=env or self.env
        )

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SwiftStartError(f"swift not ready in time (work directory {self.workdir})")
        return left

    def _error(self, name: str, message: str, *, also: tuple[str, ...] = ()) -> SwiftStartError:
        parts = [message]
        for log_name in (name, *also):
            path = self.logs / f"{log_name}.log"
            text = tail(path)
            if text:
                parts.append(f"--- tail of {path} ---\n{text}")
        return SwiftStartError("\n".join(parts))


_STORAGE_SERVERS_LOGS = tuple(f"{name}-server" for name in _STORAGE_SERVERS)
# The daemons run under another interpreter; the caller's venv or path must not leak into it.
_FOREIGN_PYTHON_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")


def _swift_interpreter() -> tuple[Path, Path]:
    """(python, directory of the swift-* scripts): Debian's by default, or ``S3S3_SWIFT_BIN``."""
    bin_dir = Path(os.environ.get("S3S3_SWIFT_BIN", "/usr/bin"))
    python = bin_dir / "python3"
    missing = [
        p
        for p in (python, bin_dir / "swift-proxy-server", bin_dir / "swift-object-updater")
        if not p.exists()
    ]
    if missing or shutil.which("memcached") is None:
        raise SwiftStartError(
            f"Swift is not installed (missing: {', '.join(map(str, missing)) or 'memcached'}); "
            f"run servers/install-debian.sh or set S3S3_SWIFT_BIN"
        )
    return python, bin_dir


def _prepare_workdir(workdir: Path) -> None:
    """Refuse a work directory whose instance still runs; clear what a previous one left."""
    clear_workdir(workdir, _STATE_DIRS, _is_ours, SwiftStartError)
    for name in ("etc", "srv/d1", "cache", "log"):
        (workdir / name).mkdir(parents=True)


def _is_ours(pid: int, workdir: Path) -> bool:
    """True if ``pid`` runs and was started for this work directory (not a reused PID)."""
    if not pid_is_running(pid):
        return False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(f"{_MARKER_ENV}={workdir}") in environ


def _group_members(pgids: list[int]) -> list[int]:
    """Live (non-zombie) processes whose process group is one of ``pgids``."""
    wanted = set(pgids)
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # fields: state, ppid, pgrp, ...
        if int(fields[2]) in wanted and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _reap_groups(pgids: list[int], timeout_s: float) -> None:
    """Wait until no worker forked by a stopped daemon is left in its process group."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = _group_members(pgids)
        if not left:
            return
        if time.monotonic() >= deadline:
            stop_pids(left, 0.0)
            return
        time.sleep(0.05)


def _sigv4_headers(url: str, access_key: str, secret_key: str) -> dict[str, str]:
    """Headers signing ``GET /`` (ListBuckets) with SigV4, without botocore."""
    host = url.split("://", 1)[1].rstrip("/")
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = f"GET\n/\n\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\n{signed}\n{payload}"
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = (
        f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    )
    key = ("AWS4" + secret_key).encode()
    for part in (day, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}",
    }


def _swift_conf() -> str:
    # S3 allows 2 KB of user metadata per object; Swift's defaults (128-byte names, 256-byte
    # values, 4 KiB in all) would answer 400 to requests AWS accepts.
    return f"""\
# Written by servers/swift_s3api.py; read through etc/launch.py, never from /etc/swift.
[swift-hash]
swift_hash_path_prefix = {secrets.token_hex(8)}
swift_hash_path_suffix = {secrets.token_hex(8)}

[storage-policy:0]
name = Policy-0
policy_type = replication
default = yes

[swift-constraints]
max_meta_name_length = 2048
max_meta_value_length = 2048
max_meta_overall_size = 8192
"""


def _common_defaults(workdir: Path, port: int, log_name: str) -> str:
    # user: the default "swift" would drop privileges and lose access to the work directory.
    # bind_timeout: a port taken meanwhile fails the start in seconds, not after 30.
    # workers = 0 serves in the started process itself. With workers = 1 a parent forks the
    # one worker, loads the app twice (slower start-up), polls waitpid() every 10 ms (~2 % of
    # a core each while idle) and takes ~1 s to stop; one eventlet worker serves the same.
    return f"""\
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
bind_timeout = 5
workers = 0
user = {pwd.getpwuid(os.geteuid()).pw_name}
swift_dir = {workdir}/etc
devices = {workdir}/srv
mount_check = false
disable_fallocate = true
recon_cache_path = {workdir}/cache
log_name = {log_name}
log_level = INFO
"""


def _storage_conf(workdir: Path, name: str, port: int) -> str:
    text = f"""\
# Written by servers/swift_s3api.py.
{_common_defaults(workdir, port, f"{name}-server")}
[pipeline:main]
pipeline = {name}-server

[app:{name}-server]
use = egg:swift#{name}
# The proxy logs every request; access lines from the storage servers only slow benchmarks.
log_requests = false
"""
    if name == "object":
        # Container updates that time out under load are queued for the updater; at its
        # default 300 s interval such objects stay missing from listings for minutes. A
        # longer container_update_timeout (default 1 s) queues fewer in the first place.
        text += """\
container_update_timeout = 3

[object-updater]
log_name = object-updater
interval = 5
concurrency = 4
objects_per_second = 1000
"""
    return text


_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl "
    "s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server"
)
_FILTER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _pipeline(filters: Sequence[ProxyFilter]) -> str:
    """The proxies' pipeline with ``filters`` inserted; ValueError for a filter that cannot be."""
    names = _PIPELINE.split()
    placed: dict[str, int] = {}  # after -> filters placed after it so far
    for f in filters:
        if not _FILTER_NAME.match(f.name) or f.name in names:
            raise ValueError(f"filter name {f.name!r} is not a new name of letters, digits, - or _")
        if f.after not in _PIPELINE.split():
            raise ValueError(f"filter {f.name!r}: {f.after!r} is not in the pipeline {_PIPELINE!r}")
        for key, value in f.options.items():
            if any(ch in str(key) + str(value) for ch in "\r\n"):
                raise ValueError(f"filter {f.name!r}: option {key!r} spans lines")
        at = names.index(f.after) + 1 + placed.get(f.after, 0)
        names.insert(at, f.name)
        placed[f.after] = placed.get(f.after, 0) + 1
    return " ".join(names)


def _proxy_conf(
    workdir: Path,
    port: int,
    memcached_port: int,
    *,
    cert_pem: Path | None = None,
    key_pem: Path | None = None,
    pipeline: str = _PIPELINE,
    filters: Sequence[ProxyFilter] = (),
    object_versioning: bool = False,
) -> str:
    name = "proxy-server-tls" if cert_pem else "proxy-server"
    # eventlet's own TLS: slower than a terminator in front, but no extra program to run.
    tls = f"cert_file = {cert_pem}\nkey_file = {key_pem}\n" if cert_pem else ""
    plain_filters = (
        "catch_errors",
        "gatekeeper",
        "healthcheck",
        "proxy-logging",
        "listing_formats",
        "bulk",
        "tempurl",
        "copy",
        "dlo",
        "versioned_writes",
        "symlink",
    )
    # Entry points are spelt with "_" (proxy_logging) where pipeline names use "-".
    sections = "".join(
        f"\n[filter:{f}]\nuse = egg:swift#{f.replace('-', '_')}\n" for f in plain_filters
    )
    if object_versioning:
        sections = sections.replace(
            "use = egg:swift#versioned_writes\n",
            "use = egg:swift#versioned_writes\nallow_object_versioning = true\n",
        )
    for f in filters:
        # paste.deploy interpolates values (%(here)s): a literal % is written %%.
        sections += f"\n[filter:{f.name}]\n" + "".join(
            f"{key} = {str(value).replace('%', '%%')}\n" for key, value in f.options.items()
        )
    return f"""\
# Written by servers/swift_s3api.py.
{_common_defaults(workdir, port, name)}{tls}
[pipeline:main]
pipeline = {pipeline}

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = {REGION}
max_upload_part_num = 10000
s3_acl = false

[filter:tempauth]
use = egg:swift#tempauth
# S3 access key "{ACCESS_KEY}", secret "{SECRET_KEY}".
user_test_tester = {SECRET_KEY} .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached_port}
# A positive value also keeps the middleware from reading memcache.conf from disk.
memcache_max_connections = 8

[filter:slo]
use = egg:swift#slo
allow_async_delete = false
{sections}"""


# Runs under Swift's interpreter, never imported here.
_LAUNCHER = '''\
"""Run a Swift entry point against a private swift.conf, logging to stderr instead of syslog.

Written by servers/swift_s3api.py:
    python3 launch.py SWIFT_CONF run SCRIPT ARGS...      run a swift-* script as __main__
    python3 launch.py SWIFT_CONF rings DIR NAME=PORT...  build one-device rings, print the version
"""
import gc
import importlib
import logging
import os
import runpy
import sys


class _NoSyslog(logging.NullHandler):
    """Stands in for Swift's syslog handler, which get_logger() adds whatever the config says."""

    def __init__(self, *args, **kwargs):
        super().__init__()


def use_swift_conf(path):
    # swift.common.utils reads /etc/swift/swift.conf when imported, and constraints and
    # storage policies copy their values when they are imported; swift_dir changes neither.
    from swift.common import utils
    utils.SWIFT_CONF_FILE = path
    utils.HASH_PATH_PREFIX = utils.HASH_PATH_SUFFIX = b""
    utils.validate_hash_conf()
    for name in ("swift.common.utils", "swift.common.utils.logs"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "ThreadSafeSysLogHandler"):
            module.ThreadSafeSysLogHandler = _NoSyslog
    constraints = importlib.import_module("swift.common.constraints")
    policies = importlib.import_module("swift.common.storage_policy")
    constraints.reload_constraints()
    policies.reload_storage_policies()


def build_rings(directory, ports):
    from swift.cli.ringbuilder import main
    for kind, port in ports:
        builder = "%s/%s.builder" % (directory, kind)
        for args in (["create", "6", "1", "1"], ["add", "r1z1-127.0.0.1:%s/d1" % port, "1"], ["rebalance"]):
            try:
                main(["swift-ring-builder", builder] + args)
                status = 0
            except SystemExit as exc:
                status = exc.code or 0
            if status != 0:
                sys.exit("swift-ring-builder %s %s failed with status %s" % (builder, args[0], status))
    import swift
    print("swift %s" % swift.__version__)


def green_early():
    """Apply Swift's eventlet_monkey_patch() before swift is imported.

    eventlet (0.33) greens each RLock that already exists with a full gc.collect() and a
    gc.get_referrers() scan: with 18 locks that was ~0.8 s of CPU per server, most of
    start-up, and the object-updater paid it again in the child it forks for every sweep.
    The collections only drop garbage before the scan, so they are skipped (a dead referrer
    merely gets its lock swapped too), and patching before swift is imported leaves fewer
    objects to scan. Swift's own later calls then find the work done.
    """
    import eventlet.patcher
    collect, gc.collect = gc.collect, lambda *args, **kwargs: 0
    try:
        eventlet.patcher.monkey_patch(all=False, socket=True, select=True, thread=True)
    finally:
        gc.collect = collect


def freeze_before_fork():
    """gc.freeze() before each fork, as the gc docs advise for fork without exec.

    The object-updater forks a child for every sweep; unfrozen, each child spent ~0.25 s
    of CPU tearing down a copy of the parent's heap at exit, ~0.05 s frozen.
    """
    fork = os.fork

    def frozen_fork():
        gc.freeze()
        return fork()

    os.fork = frozen_fork


def main():
    swift_conf, mode = sys.argv[1], sys.argv[2]
    if mode == "run":
        green_early()
        freeze_before_fork()
    elif mode != "rings":
        sys.exit("unknown mode %r" % mode)
    use_swift_conf(swift_conf)
    if mode == "rings":
        build_rings(sys.argv[3], [arg.split("=", 1) for arg in sys.argv[4:]])
    else:
        sys.argv = sys.argv[3:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servers.swift_s3api", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start an instance and print the path of endpoint.json")
    p_start.add_argument("--workdir", type=Path, required=True)
    p_start.add_argument(
        "--port", type=int, default=None, help="plain-HTTP port (default: a free one)"
    )
    p_start.add_argument("--no-tls", dest="tls", action="store_false", help="serve plain HTTP only")
    p_start.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for S3 (default 60)"
    )
    p_stop = sub.add_parser("stop", help="stop the instance in --workdir")
    p_stop.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            start(args.workdir, tls=args.tls, port=args.port, timeout_s=args.timeout)
            print(args.workdir.resolve() / ENDPOINT_FILE)
        else:
            stop(args.workdir)
    except (SwiftStartError, RuntimeError, TimeoutError, OSError, ValueError) as exc:
        print(f"swift_s3api {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
