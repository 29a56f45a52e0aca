"""See s3s3 replicate, on servers this script starts and stops itself.

Starts two S3 servers (moto, on free ports), writes an s3s3.ini for them, fills the source
bucket, runs ``s3s3bucket`` once, then starts ``s3s3listen`` in reliable stream mode and
announces a new key with ``s3s3publish``; prints each step and what the destination holds.
Needs Redis at 127.0.0.1:6379 (``make demo`` starts one if none answers).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import botocore.config
import redis

from servers import moto_server
from servers._common import stop_pids

INI = """\
[source]
endpoint_url = {src[endpoint_url]}
aws_access_key_id = {src[access_key]}
aws_secret_access_key = {src[secret_key]}
bucket_name = photos

[destination]
endpoint_url = {dst[endpoint_url]}
aws_access_key_id = {dst[access_key]}
aws_secret_access_key = {dst[secret_key]}
bucket_name = photos-backup

[pubsub]
redis = True
sns = False
url = redis://127.0.0.1:6379/0
mode = stream
channel = {run}

[listen]
workers = 8
grace = 5

[bucket]
lock = local
lock_dir = {workdir}
"""


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def script(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"s3s3.scripts.{name}", *args]


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="s3s3-demo-"))
    channel = f"demo-{uuid.uuid4().hex[:8]}"
    servers = []
    listener = None
    try:
        step("starting two S3 servers")
        src = moto_server.start(workdir / "src")
        dst = moto_server.start(workdir / "dst")
        servers = [src, dst]
        print(f"source      {src['endpoint_url']}  bucket photos")
        print(f"destination {dst['endpoint_url']}  bucket photos-backup")
        ini = workdir / "s3s3.ini"
        ini.write_text(INI.format(src=src, dst=dst, run=channel, workdir=workdir))
        s3_src, s3_dst = raw_client(src), raw_client(dst)
        s3_src.create_bucket(Bucket="photos")
        s3_dst.create_bucket(Bucket="photos-backup")
        for i in range(25):
            s3_src.put_object(
                Bucket="photos",
                Key=f"2015/cat {i:02}.png",
                Body=b"png" * i,
                ContentType="image/png",
            )

        step("s3s3bucket: bring the destination in step with 25 source objects")
        subprocess.run(script("bucket", "--config", str(ini)), check=True)
        print(f"destination holds {count(s3_dst, 'photos-backup')} objects")

        step("s3s3listen (stream mode) and s3s3publish: replicate a new key in real time")
        listener = subprocess.Popen(script("listen", "--config", str(ini)))
        s3_src.put_object(
            Bucket="photos", Key="2026/new kitten.png", Body=b"meow", ContentType="image/png"
        )
        subprocess.run(script("publish", "--config", str(ini), "2026/new kitten.png"), check=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                head = s3_dst.head_object(Bucket="photos-backup", Key="2026/new kitten.png")
                print(
                    f"replicated: 2026/new kitten.png ({head['ContentLength']} bytes, "
                    f"{head['ContentType']})"
                )
                break
            except s3_dst.exceptions.ClientError:
                time.sleep(0.1)
        else:
            print("the new key did not arrive within 30 s", file=sys.stderr)
            return 1
        print(f"destination holds {count(s3_dst, 'photos-backup')} objects")
        return 0
    finally:
        if listener is not None:
            listener.terminate()
            listener.wait(timeout=30)
        for info in servers:
            stop_pids(info["pids"], 10.0)
        # The demo's stream and dead-letter keys share the channel's hash tag.
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        client.delete(*client.keys(f"s3s3:{{{channel}}}:*") or ["-"])
        client.close()


def raw_client(info: dict):
    """A plain boto3 client, to fill and inspect the demo's buckets."""
    return boto3.client(
        "s3",
        endpoint_url=info["endpoint_url"],
        region_name=info["region"],
        aws_access_key_id=info["access_key"],
        aws_secret_access_key=info["secret_key"],
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )


def count(client, bucket: str) -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(page.get("KeyCount", 0) for page in pages)


if __name__ == "__main__":
    sys.exit(main())
