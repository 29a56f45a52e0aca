"""Fuzz the work-message parser (s3s3.queue.messages): only MessageError may escape.

Each input is used as a raw pub/sub message (bytes, and as text with its undecodable bytes
as lone surrogates, which is what a str message can hold), as the fields of a stream entry
(``message``; ``key`` and ``op`` split at the first NUL byte), and as a key for
:func:`encode_key_message`, whose output must parse back to the same key and op.

Byte-level mutation alone rarely turns a JSON string into an array or nests a document a
thousand levels deep (the intermediate steps are not JSON, so they earn no coverage): half
the mutations are therefore made on the parsed document (:func:`mutate`), replacing, wrapping,
deleting or copying one value. Python 3.13's json raises RecursionError only past about
10,000 levels (3.10: 1,000), so fuzz/run.py lets this target's inputs grow to 64 KiB.

    python fuzz/fuzz_messages.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import copy
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atheris  # noqa: E402
from _harness import expect, main  # noqa: E402

with atheris.instrument_imports(include=["s3s3"]):
    from s3s3.errors import MessageError
    from s3s3.queue import messages

ALLOWED = (MessageError,)
ENCODINGS = messages.KEY_ENCODINGS


def round_trip(key: str, op: str) -> None:
    """A key announced by encode_key_message arrives intact (the module's promise)."""
    sent = messages.encode_key_message(key, op=op)
    parsed = messages.parse_message(sent)
    got = [(item.op, item.key) for item in parsed.items]
    assert got == [(op, key)], f"{key!r} ({op}) sent as {sent!r} came back as {got!r}"


# Values of every JSON type, and the strings the parser compares against.
_VALUES = (
    None,
    True,
    False,
    0,
    -1,
    1.5e308,
    "",
    "aws:s3",
    "ceph:s3",
    "minio:s3",
    "s3s3",
    "ObjectCreated:Put",
    "s3:ObjectRemoved:Delete",
    "s3:TestEvent",
    "%FF",
    "a+b%2F",
    "\ud800",
    "k" * 1025,
    [],
    {},
    [{}],
    {"Event": []},
    {"Records": []},
)


_SENTINEL = "\x00s3s3-fuzz-nest\x00"


def _slots(doc) -> list:
    """Every (container, index or key) of ``doc``, without recursion (documents nest deep)."""
    slots, todo = [], [doc]
    while todo:
        node = todo.pop()
        items = enumerate(node) if isinstance(node, list) else node.items()
        for key, value in items:
            slots.append((node, key))
            if isinstance(value, (dict, list)):
                todo.append(value)
    return slots


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """Half the time, change one value of the JSON document ``data``; else libFuzzer's way."""
    rng = random.Random(seed)
    if rng.random() < 0.5:
        try:
            out = _mutate_document(data, rng)
        except (ValueError, RecursionError):  # not JSON, or too deep to copy or dump
            out = None
        if out is not None and len(out) <= max_size:
            return out
    return atheris.Mutate(data, max_size)


def _mutate_document(data: bytes, rng: random.Random) -> bytes | None:
    doc = json.loads(data)
    slots = _slots(doc) if isinstance(doc, (dict, list)) else []
    if not slots:
        return None
    parent, key = rng.choice(slots)
    action = rng.randrange(4)
    if action == 0:
        parent[key] = copy.deepcopy(rng.choice(_VALUES))
    elif action == 1:  # nested as text: json.dumps itself stops at about 10,000 levels
        depth = rng.choice((1, 2, 10, 100, 1000, 1500, 9000, 12000, 25000))
        opener, closer = ("[", "]") if rng.random() < 0.7 else ('{"a":', "}")
        inner = json.dumps(parent[key])
        parent[key] = _SENTINEL
        text = json.dumps(doc).replace(
            json.dumps(_SENTINEL), opener * depth + inner + closer * depth, 1
        )
        return text.encode("utf-8", "surrogatepass")
    elif action == 2:
        del parent[key]
    else:
        other, other_key = rng.choice(slots)
        parent[key] = copy.deepcopy(other[other_key])
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    encoding = ENCODINGS[len(data) % len(ENCODINGS)]
    bucket = "src" if len(data) % 2 else None
    expect(data, ALLOWED, messages.looks_like_event, data)
    expect(data, ALLOWED, messages.parse_message, data, source_bucket=bucket, key_encoding=encoding)
    expect(data, ALLOWED, messages.parse_message, text, key_encoding=encoding)
    expect(data, ALLOWED, messages.parse_entry, {b"message": data}, source_bucket=bucket)
    key, _, op = data.partition(b"\x00")
    fields = {b"key": key, b"op": op} if op else {b"key": key}
    expect(data, ALLOWED, messages.parse_entry, fields)
    expect(data, ALLOWED, messages.parse_entry, {"key": text})
    expect(data, ALLOWED, round_trip, text, messages.COPY)
    expect(data, ALLOWED, round_trip, text, messages.DELETE)


if __name__ == "__main__":
    main(test_one_input, custom_mutator=mutate)
