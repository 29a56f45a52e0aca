"""Inputs the fuzzers (fuzz/) found: each may only raise the parser's documented error.

Every file under tests/data/fuzz/<target>/ is an input a fuzz target once crashed on (the
file name says what it exercises), kept as it was found. The property is the fuzz target's:
the message parser raises only MessageError, the INI loader only ConfigError, the listing
parser only ResponseError, and the S3 error-body reader nothing at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from s3s3 import config, errors, rawhttp
from s3s3.sources import messages

DATA = Path(__file__).parent / "data" / "fuzz"


def inputs(target: str) -> list:
    files = sorted((DATA / target).iterdir())
    assert files, f"no regression inputs under {DATA / target}"
    return [pytest.param(p.read_bytes(), id=p.name) for p in files]


# --------------------------------------------------------------------------- listing parser

LISTING_CASES = inputs("listing") + [
    # Written by hand next to the fuzzer's finds, from reading botocore.utils.parse_timestamp:
    # an epoch too large for a datetime ends in RuntimeError, not ValueError; and int()
    # refuses more than 4,300 digits.
    pytest.param(b"<ListBucketResult><Contents><Key>k</Key><LastModified>1e400</LastModified>"
                 b"</Contents></ListBucketResult>", id="lastmodified-epoch-overflow"),
    pytest.param(b"<ListBucketResult><Contents><Key>k</Key><Size>" + b"9" * 5000
                 + b"</Size></Contents></ListBucketResult>", id="size-over-int-digit-limit"),
]


@pytest.mark.parametrize("data", LISTING_CASES)
@pytest.mark.parametrize("decode", [("Delimiter", "Marker", "NextMarker"),
                                    ("Delimiter", "Prefix", "StartAfter")], ids=["v1", "v2"])
def test_unreadable_listing_raises_response_error(data, decode):
    with pytest.raises(errors.ResponseError, match="^unreadable listing: "):
        rawhttp.parse_listing(data, decode=decode)


@pytest.mark.parametrize("data", LISTING_CASES)
def test_error_body_reader_never_raises(data):
    code, message = rawhttp._error_code_message(data)
    assert isinstance(code, str) and isinstance(message, str)


def test_error_body_reader_still_reads_a_real_error():
    body = (DATA.parent.parent.parent / "fuzz" / "corpus" / "listing"
            / "ceph-error-nosuchbucket.xml").read_bytes()
    assert rawhttp._error_code_message(body) == ("NoSuchBucket", "")


# The seeds are real answers (fuzz/capture_listings.py): the fix must still read them.
SEEDS = DATA.parent.parent.parent / "fuzz" / "corpus" / "listing"
STORED_KEYS = sorted(["plain.txt", "dir/a b+c.txt", "dir/x%2Fy", "caf\u00e9/\u65e5\u672c\u8a9e.txt",
                      "amp&lt<gt>.bin", "deep/er/key"])


@pytest.mark.parametrize("server", ["moto", "ceph"])
@pytest.mark.parametrize("page", ["v1-url", "v2-url"])
def test_real_listings_still_parse(server, page):
    out = rawhttp.parse_listing((SEEDS / f"{server}-{page}.xml").read_bytes())
    assert sorted(c["Key"] for c in out["Contents"]) == STORED_KEYS
    assert all(c["Size"] == len(c["Key"].encode()) for c in out["Contents"])
    assert all(c["LastModified"].tzinfo is not None for c in out["Contents"])
    assert out["IsTruncated"] is False
