"""Inputs the fuzzers (fuzz/) found: each may only raise the parser's documented error.

Every file under tests/data/fuzz/<target>/ is an input a fuzz target once crashed on (the
file name says what it exercises), kept as it was found; where a later check (duplicate
sections and keys) stops a found input before the line it crashed on, a ``-minimal`` copy
keeps only what reaches that line. The property is the fuzz target's:
the message parser raises only MessageError, the INI loader only ConfigError, the listing
parser only ResponseError, and the S3 error-body reader nothing at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from s3s3 import config, errors
from s3s3.errors import ConfigError, MessageError
from s3s3.queue import messages
from s3s3.store import lean as rawhttp

DATA = Path(__file__).parent / "data" / "fuzz"
# The seeds are real answers (fuzz/capture_listings.py).
SEEDS = Path(__file__).parent.parent / "fuzz" / "corpus" / "listing"


def inputs(target: str) -> list:
    files = sorted((DATA / target).iterdir())
    assert files, f"no regression inputs under {DATA / target}"
    return [pytest.param(p.read_bytes(), id=p.name) for p in files]


def only(allowed, call, *args, **kwargs):
    """``call(...)``'s result, or None when it raised one of ``allowed``; anything else fails."""
    try:
        return call(*args, **kwargs)
    except allowed:
        return None


# --------------------------------------------------------------------------- message parser


@pytest.mark.parametrize("data", inputs("messages"))
def test_message_input_raises_only_message_error(data):
    # The calls fuzz/fuzz_messages.py makes on each input.
    text = data.decode("utf-8", "surrogateescape")
    encoding = messages.KEY_ENCODINGS[len(data) % len(messages.KEY_ENCODINGS)]
    bucket = "src" if len(data) % 2 else None
    only(MessageError, messages.looks_like_event, data)
    only(MessageError, messages.parse_message, data, source_bucket=bucket, key_encoding=encoding)
    only(MessageError, messages.parse_message, text, key_encoding=encoding)
    only(MessageError, messages.parse_entry, {b"message": data}, source_bucket=bucket)
    key, _, op = data.partition(b"\x00")
    only(MessageError, messages.parse_entry, {b"key": key, b"op": op} if op else {b"key": key})
    only(MessageError, messages.parse_entry, {"key": text})
    for op in messages.OPS:
        sent = only(MessageError, messages.encode_key_message, text, op=op)
        if sent is not None:  # what is sent must come back as it was announced
            parsed = messages.parse_message(sent)
            assert [(i.op, i.key) for i in parsed.items] == [(op, text)]


def test_deep_document_is_a_bad_message():
    # The issue: nesting is limited before parsing, so such a message is a MessageError.
    data = (DATA / "messages" / "nested-25000-deep.json").read_bytes()
    with pytest.raises(MessageError):
        messages.parse_message(data)


@pytest.mark.parametrize("op", messages.OPS)
def test_key_with_lone_surrogate_is_refused_at_once(op):
    # The issue: a key that cannot be encoded is a bad message, not a retried failure.
    text = (
        (DATA / "messages" / "lone-surrogate-key.bin")
        .read_bytes()
        .decode("utf-8", "surrogateescape")
    )
    with pytest.raises(MessageError):
        messages.encode_key_message(text, op=op)


# --------------------------------------------------------------------------- INI loader


@pytest.mark.parametrize("data", inputs("config"))
def test_ini_input_raises_only_config_error(tmp_path, data):
    path = tmp_path / "s3s3.ini"
    path.write_bytes(data)
    only(ConfigError, config.load, path, search_path=[], env={})


# --------------------------------------------------------------------------- listing parser

LISTING_CASES = inputs("listing") + [
    # Written by hand next to the fuzzer's finds, from reading botocore.utils.parse_timestamp:
    # an epoch too large for a datetime ends in RuntimeError, not ValueError; and int()
    # refuses more than 4,300 digits.
    pytest.param(
        b"<ListBucketResult><Contents><Key>k</Key><LastModified>1e400</LastModified>"
        b"</Contents></ListBucketResult>",
        id="lastmodified-epoch-overflow",
    ),
    pytest.param(
        b"<ListBucketResult><Contents><Key>k</Key><Size>"
        + b"9" * 5000
        + b"</Size></Contents></ListBucketResult>",
        id="size-over-int-digit-limit",
    ),
]


@pytest.mark.parametrize("data", LISTING_CASES)
@pytest.mark.parametrize(
    "decode",
    [("Delimiter", "Marker", "NextMarker"), ("Delimiter", "Prefix", "StartAfter")],
    ids=["v1", "v2"],
)
def test_unreadable_listing_raises_response_error(data, decode):
    with pytest.raises(errors.ResponseError, match="^unreadable listing: "):
        rawhttp.parse_listing(data, decode=decode)


@pytest.mark.parametrize("data", LISTING_CASES)
def test_error_body_reader_never_raises(data):
    code, message = rawhttp._error_code_message(data)
    assert isinstance(code, str) and isinstance(message, str)


def test_error_body_reader_still_reads_a_real_error():
    body = (SEEDS / "ceph-error-nosuchbucket.xml").read_bytes()
    assert rawhttp._error_code_message(body) == ("NoSuchBucket", "")


# The keys fuzz/capture_listings.py stored: the fix must still read the real answers.
STORED_KEYS = sorted(
    [
        "plain.txt",
        "dir/a b+c.txt",
        "dir/x%2Fy",
        "caf\u00e9/\u65e5\u672c\u8a9e.txt",
        "amp&lt<gt>.bin",
        "deep/er/key",
    ]
)


@pytest.mark.parametrize("server", ["moto", "ceph"])
@pytest.mark.parametrize("page", ["v1-url", "v2-url"])
def test_real_listings_still_parse(server, page):
    out = rawhttp.parse_listing((SEEDS / f"{server}-{page}.xml").read_bytes())
    assert sorted(c["Key"] for c in out["Contents"]) == STORED_KEYS
    assert all(c["Size"] == len(c["Key"].encode()) for c in out["Contents"])
    assert all(c["LastModified"].tzinfo is not None for c in out["Contents"])
    assert out["IsTruncated"] is False
