"""Capture real ListObjects/ListObjectsV2 answers (and an error body) as listing seeds.

Starts a server from servers/ (``moto``, or ``ceph`` with ``--store memstore``), fills a
bucket with keys that need URL-encoding, and saves the raw XML of each answer under
``fuzz/corpus/listing/<server>-<what>.xml``. Run it again when a server's format matters:

    python fuzz/capture_listings.py moto
    python fuzz/capture_listings.py ceph
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import botocore.config  # noqa: E402
import botocore.exceptions  # noqa: E402

OUT = ROOT / "fuzz" / "corpus" / "listing"
KEYS = [
    "plain.txt",
    "dir/a b+c.txt",
    "dir/x%2Fy",
    "caf\u00e9/\u65e5\u672c\u8a9e.txt",
    "amp&lt<gt>.bin",
    "deep/er/key",
]


def _raw_answer(s3, op: str, params: dict) -> bytes:
    """The body of the answer as it came off the wire, before botocore parsed it."""
    bodies = []

    def keep(response_dict, **_):
        bodies.append(response_dict["body"])

    s3.meta.events.register("before-parse.s3.*", keep)
    try:
        getattr(s3, op)(**params)
    except botocore.exceptions.ClientError:
        pass  # the error body is a seed as well
    finally:
        s3.meta.events.unregister("before-parse.s3.*", keep)
    return bodies[-1]


def capture(server: str) -> list[Path]:
    from servers import ceph_rgw, moto_server

    module = moto_server if server == "moto" else ceph_rgw
    workdir = Path(tempfile.mkdtemp(prefix=f"s3s3-capture-{server}-"))
    info = (
        moto_server.start(workdir)
        if server == "moto"
        else ceph_rgw.start(workdir, tls=False, store="memstore")
    )
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=info["endpoint_url"],
            region_name=info["region"],
            aws_access_key_id=info["access_key"],
            aws_secret_access_key=info["secret_key"],
            config=botocore.config.Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="seeds")
        s3.create_bucket(Bucket="empty")
        for key in KEYS:
            s3.put_object(Bucket="seeds", Key=key, Body=key.encode())
        pages = {
            "v2-url": ("list_objects_v2", {"Bucket": "seeds", "EncodingType": "url"}),
            "v2-truncated": (
                "list_objects_v2",
                {"Bucket": "seeds", "EncodingType": "url", "MaxKeys": 2, "StartAfter": "a"},
            ),
            "v2-delimiter": (
                "list_objects_v2",
                {"Bucket": "seeds", "EncodingType": "url", "Delimiter": "/", "Prefix": "dir/"},
            ),
            "v2-empty": ("list_objects_v2", {"Bucket": "empty", "EncodingType": "url"}),
            "v1-url": ("list_objects", {"Bucket": "seeds", "EncodingType": "url"}),
            "v1-truncated": (
                "list_objects",
                {"Bucket": "seeds", "EncodingType": "url", "MaxKeys": 2, "Marker": "a"},
            ),
            "error-nosuchbucket": ("list_objects_v2", {"Bucket": "missing"}),
        }
        OUT.mkdir(parents=True, exist_ok=True)
        written = []
        for name, (op, params) in pages.items():
            path = OUT / f"{server}-{name}.xml"
            path.write_bytes(_raw_answer(s3, op, params))
            written.append(path)
        return written
    finally:
        module.stop(workdir)


if __name__ == "__main__":
    for path in capture(sys.argv[1] if len(sys.argv) > 1 else "moto"):
        print(path.relative_to(ROOT), path.stat().st_size, "bytes")
