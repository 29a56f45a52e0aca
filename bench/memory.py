"""``python -m bench.memory``: peak memory of one large copy, for both data paths.

A copy streams: the bytes go from the source's GET into the destination's PUT (or its
parts) a chunk at a time, so the copier's memory should not grow with the object. This
measures it rather than asserting it: a 400 MiB object (``--mib``) is copied in a fresh
process for each way s3s3 sends it (a single streamed PUT, multipart in 16 MiB parts) and
for each data path (``raw``, the default, and ``botocore``), and the process's peak RSS
(``VmHWM``: ``ru_maxrss`` would keep the parent's peak across fork and exec) is reported
with its ratio to the object's size.

The servers are two moto processes on free ports (moto holds the objects in its own
memory, not the copier's). Run from the repository root:

    python -m bench.memory [--mib 400]

It prints one line per case and a markdown table; nothing is asserted and nothing written.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .paths import REPO_ROOT

MiB = 1024 * 1024
PART_BYTES = 16 * MiB

#: Run in a fresh process: copy the object once, then report VmHWM.
_COPIER = """
import json, sys
sys.path.insert(0, sys.argv[2])
from s3s3.config import EndpointConfig
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import copy_object
spec = json.loads(sys.argv[1])
def endpoint(info, bucket, name, **extra):
    return Endpoint(EndpointConfig(
        name=name, bucket=bucket, endpoint_url=info["endpoint_url"], region=info["region"],
        access_key=info["access_key"], secret_key=info["secret_key"],
        data_path=spec["data_path"], **extra))
src = endpoint(spec["src"], spec["src_bucket"], "source")
dst = endpoint(spec["dst"], spec["dst_bucket"], "dest",
               multipart_threshold_bytes=spec["threshold"],
               multipart_chunksize_bytes=spec["part_bytes"])
r = copy_object(src, dst, "large", force=True)
status = open("/proc/self/status").read()
peak_kib = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({"size": r.size, "parts": r.parts, "peak_mib": peak_kib / 1024}))
"""

CASES = [
    ("single streamed PUT", 0),
    ("multipart, 16 MiB parts", 16 * MiB),
]


def _client(info: dict):
    import boto3
    import botocore.config

    return boto3.client(
        "s3",
        endpoint_url=info["endpoint_url"],
        aws_access_key_id=info["access_key"],
        aws_secret_access_key=info["secret_key"],
        region_name=info["region"],
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _upload_source(client, bucket: str, size: int) -> None:
    """``size`` bytes as a multipart object (no single request holds it all)."""
    chunk = b"m" * MiB
    upload = client.create_multipart_upload(Bucket=bucket, Key="large")["UploadId"]
    parts, left, number = [], size, 0
    while left > 0:
        number += 1
        length = min(100 * MiB, left)
        etag = client.upload_part(
            Bucket=bucket,
            Key="large",
            UploadId=upload,
            PartNumber=number,
            Body=chunk * (length // MiB) + b"m" * (length % MiB),
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        left -= length
    client.complete_multipart_upload(
        Bucket=bucket, Key="large", UploadId=upload, MultipartUpload={"Parts": parts}
    )


def measure(size: int, *, log=print) -> list[dict]:
    """Copy ``size`` bytes once per (case, data path), each in a fresh process."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from servers import moto_server

    rows = []
    with tempfile.TemporaryDirectory(prefix="s3s3-memory-") as tmp:
        infos = []
        try:
            for side in ("src", "dst"):
                infos.append(moto_server.start(Path(tmp) / side))
            src_info, dst_info = infos
            src, dst = _client(src_info), _client(dst_info)
            src.create_bucket(Bucket="memory-src")
            _upload_source(src, "memory-src", size)
            for number, (case, threshold) in enumerate(CASES):
                for data_path in ("raw", "botocore"):
                    bucket = f"memory-dst-{number}-{data_path}"
                    dst.create_bucket(Bucket=bucket)
                    spec = {
                        "src": src_info,
                        "dst": dst_info,
                        "src_bucket": "memory-src",
                        "dst_bucket": bucket,
                        "threshold": threshold,
                        "part_bytes": PART_BYTES,
                        "data_path": data_path,
                    }
                    out = subprocess.run(
                        [sys.executable, "-c", _COPIER, json.dumps(spec), str(REPO_ROOT)],
                        capture_output=True,
                        text=True,
                        timeout=600,
                    )
                    if out.returncode != 0:
                        raise RuntimeError(f"{case} ({data_path}) failed:\n{out.stderr[-3000:]}")
                    report = json.loads(out.stdout)
                    row = {
                        "case": case,
                        "data_path": data_path,
                        "size_mib": report["size"] / MiB,
                        "parts": report["parts"],
                        "peak_mib": report["peak_mib"],
                        "ratio": report["peak_mib"] * MiB / report["size"],
                    }
                    rows.append(row)
                    log(
                        f"{case:26s} data_path={data_path:8s} peak RSS {row['peak_mib']:7.1f} "
                        f"MiB = {row['ratio']:.3f} x the object ({row['size_mib']:.0f} MiB, "
                        f"{row['parts']} parts)"
                    )
        finally:
            for info in infos:
                moto_server.stop(Path(info["workdir"]))
    return rows


def render(rows: list[dict]) -> str:
    lines = [
        "| copy | data_path | object MiB | parts | peak RSS MiB (VmHWM) | peak / object |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['data_path']} | {r['size_mib']:.0f} | {r['parts']} | "
            f"{r['peak_mib']:.1f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--mib", type=int, default=400, help="object size in MiB (400)")
    args = parser.parse_args(argv)
    print(render(measure(args.mib * MiB)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
