"""The S3 server the benchmark runs against, and what the harness reads from it.

One Ceph RGW (``servers/ceph_rgw.py``, bluestore, plain HTTP) holds the source and the
destination buckets. Every tool is given two endpoints (remotes) for it, so data streams
through the host: download, then upload, as BASELINES.md measured.

The 2015 s3s3 cannot be given a port (its ``port`` key crashes it), so it only reaches port
80. The RGW is therefore started on 127.0.0.1:80 when that port is free, and every tool uses
it. When it is not, the RGW gets a free port and a ``socat`` forwarder listens on port 80 of
127.0.0.2 (or 127.0.0.1) for the 2015 s3s3 alone; the report says so.

If Ceph cannot start, two moto servers stand in (source and destination), which is marked
loudly: moto checks nothing and its rates say nothing about a real store. The 2015 s3s3
cannot run then (it would need both on port 80).

:class:`AccessLog` reads RGW's access log lines (``beast: ... "PUT /bucket/key HTTP/1.1" 200``,
logged at the default ``debug_rgw`` level 1): the requests each run made, and when each
object landed at the destination (the listener latency). The RGW is started with
``log_coarse_timestamps = false``: by default Ceph stamps log lines with a coarse clock that
lags the real one by up to 4 ms, which made a copy look as if it landed before it was
announced.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

from .paths import REPO_ROOT, WORK_DIR


@dataclass(frozen=True)
class Site:
    """One S3 endpoint as a tool is told about it."""

    url: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = "us-east-1"

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@dataclass
class BenchServer:
    """The running server(s): where the source and destination buckets live."""

    kind: str  # "ceph" | "moto"
    version: str
    src: Site
    dst: Site
    pids: list[int]
    workdirs: list[Path]
    access_log: AccessLog | None = None
    #: host the 2015 s3s3 reaches on port 80 (None: it cannot run here)
    legacy_host: str | None = None
    notes: list[str] = field(default_factory=list)
    _forwarder: subprocess.Popen | None = None
    _clients: dict = field(default_factory=dict)

    @property
    def fallback(self) -> bool:
        return self.kind != "ceph"

    def client(self, side: str = "src"):
        """A boto3 client for the harness's own calls (setup, verification); made once."""
        if side not in self._clients:
            self._clients[side] = make_client(self.src if side == "src" else self.dst)
        return self._clients[side]

    def cpu_s(self) -> float:
        """User+system CPU seconds used so far by the server daemons."""
        return sum(process_cpu_s(pid) for pid in self.pids)

    def stop(self) -> None:
        if self._forwarder is not None:
            self._forwarder.terminate()
            try:
                self._forwarder.wait(5)
            except subprocess.TimeoutExpired:
                self._forwarder.kill()
        if self.kind == "ceph":
            from servers import ceph_rgw

            ceph_rgw.stop(self.workdirs[0])
            # The OSD's block file holds every object written (GBs after W3); the logs stay
            # for inspection until the next start clears them.
            shutil.rmtree(self.workdirs[0] / "osd", ignore_errors=True)
        else:
            from servers import moto_server

            for w in self.workdirs:
                moto_server.stop(w)


def make_client(site: Site, *, pool: int = 64):
    """boto3 as the harness uses it: path-style, no payload signing, checksums when required."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=site.url,
        aws_access_key_id=site.access_key,
        aws_secret_access_key=site.secret_key,
        region_name=site.region,
        config=Config(
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=pool,
            retries={"max_attempts": 5, "mode": "standard"},
        ),
    )


def process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_server(*, force_moto: bool = False, log=print) -> BenchServer:
    """Start the RGW (or, failing that, two moto servers); the caller stops it."""
    if not force_moto:
        try:
            return _start_ceph(log)
        except Exception as exc:  # any failure to start means: use the fallback, loudly
            log(f"!!! Ceph RGW could not start: {str(exc)[:2000]}")
    return _start_moto(log)


def _start_ceph(log) -> BenchServer:
    from servers import ceph_rgw

    if not shutil.which("radosgw") and (REPO_ROOT / "servers" / "install-debian.sh").exists():
        log("radosgw missing: running servers/install-debian.sh ...")
        subprocess.run(
            ["bash", str(REPO_ROOT / "servers" / "install-debian.sh")],
            stdout=subprocess.DEVNULL,
            check=False,
        )
    workdir = WORK_DIR / "ceph"
    if (workdir / "endpoint.json").exists():
        ceph_rgw.stop(workdir)  # a previous harness run that died
    port80 = port_is_free("127.0.0.1", 80)
    info = ceph_rgw.start(workdir, tls=False, port=80 if port80 else None, store="bluestore")
    site = Site(info["endpoint_url"], info["access_key"], info["secret_key"], info["region"])
    server = BenchServer(
        kind="ceph",
        version=f"Ceph RGW {info['version']} (bluestore)",
        src=site,
        dst=site,
        pids=list(info["pids"]),
        workdirs=[workdir],
        access_log=AccessLog(workdir / "log" / "ceph-client.rgw.a.log"),
    )
    if port80:
        server.legacy_host = "127.0.0.1"
    else:
        _forward_port80(server, log)
    log(f"server: {server.version} at {site.url}")
    return server


def _forward_port80(server: BenchServer, log) -> None:
    """socat from port 80 of a loopback address to the RGW, for the 2015 s3s3 only."""
    if not shutil.which("socat"):
        server.notes.append("port 80 busy and no socat: the 2015 s3s3 cannot run")
        return
    for host in ("127.0.0.2", "127.0.0.1"):
        if not port_is_free(host, 80):
            continue
        proc = subprocess.Popen(
            [
                "socat",
                f"TCP-LISTEN:80,bind={host},reuseaddr,fork",
                f"TCP:127.0.0.1:{server.src.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        if proc.poll() is None:
            server._forwarder = proc
            server.legacy_host = host
            server.notes.append(
                f"127.0.0.1:80 was busy: the 2015 s3s3 reached the RGW through "
                f"a socat forwarder on {host}:80 (its CPU is not counted)"
            )
            log("note: " + server.notes[-1])
            return
    server.notes.append("port 80 busy everywhere: the 2015 s3s3 cannot run")


def _start_moto(log) -> BenchServer:
    from servers import moto_server

    log("!" * 78)
    log("!!! FALLBACK: two moto servers instead of Ceph RGW. moto verifies nothing and its")
    log("!!! rates say nothing about a real store; the 2015 s3s3 and request counts are off.")
    log("!" * 78)
    dirs = [WORK_DIR / "moto-src", WORK_DIR / "moto-dst"]
    infos = [moto_server.start(d, python=sys.executable) for d in dirs]
    sites = [Site(i["endpoint_url"], i["access_key"], i["secret_key"], i["region"]) for i in infos]
    return BenchServer(
        kind="moto",
        version=f"moto {infos[0]['version']} (FALLBACK)",
        src=sites[0],
        dst=sites[1],
        pids=[p for i in infos for p in i["pids"]],
        workdirs=dirs,
        notes=["FALLBACK: moto servers, not Ceph RGW; not comparable to BASELINES.md"],
    )


# --------------------------------------------------------------------------- access log

#: Buckets that never exist, asked for only to mark a point in the log.
MARK_PREFIX = "bench-mark-"
_LINE = re.compile(
    r'^(\S+) \S+\s+-?\d+ beast: \S+ \S+ - \S+ \[[^\]]*\] "([A-Z]+) (\S+) HTTP/[\d.]+" '
    r"(\d{3}) (\d+|-)"
)


@dataclass(frozen=True)
class Request:
    """One request as RGW logged it, when it finished."""

    ts: float  # epoch seconds when RGW logged it (the real clock, to the millisecond)
    method: str
    bucket: str
    key: str
    query: str
    status: int
    bytes: int


class AccessLog:
    """RGW's log file, read from byte offsets: which requests a run made, and when."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ts_cache: dict[str, float] = {}

    def offset(self) -> int:
        """Where the log ends now: the start of the next run's requests."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, start: int, end: int | None = None) -> tuple[list[Request], int]:
        """The requests logged between two offsets, and the offset of the last full line."""
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(max(0, end - start))
        cut = data.rfind(b"\n") + 1
        requests = [
            r
            for r in map(self._parse, data[:cut].decode("utf-8", "replace").splitlines())
            if r is not None
        ]
        return requests, start + cut

    def mark(self, client, *, timeout_s: float = 10.0) -> int:
        """An offset at which every request made before this call has been logged.

        RGW writes its log from a thread, a little after each request. A request that
        cannot succeed (HEAD of a bucket that does not exist) is made, and the log is read
        until it shows up; the returned offset is just past that line. Requests of the
        marker bucket are dropped by :meth:`read`.
        """
        name = f"{MARK_PREFIX}{time.monotonic_ns()}"
        try:
            client.head_bucket(Bucket=name)
        except Exception:  # 404 is the expected answer
            pass
        needle = f"/{name} ".encode()
        pos = self.offset()
        start = max(0, pos - 256 * 1024)
        deadline = time.monotonic() + timeout_s
        while True:
            with open(self.path, "rb") as f:
                f.seek(start)
                data = f.read()
            i = data.find(needle)
            if i >= 0:
                end = data.find(b"\n", i)
                if end >= 0:
                    return start + end + 1
            if time.monotonic() > deadline:
                return self.offset()
            time.sleep(0.02)

    def follow(self, start: int) -> Iterator[list[Request]]:
        """New requests each time it is advanced (an empty list when nothing new)."""
        pos = start
        while True:
            requests, pos = self.read(pos)
            yield requests

    def _parse(self, line: str) -> Request | None:
        if "beast:" not in line:
            return None
        m = _LINE.match(line)
        if not m:
            return None
        stamp, method, target, status, size = m.groups()
        path, _, query = target.partition("?")
        bucket, _, key = path.lstrip("/").partition("/")
        if bucket.startswith(MARK_PREFIX):
            return None
        return Request(
            self._epoch(stamp),
            method,
            unquote(bucket),
            unquote(key),
            query,
            int(status),
            0 if size == "-" else int(size),
        )

    def _epoch(self, stamp: str) -> float:
        # "2026-11-25T14:35:56.432+0000": cache the whole-second part, parse the fraction.
        head, _, rest = stamp.partition(".")
        frac, tz = rest[:-5], rest[-5:]
        base = self._ts_cache.get(head + tz)
        if base is None:
            base = datetime.strptime(head + tz, "%Y-%m-%dT%H:%M:%S%z").timestamp()
            self._ts_cache[head + tz] = base
        return base + float("0." + frac) if frac else base


def count_requests(requests: list[Request]) -> dict[str, int]:
    """Requests per kind: GET, PUT, HEAD, LIST, DELETE, POST (multipart), and errors (>= 400)."""
    counts: dict[str, int] = {}
    for r in requests:
        kind = r.method
        if r.method == "GET" and not r.key:
            kind = "LIST"
        counts[kind] = counts.get(kind, 0) + 1
        if r.status >= 400:
            counts["errors"] = counts.get("errors", 0) + 1
    counts["total"] = len(requests)
    return counts


def repo_on_path() -> None:
    """Make ``servers`` (beside ``bench``) importable however the harness was started."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
