"""Helpers shared by the server launchers: ports, TLS material, daemons, endpoint.json.

Every launcher writes ``endpoint.json`` in its work directory; tests and benchmarks read it
to find the URL, credentials and the PIDs to stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ENDPOINT_FILE = "endpoint.json"

# Daemons started by this process, by PID. Holding their Popen keeps Python from warning that
# a daemon "is still running" when the launcher returns, and lets stop_pids reap them.
_spawned: dict[int, subprocess.Popen] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports; the sockets stay open together so none repeats."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def wait_for_port(
    host: str,
    port: int,
    timeout_s: float,
    *,
    proc: subprocess.Popen | None = None,
) -> None:
    """Return once ``host:port`` accepts a connection; raise TimeoutError otherwise.

    With ``proc``, give up at once (RuntimeError) if that process exits meanwhile, rather
    than waiting out the timeout for a daemon that already died.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args[0]} exited with status {proc.returncode} before {host}:{port} opened"
            )
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} not accepting connections after {timeout_s} s")
        time.sleep(0.05)


def make_self_signed_ca(directory: Path) -> tuple[Path, Path, Path]:
    """Create a CA and a server certificate for 127.0.0.1 and localhost, with ``openssl``.

    Returns ``(ca_pem, cert_pem, key_pem)``. Clients verify with ``ca_pem``. The key and
    identifier extensions are there because strict verifiers (Python 3.13's
    VERIFY_X509_STRICT) reject certificates without them.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    key_pem, csr, cert_pem = (
        directory / "server.key",
        directory / "server.csr",
        directory / "server.pem",
    )
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid, issuer\n"
    )
    # EC keys: generated in milliseconds, and every TLS client in use accepts P-256.
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *newkey,
        "-keyout",
        ca_key,
        "-out",
        ca_pem,
        "-days",
        "3650",
        "-subj",
        "/CN=s3s3 test CA",
        "-addext",
        "basicConstraints = critical, CA:TRUE",
        "-addext",
        "keyUsage = critical, keyCertSign, cRLSign",
    )
    _openssl("req", *newkey, "-keyout", key_pem, "-out", csr, "-subj", "/CN=127.0.0.1")
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca_pem,
        "-CAkey",
        ca_key,
        "-set_serial",
        str(int.from_bytes(os.urandom(8), "big")),
        "-days",
        "3650",
        "-extfile",
        ext,
        "-out",
        cert_pem,
    )
    return ca_pem, cert_pem, key_pem


def _openssl(*args: object) -> None:
    argv = ["openssl", *map(str, args)]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])} failed ({result.returncode}): {result.stderr.strip()}"
        )


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a daemon in its own session (so its whole group can be signalled), output to ``log_path``."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _spawned[proc.pid] = proc
    return proc


def pid_is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie.

    A daemon left behind by a launcher that exited is reparented to PID 1, which in some
    containers reaps it only seconds later: its zombie would otherwise look alive.
    """
    proc = _spawned.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        del _spawned[pid]
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _kill_zero(pid)
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _kill_zero(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        # Not a group leader (or the group is gone): signal the process itself.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_pids(pids: list[int], timeout_s: float) -> list[int]:
    """SIGTERM the process groups of ``pids``, SIGKILL what is left after ``timeout_s``.

    Returns once every PID is gone; returns the PIDs that needed SIGKILL.
    """
    alive = [pid for pid in pids if pid_is_running(pid)]
    for pid in alive:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if pid_is_running(pid)]
    killed = list(alive)
    for pid in killed:
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while alive:
        alive = [pid for pid in alive if pid_is_running(pid)]
        if alive and time.monotonic() >= deadline:
            raise RuntimeError(f"processes {alive} still running after SIGKILL")
        time.sleep(0.05)
    return killed


def endpoint_info(
    name: str,
    version: str,
    *,
    http_port: int,
    https_port: int | None,
    ca_bundle: Path | None,
    access_key: str,
    secret_key: str,
    pids: list[int],
    workdir: Path,
    region: str = "us-east-1",
) -> dict:
    """The endpoint.json record every launcher writes, in one shape."""
    return {
        "name": name,
        "version": version,
        "endpoint_url": f"http://127.0.0.1:{http_port}",
        "https_url": f"https://127.0.0.1:{https_port}" if https_port else None,
        "ca_bundle": str(ca_bundle) if ca_bundle else None,
        "access_key": access_key,
        "secret_key": secret_key,
        "region": region,
        "pids": pids,
        "workdir": str(workdir),
    }


def write_endpoint(workdir: Path, info: dict) -> Path:
    """Write ``info`` to ``workdir/endpoint.json`` (owner-only: it holds the secret key)."""
    path = Path(workdir) / ENDPOINT_FILE
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_endpoint(workdir: Path) -> dict:
    """The dict a launcher wrote to ``workdir/endpoint.json``."""
    return json.loads((Path(workdir) / ENDPOINT_FILE).read_text())


def running_pids(workdir: Path, is_ours) -> list[int] | None:
    """The recorded PIDs of the instance in ``workdir`` that still run as its own
    (``is_ours(pid, workdir)`` tells a reused PID apart); None if none was recorded there."""
    try:
        info = read_endpoint(workdir)
    except FileNotFoundError:
        return None
    return [pid for pid in info.get("pids", []) if is_ours(pid, workdir)]


def clear_workdir(workdir: Path, state_dirs: tuple[str, ...], is_ours, error: type) -> None:
    """Refuse a work directory whose instance still runs (raising ``error``); remove what a
    previous one left: its endpoint file and ``state_dirs``."""
    workdir.mkdir(parents=True, exist_ok=True)
    running = running_pids(workdir, is_ours)
    if running:
        raise error(f"an instance is still running in {workdir} (PIDs {running}); stop it first")
    (workdir / ENDPOINT_FILE).unlink(missing_ok=True)
    for name in state_dirs:
        shutil.rmtree(workdir / name, ignore_errors=True)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
