"""Fuzz the lean store's listing parsers (parse_listing, parse_uploads): only ResponseError
may escape.

Each input is parsed as a ListObjects (V1) and a ListObjectsV2 answer (each decodes its own
fields), as a ListMultipartUploads answer (s3s3.store.lean.parse_uploads), and as an S3 error
body, whose reader must never raise at all: it runs while an error is being reported.

    python fuzz/fuzz_listing.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atheris  # noqa: E402
from _harness import expect, main  # noqa: E402

with atheris.instrument_imports(include=["s3s3.store.lean", "s3s3.errors"]):
    from s3s3 import errors
    from s3s3.store import lean

ALLOWED = (getattr(errors, "ResponseError", errors.S3S3Error),)
V1_FIELDS = ("Delimiter", "Marker", "NextMarker")
V2_FIELDS = ("Delimiter", "Prefix", "StartAfter")


def test_one_input(data: bytes) -> None:
    expect(data, ALLOWED, lean.parse_listing, data, decode=V1_FIELDS)
    expect(data, ALLOWED, lean.parse_listing, data, decode=V2_FIELDS)
    expect(data, ALLOWED, lean.parse_uploads, data)
    expect(data, (), lean._error_code_message, data)


if __name__ == "__main__":
    main(test_one_input)
