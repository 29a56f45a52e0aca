"""This repository's s3s3: ``s3s3bucket`` and ``s3s3listen``, run as users run them.

Each run gets its own INI (source, one destination, ``[pubsub]`` on the shared Redis under
this run's own channel and stream names, the bucket lock in a local file under
``bench/work`` so that a test run elsewhere can never hold it). Everything else is left at
its default. The scripts run as ``python -m s3s3.scripts.bucket`` / ``.listen`` from the
repository (``PYTHONPATH`` = the repository root), so the code measured is the code here.

``--s3s3-bucket-cmd`` and ``--s3s3-listen-cmd`` replace the command, with ``{python}`` and
``{config}`` substituted: a way to plug in another build.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from ..context import Context
from ..measure import tool_env
from ..paths import REPO_ROOT, WORK_DIR


def write_ini(
    ctx: Context,
    path: Path,
    *,
    src_bucket: str,
    dst_buckets: list[str],
    mode: str = "pubsub",
    extra: str = "",
    dest_lines: tuple[str, ...] = (),
) -> Path:
    """An INI for one run (owner-only: it holds the keys); ``dest_lines`` go into every
    destination section."""
    server = ctx.server
    lines = []

    def endpoint(section: str, site, bucket: str, more: tuple[str, ...] = ()) -> None:
        lines.extend(
            [
                f"[{section}]",
                f"aws_access_key_id = {site.access_key}",
                f"aws_secret_access_key = {site.secret_key}",
                f"bucket_name = {bucket}",
                f"endpoint_url = {site.url}",
                f"region = {site.region}",
                *more,
                "",
            ]
        )

    endpoint("source", server.src, src_bucket)
    for i, bucket in enumerate(dst_buckets):
        section = "destination" if i == 0 else f"destination{i + 1}"
        endpoint(section, server.dst, bucket, dest_lines)
    lock_dir = WORK_DIR / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lines += [
        "[pubsub]",
        "redis = True",
        "sns = False",
        f"url = {ctx.redis_url}",
        f"channel = {ctx.tag}",
        f"mode = {mode}",
        "",
        "[bucket]",
        "lock = local",
        f"lock_dir = {lock_dir}",
        "",
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + extra)
    return path


def _env() -> dict[str, str]:
    pythonpath = os.environ.get("PYTHONPATH")
    return tool_env(
        {"PYTHONPATH": str(REPO_ROOT) + (os.pathsep + pythonpath if pythonpath else "")}
    )


def _command(ctx: Context, template: str | None, module: str, config: Path) -> list[str]:
    if template:
        return shlex.split(template.format(python=ctx.python, config=str(config)))
    return [ctx.python, "-m", module, "--config", str(config)]


def bucket_invocation(ctx: Context, src: str, dst: str, work_dir: Path):
    config = write_ini(ctx, work_dir / "bench.ini", src_bucket=src, dst_buckets=[dst])
    return _command(ctx, ctx.s3s3_bucket_cmd, "s3s3.scripts.bucket", config), _env(), work_dir


def bucket_metrics_invocation(ctx: Context, src: str, dst: str, work_dir: Path):
    """``s3s3bucket`` writing its textfile metrics at the end of the run."""
    extra = f"\n[metrics]\ntextfile = {work_dir / 's3s3bucket.prom'}\n"
    config = write_ini(ctx, work_dir / "bench.ini", src_bucket=src, dst_buckets=[dst], extra=extra)
    return _command(ctx, ctx.s3s3_bucket_cmd, "s3s3.scripts.bucket", config), _env(), work_dir


def listen_invocation(
    ctx: Context, src: str, dst: str, work_dir: Path, *, mode: str, extra: str = ""
):
    config = write_ini(
        ctx, work_dir / "bench.ini", src_bucket=src, dst_buckets=[dst], mode=mode, extra=extra
    )
    return _command(ctx, ctx.s3s3_listen_cmd, "s3s3.scripts.listen", config), _env(), work_dir


def _works(ctx: Context, template: str | None, module: str) -> str | None:
    argv = (
        shlex.split(template.format(python=ctx.python, config="/dev/null")) + ["--help"]
        if template
        else [ctx.python, "-m", module, "--help"]
    )
    result = subprocess.run(argv, capture_output=True, text=True, env=_env(), cwd=WORK_DIR)
    if result.returncode != 0:
        return f"{' '.join(argv)} fails: {(result.stderr or result.stdout).strip()[-300:]}"
    return None


def bucket_unavailable(ctx: Context) -> str | None:
    return _cached(ctx, "bucket", lambda: _works(ctx, ctx.s3s3_bucket_cmd, "s3s3.scripts.bucket"))


def listen_unavailable(ctx: Context) -> str | None:
    return _cached(ctx, "listen", lambda: _works(ctx, ctx.s3s3_listen_cmd, "s3s3.scripts.listen"))


_checked: dict[tuple[int, str], str | None] = {}


def _cached(ctx: Context, what: str, check) -> str | None:
    key = (id(ctx), what)
    if key not in _checked:
        _checked[key] = check()
    return _checked[key]


def version(ctx: Context) -> str:
    result = subprocess.run(
        [
            ctx.python,
            "-c",
            "import s3s3, boto3, botocore; "
            "print(getattr(s3s3, '__version__', '?'), boto3.__version__, "
            "botocore.__version__)",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=WORK_DIR,
    )
    return result.stdout.strip()
