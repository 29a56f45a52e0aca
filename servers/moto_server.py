"""Start and stop a moto S3 server on 127.0.0.1: fast logic tests, no compatibility proof.

moto checks no signatures and no checksums, so what passes here says nothing about Ceph or
Swift; the interop suite runs against those.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from pathlib import Path

from ._common import (
    endpoint_info,
    free_port,
    read_endpoint,
    spawn,
    stop_pids,
    tail,
    wait_for_port,
    write_endpoint,
)


def start(workdir: Path, *, port: int | None = None, python: str = sys.executable) -> dict:
    """Start ``moto.server`` with ``python`` and write ``workdir/endpoint.json``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = workdir / "moto.log"
    proc = spawn([python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log_path)
    try:
        wait_for_port("127.0.0.1", port, 30.0, proc=proc)
        _wait_http(f"http://127.0.0.1:{port}/", 30.0)
    except Exception as exc:
        stop_pids([proc.pid], 5.0)
        raise RuntimeError(f"moto server did not start: {exc}\n{tail(log_path)}") from exc
    import moto

    info = endpoint_info(
        "moto",
        getattr(moto, "__version__", "?"),
        http_port=port,
        https_port=None,
        ca_bundle=None,
        access_key="testing",
        secret_key="testing",
        pids=[proc.pid],
        workdir=workdir,
    )
    write_endpoint(workdir, info)
    return info


def _wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(workdir: Path) -> None:
    stop_pids(read_endpoint(workdir)["pids"], 10.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers.moto_server")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    if args.action == "start":
        start(args.workdir, port=args.port)
        print(args.workdir / "endpoint.json")
    else:
        stop(args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
