"""Fuzz the work-message parser (s3s3.sources.messages): only MessageError may escape.

Each input is used as a raw pub/sub message (bytes, and as text with its undecodable bytes
as lone surrogates, which is what a str message can hold), as the fields of a stream entry
(``message``; ``key`` and ``op`` split at the first NUL byte), and as a key for
:func:`encode_key_message`, whose output must parse back to the same key and op.

    python fuzz/fuzz_messages.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atheris  # noqa: E402

from _harness import expect, main  # noqa: E402

with atheris.instrument_imports(include=["s3s3"]):
    from s3s3.errors import MessageError
    from s3s3.sources import messages

ALLOWED = (MessageError,)
ENCODINGS = messages.KEY_ENCODINGS


def round_trip(key: str, op: str) -> None:
    """A key announced by encode_key_message arrives intact (the module's promise)."""
    sent = messages.encode_key_message(key, op=op)
    parsed = messages.parse_message(sent)
    got = [(item.op, item.key) for item in parsed.items]
    assert got == [(op, key)], f"{key!r} ({op}) sent as {sent!r} came back as {got!r}"


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    encoding = ENCODINGS[len(data) % len(ENCODINGS)]
    bucket = "src" if len(data) % 2 else None
    expect(data, ALLOWED, messages.looks_like_event, data)
    expect(data, ALLOWED, messages.parse_message, data, source_bucket=bucket,
           key_encoding=encoding)
    expect(data, ALLOWED, messages.parse_message, text, key_encoding=encoding)
    expect(data, ALLOWED, messages.parse_entry, {b"message": data}, source_bucket=bucket)
    key, _, op = data.partition(b"\x00")
    fields = {b"key": key, b"op": op} if op else {b"key": key}
    expect(data, ALLOWED, messages.parse_entry, fields)
    expect(data, ALLOWED, messages.parse_entry, {"key": text})
    expect(data, ALLOWED, round_trip, text, messages.COPY)
    expect(data, ALLOWED, round_trip, text, messages.DELETE)


if __name__ == "__main__":
    main(test_one_input)
