"""The tools compared, one module each: how each is installed and how it is invoked.

A :class:`Copier` turns "copy bucket A to empty bucket B" into an :class:`Invocation` (argv,
environment, working directory). The harness times it with :mod:`bench.measure`.

- :mod:`.s3s3` — this repository's ``s3s3bucket`` and ``s3s3listen``;
- :mod:`.rclone` — Debian's rclone, two remotes (defaults, tuned, ``--checksum``, ``check``);
- :mod:`.s3s3_2015` — PyPI ``s3s3==0.1.10`` (boto 2.38) in a pyenv Python 3.7/3.6 venv;
- :mod:`.plain_boto3` — the copier itself, a standalone program;
- :mod:`.s5cmd` — the server's ceiling: raw PUT from local files, GET to tmpfs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..context import Context
from ..measure import tool_env
from . import rclone, s3s3, s3s3_2015


@dataclass
class Invocation:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


@dataclass(frozen=True)
class CopyJob:
    src_bucket: str
    dst_bucket: str
    work_dir: Path  # this run's own directory (configurations, logs)


@dataclass(frozen=True)
class Copier:
    """One tool with one set of options, as a row of the table."""

    name: str
    family: str
    build: Callable[[Context, CopyJob], Invocation]
    #: the most keys it copies (the 2015 s3s3 reads only the first listing page)
    max_keys: int | None = None
    available: Callable[[Context], str | None] = field(default=lambda ctx: None)


def _plain_boto3(ctx: Context, job: CopyJob) -> Invocation:
    site_src, site_dst = ctx.server.src, ctx.server.dst
    argv = [
        ctx.python,
        str(Path(__file__).with_name("plain_boto3.py")),
        "--src-url",
        site_src.url,
        "--src-bucket",
        job.src_bucket,
        "--dst-url",
        site_dst.url,
        "--dst-bucket",
        job.dst_bucket,
        "--threads",
        "32",
    ]
    env = tool_env(
        {"AWS_ACCESS_KEY_ID": site_src.access_key, "AWS_SECRET_ACCESS_KEY": site_src.secret_key}
    )
    return Invocation(argv, env, job.work_dir)


def _with_invocation(builder):
    def build(ctx: Context, job: CopyJob) -> Invocation:
        argv, env, cwd = builder(ctx, job.src_bucket, job.dst_bucket, job.work_dir)
        return Invocation(argv, env, cwd)

    return build


S3S3 = Copier(
    "s3s3", "s3s3", _with_invocation(s3s3.bucket_invocation), available=s3s3.bucket_unavailable
)
#: W2 again with the metrics on, for their cost (issue: under 3%).
S3S3_METRICS = Copier(
    "s3s3 (metrics on)",
    "s3s3",
    _with_invocation(s3s3.bucket_metrics_invocation),
    available=s3s3.bucket_unavailable,
)
RCLONE = Copier(
    "rclone (defaults)",
    "rclone",
    _with_invocation(rclone.copy_default),
    available=rclone.unavailable,
)
RCLONE_64 = Copier(
    "rclone --transfers 64 --checkers 64",
    "rclone",
    _with_invocation(rclone.copy_tuned),
    available=rclone.unavailable,
)
RCLONE_CHECKSUM = Copier(
    "rclone copy --checksum",
    "rclone",
    _with_invocation(rclone.copy_checksum),
    available=rclone.unavailable,
)
RCLONE_CHECK = Copier(
    "rclone check", "rclone", _with_invocation(rclone.check), available=rclone.unavailable
)
PLAIN_BOTO3 = Copier("plain boto3 (32 threads)", "plain-boto3", _plain_boto3)
S3S3_2015 = Copier(
    "s3s3 0.1.10 (2015)",
    "s3s3-2015",
    _with_invocation(s3s3_2015.bucket_invocation),
    max_keys=1000,
    available=s3s3_2015.unavailable,
)

#: Into an empty destination (W1, W2, W3, W5).
COPIERS = (S3S3, RCLONE, RCLONE_64, PLAIN_BOTO3, S3S3_2015)
#: W2: the same, and s3s3 with its metrics on.
W2_COPIERS = (*COPIERS[:1], S3S3_METRICS, *COPIERS[1:])
#: The no-op re-run (W4).
NOOP = (S3S3, RCLONE, RCLONE_CHECKSUM, RCLONE_CHECK, PLAIN_BOTO3, S3S3_2015)

__all__ = ["COPIERS", "NOOP", "W2_COPIERS", "Copier", "CopyJob", "Invocation"]
