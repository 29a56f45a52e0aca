"""The source data sets, the destination buckets, and the verification of every copy.

Each data set has its own source bucket (the 2015 s3s3 copies whole buckets, it has no
prefix option) and keys under ``s3s3bench/<name>/``, random bytes, so every ETag differs.
Small objects are written to tmpfs and uploaded with s5cmd (boto3 threads when s5cmd is
missing); large ones are uploaded as single PUTs, so their source ETag is their md5.

:func:`verify` checks a destination against the data set after every run: every expected
key present, sizes equal, and the bytes' md5: the ETag for small objects (a single PUT's
ETag is the md5 the server computed over what it received; a multipart ETag is not, and
such objects are read back), and always the md5 of the bytes read back for large objects.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .context import Context
from .measure import tool_env
from .paths import SHM_DIR

KEY_ROOT = "s3s3bench"
#: Objects at least this large are verified by reading their bytes back.
HASH_OVER_BYTES = 8 * 1024**2


@dataclass
class Dataset:
    name: str
    bucket: str
    objects: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (size, md5)
    local_dir: Path | None = None

    @property
    def prefix(self) -> str:
        return f"{KEY_ROOT}/{self.name}/"

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.objects.values())

    def first_keys(self, n: int) -> list[str]:
        """The first ``n`` keys in S3's order (UTF-8 bytes), as one listing page shows them."""
        return sorted(self.objects, key=lambda k: k.encode())[:n]


def create_bucket(ctx: Context, name: str, side: str = "dst") -> None:
    client = ctx.server.client(side)
    try:
        client.create_bucket(Bucket=name)
    except client.exceptions.BucketAlreadyOwnedByYou:
        empty_bucket(ctx, name, side=side)


def empty_bucket(ctx: Context, name: str, *, side: str = "dst", remove: bool = False) -> None:
    """Delete every object (in batches of 1,000), and the bucket itself with ``remove``."""
    client = ctx.server.client(side)
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        if remove:
            client.delete_bucket(Bucket=name)
    except client.exceptions.NoSuchBucket:
        pass


def make_small(ctx: Context, name: str, count: int, size: int) -> Dataset:
    """``count`` random objects of ``size`` bytes in bucket ``src-<name>``."""
    ds = Dataset(name=name, bucket=f"src-{name}", local_dir=SHM_DIR / name)
    shutil.rmtree(ds.local_dir, ignore_errors=True)
    ds.local_dir.mkdir(parents=True)
    for i in range(count):
        body = os.urandom(size)
        leaf = f"{i:07d}"
        (ds.local_dir / leaf).write_bytes(body)
        ds.objects[ds.prefix + leaf] = (size, hashlib.md5(body).hexdigest())
    create_bucket(ctx, ds.bucket, side="src")
    if ctx.s5cmd:
        site = ctx.server.src
        env = tool_env(
            {
                "AWS_ACCESS_KEY_ID": site.access_key,
                "AWS_SECRET_ACCESS_KEY": site.secret_key,
                "AWS_REGION": site.region,
            }
        )
        result = subprocess.run(
            [
                ctx.s5cmd,
                "--endpoint-url",
                site.url,
                "cp",
                f"{ds.local_dir}/*",
                f"s3://{ds.bucket}/{ds.prefix}",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"uploading {name} with s5cmd failed: {result.stderr[-1000:]}")
    else:
        client = ctx.server.client("src")
        with ThreadPoolExecutor(32) as pool:
            list(
                pool.map(
                    lambda k: client.put_object(
                        Bucket=ds.bucket,
                        Key=k,
                        Body=(ds.local_dir / k.rsplit("/", 1)[1]).read_bytes(),
                    ),
                    ds.objects,
                )
            )
    return ds


def make_large(ctx: Context, name: str, count: int, size: int, *, keep_files: bool) -> Dataset:
    """``count`` random objects of ``size`` bytes, each uploaded as one PUT (md5 ETag)."""
    ds = Dataset(name=name, bucket=f"src-{name}", local_dir=SHM_DIR / name)
    shutil.rmtree(ds.local_dir, ignore_errors=True)
    ds.local_dir.mkdir(parents=True)
    create_bucket(ctx, ds.bucket, side="src")
    client = ctx.server.client("src")
    for i in range(count):
        leaf = f"{i:07d}"
        path = ds.local_dir / leaf
        md5 = hashlib.md5()
        with open(path, "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 8 * 1024**2))
                md5.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        key = ds.prefix + leaf
        with open(path, "rb") as f:
            client.put_object(Bucket=ds.bucket, Key=key, Body=f, ContentLength=size)
        ds.objects[key] = (size, md5.hexdigest())
        if not keep_files:
            path.unlink()
    return ds


@dataclass
class Verification:
    ok: bool
    checked: int
    problems: list[str]

    def summary(self) -> str:
        if self.ok:
            return f"verified {self.checked} objects"
        return f"{len(self.problems)} problems: " + "; ".join(self.problems[:5])


def verify(
    ctx: Context, ds: Dataset, dst_bucket: str, *, keys: list[str] | None = None
) -> Verification:
    """Check ``dst_bucket`` holds ``keys`` (default: all) of ``ds`` with the right bytes."""
    client = ctx.server.client("dst")
    wanted = list(ds.objects) if keys is None else keys
    found: dict[str, tuple[int, str]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=dst_bucket):
        for o in page.get("Contents", ()):
            found[o["Key"]] = (o["Size"], o["ETag"].strip('"'))
    problems: list[str] = []
    to_read: list[str] = []
    for key in wanted:
        size, md5 = ds.objects[key]
        if key not in found:
            problems.append(f"missing {key}")
            continue
        got_size, etag = found[key]
        if got_size != size:
            problems.append(f"{key}: size {got_size} != {size}")
        elif size >= HASH_OVER_BYTES or "-" in etag or len(etag) != 32:
            to_read.append(key)
        elif etag != md5:
            problems.append(f"{key}: ETag {etag} != md5 {md5}")

    def read_md5(key: str) -> str:
        body = client.get_object(Bucket=dst_bucket, Key=key)["Body"]
        h = hashlib.md5()
        for chunk in iter(lambda: body.read(1024**2), b""):
            h.update(chunk)
        return h.hexdigest()

    with ThreadPoolExecutor(4) as pool:
        for key, md5 in zip(to_read, pool.map(read_md5, to_read), strict=True):
            if md5 != ds.objects[key][1]:
                problems.append(
                    f"{key}: corrupted on transfer: md5 differs "
                    f"src({ds.objects[key][1]}) vs dst({md5})"
                )
    return Verification(ok=not problems, checked=len(wanted), problems=problems)


def clear_local() -> None:
    shutil.rmtree(SHM_DIR, ignore_errors=True)
