"""The 2015 s3s3 (PyPI ``s3s3==0.1.10``, boto 2.38, redis-py 2.10) as its users run it.

It lives in ``bench/work/venv-s3s3-2015``, made from pyenv's Python 3.7 (or 3.6): boto 2 does
not import on the Pythons s3s3 supports now. What it takes to run it at all (BASELINES.md):

- no ``port`` key in the INI (``%d format: a number is required, not str``), so it only
  reaches port 80: :mod:`bench.servers` puts the RGW there, or forwards port 80 to it;
- a copy of the INI sits in its working directory as ``s3s3.ini``: it reads its config at
  import from a fixed search path, and ``--config`` alone leaves ``redis`` unimported;
- it copies at most 1,000 keys (the first listing page), and exits 0 having done so;
- it talks to the Redis on 127.0.0.1:6379 (hard-coded), listens on channel ``backup``
  (hard-coded), and SETs a marker key ``backup=>KEY`` after each copy. The harness deletes
  the markers of its own keys afterwards (:func:`delete_markers`).
- it logs to ``/var/log/s3s3/s3s3.log``, or ``/tmp/s3s3.log`` when that cannot be opened.
"""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

from ..context import Context
from ..install import InstallError, ensure_venv
from ..measure import tool_env
from ..paths import WORK_DIR

VENV = WORK_DIR / "venv-s3s3-2015"
PACKAGE = "s3s3==0.1.10"
CHANNEL = "backup"


def find_python() -> str | None:
    """pyenv's newest 3.7, else 3.6."""
    roots = [os.environ.get("PYENV_ROOT") or "", os.path.expanduser("~/.pyenv")]
    for minor in ("3.7", "3.6"):
        for root in filter(None, roots):
            found = sorted(
                glob.glob(f"{root}/versions/{minor}.*/bin/python"),
                key=lambda p: [int(x) for x in p.split("/")[-3].split(".") if x.isdigit()],
            )
            if found:
                return found[-1]
    return None


def ensure(ctx: Context) -> None:
    python = find_python()
    if python is None:
        ctx.note("no pyenv Python 3.7 or 3.6: the 2015 s3s3 cannot run")
        return
    try:
        ctx.legacy_bin = ensure_venv(VENV, python, (PACKAGE,), log=ctx.log)
    except InstallError as exc:
        ctx.note(f"the 2015 s3s3 could not be installed: {exc}")
        return
    out = subprocess.run(
        [
            str(ctx.legacy_bin / "python"),
            "-c",
            "import sys, boto; print(sys.version.split()[0], boto.__version__)",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    if len(out) == 2:
        ctx.versions["s3s3 0.1.10"] = f"Python {out[0]}, boto {out[1]}"


def unavailable(ctx: Context) -> str | None:
    if ctx.legacy_bin is None:
        return "not installed"
    if ctx.server.legacy_host is None:
        return "it can only reach port 80, which is not available"
    return None


def write_workdir(ctx: Context, work_dir: Path, src: str, dst: str) -> Path:
    """``work_dir/s3s3.ini`` without a port: it must sit in the working directory."""
    host = ctx.server.legacy_host
    sections = []
    for name, site, bucket in (
        ("source", ctx.server.src, src),
        ("destination", ctx.server.dst, dst),
    ):
        sections.append(
            f"[{name}]\naws_access_key_id = {site.access_key}\n"
            f"aws_secret_access_key = {site.secret_key}\nbucket_name = {bucket}\n"
            f"host = {host}\nis_secure = False\ncalling_format = OrdinaryCallingFormat\n"
            f"verify_md5 = False\n"
        )
    sections.append("[pubsub]\nredis = True\nsns = False\n")
    path = work_dir / "s3s3.ini"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(sections))
    return path


def _env() -> dict[str, str]:
    # boto 2 would read credentials from these; the INI must be what counts.
    return tool_env({"BOTO_CONFIG": "/dev/null"})


def bucket_invocation(ctx: Context, src: str, dst: str, work_dir: Path):
    write_workdir(ctx, work_dir, src, dst)
    return [str(ctx.legacy_bin / "s3s3bucket"), "--config", "s3s3.ini"], _env(), work_dir


def listen_invocation(ctx: Context, src: str, dst: str, work_dir: Path):
    write_workdir(ctx, work_dir, src, dst)
    return [str(ctx.legacy_bin / "s3s3listen"), "--config", "s3s3.ini"], _env(), work_dir


def delete_markers(redis_client, key_prefix: str) -> int:
    """Delete the ``backup=>KEY`` markers it set for keys under ``key_prefix`` (ours only)."""
    names = list(redis_client.scan_iter(match=f"{CHANNEL}=>{key_prefix}*", count=1000))
    for i in range(0, len(names), 500):
        redis_client.delete(*names[i : i + 500])
    return len(names)
