"""Start and stop a single-node Ceph RGW (Debian packages) on 127.0.0.1 for tests and benchmarks.

One monitor, one OSD and one radosgw, every file under one work directory, so several
instances can run side by side. No mgr and no cephx: loopback only, never for real data.

    python -m servers.ceph_rgw start --workdir DIR [--port P] [--no-tls] [--store memstore]
    python -m servers.ceph_rgw stop --workdir DIR

``start`` prints the path of ``DIR/endpoint.json`` (URLs, CA bundle, keys, PIDs) and leaves
the daemons running; ``stop`` stops them.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import ssl
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
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

__all__ = ["RgwStartError", "start", "stop"]

REGION = "us-east-1"
STORES = ("bluestore", "memstore")
# What start() creates in the work directory, and removes again before a fresh start.
_STATE_DIRS = ("mon", "osd", "rgw", "run", "log", "crash", "tls")


class RgwStartError(RuntimeError):
    """The cluster did not come up; the message carries the tail of the daemon log at fault."""


def start(
    workdir: Path,
    *,
    tls: bool = True,
    port: int | None = None,
    store: str = "bluestore",
    timeout_s: float = 60.0,
) -> dict:
    """Bring up mon, OSD and radosgw under ``workdir``; return what ``endpoint.json`` holds.

    ``port`` is the plain-HTTP port (a free one if None); with ``tls`` a second, free port
    serves HTTPS with a certificate from a CA made for this instance. ``store`` is
    ``bluestore`` (a sparse 20 GiB file) or ``memstore`` (faster to start, data in RAM).
    On failure every daemon started so far is stopped and RgwStartError is raised.
    """
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, got {store!r}")
    began = time.monotonic()
    workdir = Path(workdir).resolve()
    if any(c.isspace() for c in str(workdir)):
        # rgw_frontends is split on whitespace, so the certificate paths cannot hold any.
        raise ValueError(f"workdir must not contain whitespace: {workdir}")
    _prepare_workdir(workdir)
    mon_port, http_port, https_port = free_ports(3)
    if port is not None:
        http_port = port
    ca_pem = cert_pem = key_pem = None
    if tls:
        ca_pem, cert_pem, key_pem = make_self_signed_ca(workdir / "tls")
    fsid = str(uuid.uuid4())
    conf = workdir / "ceph.conf"
    conf.write_text(
        _ceph_conf(
            workdir,
            fsid=fsid,
            mon_port=mon_port,
            http_port=http_port,
            https_port=https_port if tls else None,
            cert_pem=cert_pem,
            key_pem=key_pem,
            store=store,
        )
    )
    cluster = _Cluster(workdir, conf, deadline=began + timeout_s)
    try:
        access_key, secret_key = cluster.bootstrap(fsid=fsid, mon_port=mon_port)
        cluster.start_rgw()
        cluster.wait_for_s3(f"http://127.0.0.1:{http_port}/")
        if tls:
            cluster.wait_for_s3(f"https://127.0.0.1:{https_port}/", ca_pem=ca_pem)
        info = endpoint_info(
            "ceph",
            _radosgw_version(),
            http_port=http_port,
            https_port=https_port if tls else None,
            ca_bundle=ca_pem if tls else None,
            access_key=access_key,
            secret_key=secret_key,
            region=REGION,
            pids=cluster.pids(),
            workdir=workdir,
        )
        write_endpoint(workdir, info)
    except BaseException:
        cluster.kill()
        raise
    print(f"ceph rgw ({store}) ready in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return info


def stop(workdir: Path, *, timeout_s: float = 30.0) -> None:
    """Stop the daemons listed in ``workdir/endpoint.json`` and wait until they are gone."""
    workdir = Path(workdir).resolve()
    pids = running_pids(workdir, _is_ours)
    if pids is None:
        return
    # radosgw, then OSD, then mon: each shuts down cleanly only while the next one still runs.
    for pid in reversed(pids):
        stop_pids([pid], timeout_s)


class _Cluster:
    """The daemons of one instance while it starts: their processes and their logs."""

    def __init__(self, workdir: Path, conf: Path, *, deadline: float) -> None:
        self.workdir = workdir
        self.conf = conf
        self.deadline = deadline
        self.logs = workdir / "log"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ, CEPH_CONF=str(conf))

    def bootstrap(self, *, fsid: str, mon_port: int) -> tuple[str, str]:
        """mon, OSD and the S3 user; returns (access key, secret key)."""
        monmap = self.workdir / "run" / "monmap"
        self._run(
            "monmaptool",
            "--create",
            "--clobber",
            "--enable-all-features",
            "--fsid",
            fsid,
            "--addv",
            "a",
            f"[v2:127.0.0.1:{mon_port}]",
            monmap,
        )
        self._run("ceph-mon", "--mkfs", "-i", "a", "--monmap", monmap, log="mon.a")
        self._spawn("mon.a", "ceph-mon", "-f", "-i", "a")
        try:
            wait_for_port("127.0.0.1", mon_port, self._left(), proc=self.procs["mon.a"])
        except (RuntimeError, TimeoutError) as exc:
            raise self._error("mon.a", str(exc)) from exc

        osd_uuid = str(uuid.uuid4())
        osd_id = self._run("ceph", "osd", "new", osd_uuid, log="mon.a").strip()
        # ceph-osd --mkfs creates the block file but not the directory that holds it.
        (self.workdir / "osd" / f"ceph-{osd_id}").mkdir()
        self._run("ceph-osd", "--mkfs", "-i", osd_id, "--osd-uuid", osd_uuid, log="osd.0")
        self._spawn("osd.0", "ceph-osd", "-f", "-i", osd_id)
        self._wait_for_osd_up()

        access_key = "".join(
            secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20)
        )
        secret_key = secrets.token_urlsafe(30)
        self._run(
            "radosgw-admin",
            "user",
            "create",
            "--uid=tester",
            "--display-name=tester",
            f"--access-key={access_key}",
            f"--secret-key={secret_key}",
            log="osd.0",
        )
        # The zonegroup is called "default"; S3 clients expect the region name in
        # GetBucketLocation and LocationConstraint. radosgw reads it at start, so set it first.
        self._run(
            "radosgw-admin",
            "zonegroup",
            "modify",
            "--rgw-zonegroup=default",
            f"--api-name={REGION}",
            log="osd.0",
        )
        return access_key, secret_key

    def start_rgw(self) -> None:
        self._spawn("client.rgw.a", "radosgw", "-f", "-n", "client.rgw.a")

    def wait_for_s3(self, url: str, *, ca_pem: Path | None = None) -> None:
        """Until an unsigned GET / gets any HTTP answer from radosgw."""
        context = ssl.create_default_context(cafile=str(ca_pem)) if ca_pem else None
        last = ""
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2, context=context):
                    return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            if time.monotonic() >= self.deadline:
                raise self._error("client.rgw.a", f"no HTTP answer from {url} ({last})")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """PIDs in start order: mon, OSD, radosgw."""
        return [proc.pid for proc in self.procs.values()]

    def kill(self) -> None:
        stop_pids(list(reversed(self.pids())), 5.0)

    def _spawn(self, name: str, *argv: str) -> None:
        self.procs[name] = spawn(
            [*argv, "-c", str(self.conf)], self.logs / f"{name}.out", env=self.env
        )

    def _run(self, *argv: object, log: str | None = None) -> str:
        """Run a ceph tool to completion; on failure, blame it and the daemon log ``log``."""
        argv = [str(a) for a in argv]
        self._check_alive()
        try:
            result = subprocess.run(
                argv + ["-c", str(self.conf)],
                capture_output=True,
                text=True,
                env=self.env,
                timeout=self._left(),
            )
        except subprocess.TimeoutExpired as exc:
            raise self._error(log, f"{' '.join(argv[:3])} timed out") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-3000:]
            raise self._error(log, f"{' '.join(argv[:3])} failed ({result.returncode}):\n{output}")
        return result.stdout

    def _wait_for_osd_up(self) -> None:
        while True:
            stat = json.loads(self._run("ceph", "osd", "stat", "-f", "json", log="osd.0"))
            if stat.get("num_up_osds") == 1 and stat.get("num_in_osds") == 1:
                return
            if time.monotonic() >= self.deadline:
                raise self._error("osd.0", f"OSD not up and in: {stat}")
            time.sleep(0.1)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise self._error(name, f"{name} exited with status {proc.returncode}")

    def _left(self) -> float:
        # Never zero, so that a step begun at the deadline still fails through its own timeout
        # and its error carries the daemon log.
        return max(self.deadline - time.monotonic(), 0.1)

    def _error(self, name: str | None, message: str) -> RgwStartError:
        if name is None:
            return RgwStartError(message)
        parts = [message]
        for path in (self.logs / f"ceph-{name}.log", self.logs / f"{name}.out"):
            text = tail(path)
            if text:
                parts.append(f"--- tail of {path} ---\n{text}")
        return RgwStartError("\n".join(parts))


def _prepare_workdir(workdir: Path) -> None:
    """Refuse a work directory whose instance still runs; clear what a previous one left."""
    clear_workdir(workdir, _STATE_DIRS, _is_ours, RgwStartError)
    for name in _STATE_DIRS:
        (workdir / name).mkdir()


def _is_ours(pid: int, workdir: Path) -> bool:
    """True if ``pid`` runs and was started with this instance's ceph.conf (not a reused PID)."""
    if not pid_is_running(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(workdir / "ceph.conf") in cmdline


def _ceph_conf(
    workdir: Path,
    *,
    fsid: str,
    mon_port: int,
    http_port: int,
    https_port: int | None,
    cert_pem: Path | None,
    key_pem: Path | None,
    store: str,
) -> str:
    w = workdir
    frontend = f"beast endpoint=127.0.0.1:{http_port}"
    if https_port is not None:
        frontend += (
            f" ssl_endpoint=127.0.0.1:{https_port}"
            f" ssl_certificate={cert_pem} ssl_private_key={key_pem}"
        )
    # Without tcp_nodelay every small GET waits ~44 ms for delayed ACKs.
    frontend += " tcp_nodelay=1"
    if store == "bluestore":
        store_conf = f"""\
osd_objectstore = bluestore
# A sparse file created by mkfs; pointing bluestore_block_path at osd_data/block makes mkfs
# fail with "too many levels of symbolic links", so the default path is kept.
bluestore_block_create = true
bluestore_block_size = {20 * 1024**3}
bluestore_fsck_on_mkfs = false
bluestore_cache_autotune = false
bluestore_cache_size = {256 * 1024**2}
# Closing the block file waits out one aio poll (250 ms by default), and mkfs plus boot close
# it about ten times: ~2.5 s of the start-up. Completions still wake the poller at once.
bdev_aio_poll_ms = 20
"""
    else:
        # A limit, not an allocation: the OSD holds in RAM only what is written.
        store_conf = f"""\
osd_objectstore = memstore
memstore_device_bytes = {16 * 1024**3}
"""
    return f"""\
# Written by servers/ceph_rgw.py: a throw-away single-node cluster on 127.0.0.1.
[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
mon_initial_members = a
public_addr = 127.0.0.1
public_network = 127.0.0.1/32
ms_bind_ipv6 = false
ms_bind_msgr1 = false

# No cephx on loopback. The crc modes are needed too: without them radosgw loops forever on
# "get_initial_auth_request returned -13".
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_client_mode = crc
ms_mon_cluster_mode = crc
ms_mon_service_mode = crc
ms_cluster_mode = crc
ms_service_mode = crc

# One OSD, one replica.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000

# Pools are created within a fraction of a second instead of ~8 s.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

# Every path inside the work directory, so that instances never share a file.
run_dir = {w}/run
crash_dir = {w}/crash
mon_data = {w}/mon/$cluster-$id
osd_data = {w}/osd/$cluster-$id
rgw_data = {w}/rgw/$cluster-$id
keyring = {w}/run/keyring
pid_file = {w}/run/$cluster-$name.pid
mon_cluster_log_file = {w}/log/$cluster.$channel.log

[mon]
log_file = {w}/log/$cluster-$name.log

[osd]
log_file = {w}/log/$cluster-$name.log
{store_conf}osd_memory_target = {1024**3}
# S3 user metadata names over ~80 characters otherwise fail with HTTP 500. The object store's
# own cap (256 bytes, RGW's "user.rgw.x-amz-meta-" prefix included) still stops names over 236.
osd_max_attr_name_len = 1024

[client.rgw.a]
log_file = {w}/log/$cluster-$name.log
# Log lines stamped with the real clock, not the 4 ms coarse one: the benchmark reads when
# each PUT finished from the access log.
log_coarse_timestamps = false
rgw_frontends = {frontend}
rgw_gc_obj_min_wait = 30
rgw_gc_processor_period = 30
"""


def _radosgw_version() -> str:
    """ "16.2.15" from "ceph version 16.2.15 (618f...) pacific (stable)"."""
    out = subprocess.run(
        ["radosgw", "--version"], capture_output=True, text=True, check=True
    ).stdout
    words = out.split()
    return words[2] if len(words) > 2 and words[:2] == ["ceph", "version"] else out.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servers.ceph_rgw", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start an instance and print the path of endpoint.json")
    p_start.add_argument("--workdir", type=Path, required=True)
    p_start.add_argument(
        "--port", type=int, default=None, help="plain-HTTP port (default: a free one)"
    )
    p_start.add_argument("--no-tls", dest="tls", action="store_false", help="serve plain HTTP only")
    p_start.add_argument("--store", choices=STORES, default="bluestore")
    p_start.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for S3 (default 60)"
    )
    p_stop = sub.add_parser("stop", help="stop the instance in --workdir")
    p_stop.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            # The daemons are meant to outlive this command; Python would warn on exit otherwise.
            warnings.filterwarnings("ignore", r"subprocess \d+ is still running", ResourceWarning)
            start(
                args.workdir, tls=args.tls, port=args.port, store=args.store, timeout_s=args.timeout
            )
            print(args.workdir.resolve() / ENDPOINT_FILE)
        else:
            stop(args.workdir)
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"ceph_rgw {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
