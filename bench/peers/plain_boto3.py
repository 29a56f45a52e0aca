"""The "what you'd write yourself" copier: plain boto3 and a thread pool of 32.

It lists both buckets (ListObjectsV2), copies every key missing at the destination or whose
size or ETag differs, each as one streamed GET -> PUT (the GET body is handed to the PUT
unread), and prints a summary line. Payload signing is disabled and checksums are computed
only when required: over plain HTTP, boto3 would otherwise hash the body for the signature
and fail to seek a streaming body (BASELINES.md).

This file is run as a program by the harness and imports nothing from it, so its CPU and
memory are the copier's own::

    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... python plain_boto3.py \\
        --src-url http://127.0.0.1:80 --src-bucket src --dst-url ... --dst-bucket dst
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import boto3
from botocore.config import Config


def make_client(url: str, *, pool: int):
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=pool,
        ),
    )


def list_bucket(client, bucket: str) -> dict[str, tuple[int, str]]:
    """key -> (size, ETag) for every object."""
    found: dict[str, tuple[int, str]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            found[item["Key"]] = (item["Size"], item["ETag"])
    return found


def copy_one(src, dst, src_bucket: str, dst_bucket: str, key: str) -> int:
    obj = src.get_object(Bucket=src_bucket, Key=key)
    extra = {"ContentType": obj["ContentType"]} if obj.get("ContentType") else {}
    dst.put_object(
        Bucket=dst_bucket,
        Key=key,
        Body=obj["Body"],
        ContentLength=obj["ContentLength"],
        Metadata=obj.get("Metadata", {}),
        **extra,
    )
    return obj["ContentLength"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src-url", required=True)
    p.add_argument("--src-bucket", required=True)
    p.add_argument("--dst-url", required=True)
    p.add_argument("--dst-bucket", required=True)
    p.add_argument("--threads", type=int, default=32)
    args = p.parse_args(argv)
    began = time.monotonic()
    src = make_client(args.src_url, pool=args.threads)
    dst = make_client(args.dst_url, pool=args.threads)
    with ThreadPoolExecutor(2) as pool:  # both listings at once
        src_listing, dst_listing = pool.map(
            list_bucket, (src, dst), (args.src_bucket, args.dst_bucket)
        )
    todo = [k for k, v in src_listing.items() if dst_listing.get(k) != v]
    copied = failed = nbytes = 0
    with ThreadPoolExecutor(args.threads) as pool:
        futures = {
            pool.submit(copy_one, src, dst, args.src_bucket, args.dst_bucket, k): k for k in todo
        }
        for future in as_completed(futures):
            try:
                nbytes += future.result()
                copied += 1
            except Exception as exc:  # counted and reported; the others go on
                failed += 1
                print(f"failed {futures[future]!r}: {exc}", file=sys.stderr)
    print(
        f"listed {len(src_listing)} copied {copied} skipped {len(src_listing) - len(todo)} "
        f"failed {failed} bytes {nbytes} in {time.monotonic() - began:.2f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
