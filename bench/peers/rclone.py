"""rclone from Debian, with two remotes on the server so that data streams through the host.

The remotes ``src`` and ``dst`` are written to ``bench/work/rclone.conf`` (owner-only).
Being two remotes, rclone never copies server-side between them: every object is downloaded
and uploaded, like the other tools. ``AWS_CA_BUNDLE`` is removed from its environment
(rclone fails with LoadCustomCABundleError when it is set).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..context import Context
from ..install import ensure_debian
from ..measure import tool_env
from ..paths import WORK_DIR


def ensure(ctx: Context) -> None:
    """Find or install rclone and write the two remotes."""
    ctx.rclone = ensure_debian("rclone", "rclone", log=ctx.log)
    if not ctx.rclone:
        ctx.note("rclone could not be installed: its rows are missing")
        return
    out = subprocess.run([ctx.rclone, "version"], capture_output=True, text=True).stdout
    ctx.versions["rclone"] = out.split("\n", 1)[0].replace("rclone ", "").strip()
    ctx.rclone_conf = write_conf(ctx)


def write_conf(ctx: Context) -> Path:
    path = WORK_DIR / "rclone.conf"
    sections = []
    for name, site in (("src", ctx.server.src), ("dst", ctx.server.dst)):
        sections.append(
            f"[{name}]\ntype = s3\nprovider = {'Ceph' if ctx.server.kind == 'ceph' else 'Other'}\n"
            f"access_key_id = {site.access_key}\nsecret_access_key = {site.secret_key}\n"
            f"endpoint = {site.url}\nregion = {site.region}\n"
        )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(sections))
    return path


def unavailable(ctx: Context) -> str | None:
    return None if ctx.rclone and ctx.rclone_conf else "rclone is not installed"


def _argv(ctx: Context, *args: str) -> list[str]:
    return [ctx.rclone, "--config", str(ctx.rclone_conf), *args]


def copy_default(ctx: Context, src: str, dst: str, work_dir: Path):
    return _argv(ctx, "copy", f"src:{src}", f"dst:{dst}"), tool_env(), work_dir


def copy_tuned(ctx: Context, src: str, dst: str, work_dir: Path):
    return (
        _argv(ctx, "copy", "--transfers", "64", "--checkers", "64", f"src:{src}", f"dst:{dst}"),
        tool_env(),
        work_dir,
    )


def copy_checksum(ctx: Context, src: str, dst: str, work_dir: Path):
    return _argv(ctx, "copy", "--checksum", f"src:{src}", f"dst:{dst}"), tool_env(), work_dir


def check(ctx: Context, src: str, dst: str, work_dir: Path):
    return _argv(ctx, "check", f"src:{src}", f"dst:{dst}"), tool_env(), work_dir
