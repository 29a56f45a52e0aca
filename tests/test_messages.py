"""Message parsing (s3s3.queue.messages): pure, exact expectations, exact error texts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from s3s3.errors import MessageError
from s3s3.model import WorkItem
from s3s3.queue.messages import (
    MAX_JSON_DEPTH,
    MAX_KEY_BYTES,
    Parsed,
    Skipped,
    encode_key_message,
    looks_like_event,
    parse_entry,
    parse_message,
    validate_key,
)


def record(
    key: str,
    *,
    event: str = "ObjectCreated:Put",
    bucket: str | None = "src",
    source: str = "aws:s3",
) -> dict:
    s3: dict = {"object": {"key": key, "size": 4096}}
    if bucket is not None:
        s3["bucket"] = {"name": bucket}
    return {"eventVersion": "2.1", "eventSource": source, "eventName": event, "s3": s3}


def s3_event(*records: dict) -> bytes:
    return json.dumps({"Records": list(records)}).encode()


def minio_access(*records: dict) -> bytes:
    return json.dumps([{"Event": list(records), "EventTime": "2024-05-01T10:00:00Z"}]).encode()


# --------------------------------------------------------------------------- plain keys


def test_plain_key_is_one_copy_item():
    assert parse_message(b"some/key") == Parsed("key", (WorkItem("copy", "some/key"),))


def test_plain_key_is_taken_exactly_as_sent():
    assert parse_message(b" spaced key \n").items == (WorkItem("copy", " spaced key \n"),)
    assert parse_message("caf\u00e9/\u00fc.txt".encode()).items[0].key == "caf\u00e9/\u00fc.txt"


def test_plain_key_may_contain_plus_and_percent_unchanged():
    assert parse_message(b"a+b%2Fc").items[0].key == "a+b%2Fc"


@pytest.mark.parametrize(
    "key", ["[draft] notes.txt", "{id}/photo.jpg", "[", "{", '{"a": 1', "[1, 2"]
)
def test_bracketed_key_that_is_not_json_is_a_key(key):
    assert parse_message(key.encode()) == Parsed("key", (WorkItem("copy", key),))


@pytest.mark.parametrize("key", ['"quoted"', "123", "true", "null"])
def test_json_scalars_are_keys(key):
    assert parse_message(key.encode()).items == (WorkItem("copy", key),)


def test_key_of_exactly_1024_bytes_is_accepted():
    key = "k" * MAX_KEY_BYTES
    assert parse_message(key.encode()).items[0].key == key


def test_key_over_1024_bytes_is_an_error():
    with pytest.raises(MessageError) as err:
        parse_message(b"k" * 1025)
    assert str(err.value) == (
        f"key of 1,025 bytes is over the 1,024-byte S3 limit (starts {b'k' * 60!r}... (1025 bytes))"
    )


def test_multibyte_key_limit_counts_bytes():
    with pytest.raises(MessageError, match="key of 1,026 bytes"):
        parse_message(("\u00e9" * 513).encode())


def test_empty_message():
    with pytest.raises(MessageError) as err:
        parse_message(b"")
    assert str(err.value) == "empty message"


def test_not_utf8():
    with pytest.raises(MessageError) as err:
        parse_message(b"ok\xff\xfe")
    assert str(err.value) == "message is not UTF-8 (byte 2: b'\\xff'; starts b'ok\\xff\\xfe')"


def test_one_mib_of_garbage_is_too_long():
    with pytest.raises(MessageError) as err:
        parse_message(b"\x00garbage" * (1024 * 128))
    assert str(err.value).startswith(
        "message of 1,048,576 bytes is over the 262,144-byte limit (starts b'\\x00garbage"
    )


# --------------------------------------------------------------------------- S3 events


def test_aws_event_key_is_url_decoded_with_plus_for_space():
    parsed = parse_message(s3_event(record("dir%2Fmy+file%2Bx.txt")), source_bucket="src")
    assert parsed == Parsed(
        "s3-event",
        (WorkItem("copy", "dir/my file+x.txt", bucket="src", event="ObjectCreated:Put"),),
    )


def test_minio_event_name_prefix_and_utf8_escapes():
    parsed = parse_message(
        s3_event(record("caf%C3%A9.txt", event="s3:ObjectCreated:Put", source="minio:s3"))
    )
    assert parsed.items == (
        WorkItem("copy", "caf\u00e9.txt", bucket="src", event="s3:ObjectCreated:Put"),
    )


def test_ceph_event_keys_are_raw():
    # Ceph RGW 16.2 sends 'dir/my file+x%41.txt' for that very key (checked against radosgw).
    raw = "dir/my file+x%41.txt"
    parsed = parse_message(s3_event(record(raw, source="ceph:s3")))
    assert parsed.items[0].key == raw


def test_key_encoding_can_be_forced():
    ceph = s3_event(record("a+b", source="ceph:s3"))
    aws = s3_event(record("a+b"))
    assert parse_message(ceph, key_encoding="url").items[0].key == "a b"
    assert parse_message(aws, key_encoding="raw").items[0].key == "a+b"
    with pytest.raises(ValueError):
        parse_message(aws, key_encoding="latin1")


@pytest.mark.parametrize(
    "event, op",
    [
        ("ObjectCreated:Put", "copy"),
        ("ObjectCreated:Copy", "copy"),
        ("ObjectCreated:CompleteMultipartUpload", "copy"),
        ("s3:ObjectCreated:Post", "copy"),
        ("ObjectRemoved:Delete", "delete"),
        ("s3:ObjectRemoved:DeleteMarkerCreated", "delete"),
        ("LifecycleExpiration:Delete", "delete"),
        ("ObjectLifecycle:Expiration:Current", "delete"),
    ],
)
def test_event_names_map_to_ops(event, op):
    assert parse_message(s3_event(record("k", event=event))).items[0].op == op


@pytest.mark.parametrize(
    "event",
    [
        "s3:ObjectAccessed:Get",
        "ObjectTagging:Put",
        "s3:ObjectRestore:Completed",
        "ObjectLifecycle:Expiration:AbortMultipartUpload",
    ],
)
def test_events_that_change_no_object_are_skipped(event):
    parsed = parse_message(s3_event(record("k", event=event)))
    assert parsed == Parsed(
        "s3-event",
        (),
        (Skipped(f"event {event} changes no object", key="k", bucket="src", event=event),),
    )


def test_other_bucket_is_skipped_with_reason():
    parsed = parse_message(s3_event(record("a", bucket="other"), record("b")), source_bucket="src")
    assert parsed.items == (WorkItem("copy", "b", bucket="src", event="ObjectCreated:Put"),)
    assert parsed.skipped == (
        Skipped(
            "bucket 'other' is not the source bucket 'src'",
            key="a",
            bucket="other",
            event="ObjectCreated:Put",
        ),
    )


def test_record_without_bucket_is_accepted():
    assert parse_message(s3_event(record("k", bucket=None)), source_bucket="src").items == (
        WorkItem("copy", "k", event="ObjectCreated:Put"),
    )


def test_aws_test_event_is_skipped():
    doc = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-01-01T00:00:00Z",
        "Bucket": "src",
        "RequestId": "X",
        "HostId": "Y",
    }
    parsed = parse_message(json.dumps(doc).encode())
    assert parsed.format == "test-event" and parsed.items == ()
    assert parsed.skipped[0].reason == "s3:TestEvent (sent when notifications are configured)"


def test_minio_access_format():
    parsed = parse_message(
        minio_access(
            record("photos%2Fa+b.jpg", event="s3:ObjectCreated:Put", source="minio:s3"),
            record("old.jpg", event="s3:ObjectRemoved:Delete", source="minio:s3"),
        ),
        source_bucket="src",
    )
    assert parsed == Parsed(
        "minio-access",
        (
            WorkItem("copy", "photos/a b.jpg", bucket="src", event="s3:ObjectCreated:Put"),
            WorkItem("delete", "old.jpg", bucket="src", event="s3:ObjectRemoved:Delete"),
        ),
    )


@pytest.mark.parametrize(
    "doc, message",
    [
        (
            {"hello": "world"},
            "JSON of unknown shape: an object with keys 'hello'; expected an S3 "
            'event notification {"Records": [...]} or a MinIO access list '
            '[{"Event": [...], "EventTime": ...}]',
        ),
        (
            {},
            "JSON of unknown shape: an object with keys none; expected an S3 event notification "
            '{"Records": [...]} or a MinIO access list [{"Event": [...], "EventTime": ...}]',
        ),
        (
            ["a", "b"],
            "JSON of unknown shape: a list whose first element is str; expected an S3 "
            'event notification {"Records": [...]} or a MinIO access list '
            '[{"Event": [...], "EventTime": ...}]',
        ),
        (
            [],
            "JSON of unknown shape: an empty list; expected an S3 event notification "
            '{"Records": [...]} or a MinIO access list [{"Event": [...], "EventTime": ...}]',
        ),
        ({"Records": "x"}, "JSON of the wrong shape: 'Records' is str, not a list"),
        ({"Records": []}, "S3 event with an empty 'Records' list"),
        ({"Records": [5]}, "JSON of the wrong shape: Records[0] is int, not an object"),
        ({"Records": [{"s3": {"object": {"key": "k"}}}]}, "Records[0]: missing 'eventName'"),
        (
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]},
            "Records[0]: missing 's3.object.key'",
        ),
        (
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": ""}}}]},
            "Records[0]: 's3.object.key' is empty",
        ),
        (
            {"Records": [{"eventName": 7, "s3": {"object": {"key": "k"}}}]},
            "Records[0]: 'eventName' is int, not a string",
        ),
        (
            [{"Event": {}, "EventTime": "t"}],
            "JSON of the wrong shape: element 0 'Event' is an object, not a list",
        ),
        ([{"Event": [], "EventTime": "t"}], "MinIO access entry with no events"),
    ],
)
def test_json_of_the_wrong_shape_is_an_error(doc, message):
    with pytest.raises(MessageError) as err:
        parse_message(json.dumps(doc).encode())
    assert str(err.value) == message


def test_event_key_that_does_not_decode_to_utf8():
    with pytest.raises(MessageError) as err:
        parse_message(s3_event(record("bad%FF")))
    assert str(err.value) == "Records[0]: 's3.object.key' 'bad%FF' does not decode to UTF-8"


def test_event_key_over_the_limit():
    with pytest.raises(MessageError, match=r"^Records\[0\]: key of 1,025 bytes is over"):
        parse_message(s3_event(record("k" * 1025)))


# --------------------------------------------------------------------------- stream entries


def test_entry_with_key_is_not_format_detected():
    assert parse_entry({b"key": b"{}", b"op": b"copy"}) == Parsed(
        "entry", (WorkItem("copy", "{}"),)
    )
    assert parse_entry({"key": "k"}).items == (WorkItem("copy", "k"),)
    assert parse_entry({b"key": b"k", b"op": b"delete"}).items == (WorkItem("delete", "k"),)


def test_entry_with_message_is_parsed_as_a_message():
    parsed = parse_entry({b"message": s3_event(record("a%2Fb"))}, source_bucket="src")
    assert parsed.items == (WorkItem("copy", "a/b", bucket="src", event="ObjectCreated:Put"),)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({b"op": b"copy"}, "stream entry has neither a 'key' nor a 'message' field (fields: op)"),
        ({}, "stream entry has neither a 'key' nor a 'message' field (fields: none)"),
        ({b"key": b"k", b"op": b"move"}, "'op' field is 'move'; expected 'copy' or 'delete'"),
        ({b"key": b"\xff"}, "'key' field is not UTF-8 (starts b'\\xff')"),
        ({b"key": b""}, "empty key"),
        ({b"message": b""}, "empty message"),
    ],
)
def test_bad_entries(fields, message):
    with pytest.raises(MessageError) as err:
        parse_entry(fields)
    assert str(err.value) == message


# --------------------------------------------------------------------------- encoding keys


@pytest.mark.parametrize(
    "key",
    ["plain/key", "{}", "[1, 2]", '{"a": 1}', "[draft] x", "a+b %2F c", " lead", "\u00e9t\u00e9"],
)
def test_encode_key_message_round_trips(key):
    assert parse_message(encode_key_message(key)).items[0].key == key
    assert parse_message(encode_key_message(key), key_encoding="raw").items[0].key == key


def test_encode_key_message_sends_plain_keys_as_in_2015():
    assert encode_key_message("some/key") == b"some/key"
    assert looks_like_event("{}") and looks_like_event(b"[1]")
    assert not looks_like_event("[draft] x") and not looks_like_event("plain")


def test_encode_delete_is_an_event():
    parsed = parse_message(encode_key_message("gone/key", op="delete"))
    assert parsed.items == (WorkItem("delete", "gone/key", event="ObjectRemoved:Delete"),)


def test_validate_key():
    assert validate_key("k") == "k"
    with pytest.raises(MessageError, match="^empty key$"):
        validate_key("")
    with pytest.raises(MessageError, match="^unknown op"):
        encode_key_message("k", op="move")


# --------------------------------------------------------------------------- hostile input
# The contract: for any input, the parser returns a Parsed or raises MessageError, nothing
# else (no TypeError, no RecursionError), and its error texts stay short.


def one_record(**fields) -> bytes:
    rec = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "k"}}}
    rec.update(fields)
    return json.dumps({"Records": [rec]}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "source, shown", [(["aws:s3"], "a list"), ({"a": 1}, "an object"), (7, "int"), (True, "bool")]
)
def test_event_source_that_is_not_a_string_is_a_bad_message(source, shown):
    # The reproducer: a list here raised TypeError (unhashable) in the intake thread.
    with pytest.raises(MessageError) as err:
        parse_message(one_record(eventSource=source))
    assert str(err.value) == f"Records[0]: 'eventSource' is {shown}, not a string"


def test_null_event_source_is_no_source():
    assert parse_message(one_record(eventSource=None)).items == (
        WorkItem("copy", "k", event="ObjectCreated:Put"),
    )


@pytest.mark.parametrize(
    "message", [b"[" * 100_000, b'{"a":' * 50_000, b"[{" * 40_000, ("[" * 100_000).encode()]
)
def test_deep_nesting_is_a_bad_message_not_a_recursion_error(message):
    with pytest.raises(MessageError) as err:
        parse_message(message)
    assert "nests brackets deeper than 32 levels" in str(err.value)
    assert len(str(err.value)) < 400


def test_looks_like_event_never_recurses_deeply():
    assert not looks_like_event("[" * 100_000)
    assert not looks_like_event(b'{"a":' * 50_000)


def test_thousand_byte_key_of_brackets_is_a_key_both_ways():
    # A legal S3 key; s3s3publish died on it (RecursionError on Python 3.10 and 3.11).
    key = "[" * 1000
    assert not looks_like_event(key)
    assert encode_key_message(key) == key.encode()
    assert parse_message(key.encode()) == Parsed("key", (WorkItem("copy", key),))


def test_nesting_limit_is_part_of_the_detection_rule():
    assert MAX_JSON_DEPTH == 32
    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    # Valid JSON, but nested past the limit: not an event, so a key (and sent raw).
    assert parse_message(deep.encode()) == Parsed("key", (WorkItem("copy", deep),))
    assert encode_key_message(deep) == deep.encode()
    # At the limit it is JSON, of no known shape; a key of that text is sent wrapped.
    with pytest.raises(MessageError, match="^JSON of unknown shape: a list whose first"):
        parse_message(at_limit.encode())
    assert parse_message(encode_key_message(at_limit)).items[0].key == at_limit


def test_brackets_inside_strings_do_not_count():
    doc = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"object": {"key": "%5B" * 40 + "%7B" * 40}},
                "note": "[" * 100 + '\\"{' * 100,
            }
        ]
    }
    assert parse_message(json.dumps(doc).encode()).items[0].key == "[" * 40 + "{" * 40


@pytest.mark.parametrize(
    "message, error",
    [
        (
            b'{"Records":[1' + b"0" * 5000 + b"]}",
            "JSON of the wrong shape: Records[0] is int, not an object",
        ),
        (
            b'{"Records":[' + b"9" * 200_000 + b"]}",
            "JSON of the wrong shape: Records[0] is int, not an object",
        ),
        (b'{"Records":NaN}', "JSON of the wrong shape: 'Records' is float, not a list"),
        (b'{"Records":[-Infinity]}', "JSON of the wrong shape: Records[0] is float, not an object"),
        (
            b'{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":Infinity}}}]}',
            "Records[0]: 's3.object.key' is float",
        ),
        (
            b'{"Records":[{"eventName":1e999,"s3":{"object":{"key":"k"}}}]}',
            "Records[0]: 'eventName' is float, not a string",
        ),
    ],
)
def test_numbers_are_never_converted(message, error):
    # Huge integers are neither converted (slow on Python 3.10) nor refused by 3.11's digit
    # limit (which made the document "not JSON", so a key): the parser only names their type.
    with pytest.raises(MessageError) as err:
        parse_message(message)
    assert str(err.value) == error


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"s3": [1]}, "Records[0]: missing 's3.object.key'"),
        ({"s3": {"object": "k"}}, "Records[0]: missing 's3.object.key'"),
        ({"s3": {"object": {"key": 5}}}, "Records[0]: 's3.object.key' is int"),
        ({"s3": {"object": {"key": ["k"]}}}, "Records[0]: 's3.object.key' is a list"),
        ({"s3": {"object": {"key": None}}}, "Records[0]: 's3.object.key' is null"),
        (
            {"s3": {"object": {"key": "k"}, "bucket": ["src"]}},
            "Records[0]: 's3.bucket' is a list, not an object",
        ),
        (
            {"s3": {"object": {"key": "k"}, "bucket": {"name": ["src"]}}},
            "Records[0]: 's3.bucket.name' is a list, not a string",
        ),
        ({"eventName": None}, "Records[0]: 'eventName' is null, not a string"),
    ],
)
def test_fields_of_the_wrong_type(fields, error):
    with pytest.raises(MessageError) as err:
        parse_message(one_record(**fields))
    assert str(err.value) == error


def test_lone_surrogate_in_an_event_key_is_a_bad_message():
    # JSON may spell a lone surrogate (\ud800); no UTF-8 byte string holds it, so no store can
    # either: it used to be retried five times before being dead-lettered.
    for message in (
        b'{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"a\\ud800"}}}]}',
        b'{"Records":[{"eventName":"ObjectCreated:Put","eventSource":"ceph:s3",'
        b'"s3":{"object":{"key":"a\\udfff"}}}]}',
    ):
        with pytest.raises(
            MessageError,
            match=r"^Records\[0\]: key is not UTF-8: a lone "
            r"surrogate at character 1 \(starts b'a\\\\u",
        ):
            parse_message(message)


@pytest.mark.parametrize(
    "call",
    [
        lambda: validate_key("a\ud800b"),
        lambda: parse_message("a\udcff"),
        lambda: parse_entry({"key": "\ud800"}),
        lambda: encode_key_message("x\udcffy"),
        lambda: encode_key_message("{}\ud800", op="delete"),
    ],
)
def test_lone_surrogate_keys_are_rejected_everywhere(call):
    with pytest.raises(MessageError, match="^key is not UTF-8: a lone surrogate"):
        call()


@pytest.mark.parametrize("value", [None, 12, 1.5, ["k"], object()])
def test_keys_and_messages_of_the_wrong_type(value):
    with pytest.raises(MessageError, match="must be"):
        parse_message(value)
    with pytest.raises(MessageError, match="must be"):
        validate_key(value)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({b"key": b"k", b"op": b"\xff\xfe"}, "'op' field is not UTF-8 (starts b'\\xff\\xfe')"),
        (
            {b"key": b"k", b"op": b"x" * 5000},
            "'op' field is 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            "'... (5,000 characters); expected 'copy' or 'delete'",
        ),
        ({b"message": 5}, "'message' field must be bytes or str, not int"),
        ([(b"key", b"k")], "stream entry must be a mapping of fields, not list"),
    ],
)
def test_hostile_entries(fields, message):
    with pytest.raises(MessageError) as err:
        parse_entry(fields)
    assert str(err.value) == message


def test_error_texts_stay_short_whatever_the_input():
    huge = "x" * 200_000
    for message in (
        json.dumps({huge: 1}),
        json.dumps({"Records": [{"eventName": huge, "s3": {"object": {}}}]}),
        json.dumps(
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Put",
                        "s3": {"object": {"key": "%FF" + huge[:900]}},
                    }
                ]
            }
        ),
    ):
        with pytest.raises(MessageError) as err:
            parse_message(message.encode())
        assert len(str(err.value)) < 600
    skipped = parse_message(one_record(eventName="x:" + huge[:100_000])).skipped[0]
    assert len(skipped.reason) < 200


def test_test_event_with_a_bucket_of_the_wrong_type():
    parsed = parse_message(b'{"Event":"s3:TestEvent","Bucket":[1,2]}')
    assert parsed.format == "test-event" and parsed.skipped[0].bucket is None


def test_ten_thousand_records_are_over_the_size_limit():
    rec = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "many"}}}
    with pytest.raises(MessageError, match="^message of 710,013 bytes is over the 262,144"):
        parse_message(json.dumps({"Records": [rec] * 10_000}).encode())
    # What fits is accepted, one item per record (the replicator merges them per key).
    parsed = parse_message(json.dumps({"Records": [rec] * 3000}).encode())
    assert len(parsed.items) == 3000 and {i.key for i in parsed.items} == {"many"}


def test_nul_and_control_characters_are_legal_in_keys():
    # S3 keys are any UTF-8; whether a store takes "\x00" is the store's business (moto and
    # AWS do), so the parser passes them on unchanged.
    assert parse_message(b"a\x00b").items == (WorkItem("copy", "a\x00b"),)
    assert (
        parse_message(one_record(s3={"object": {"key": "a%00b%01"}})).items[0].key == "a\x00b\x01"
    )


#: Run in a fresh interpreter: any import of redis fails, as if it were not installed.
_WITHOUT_REDIS = r"""
import importlib.abc
import sys


class NoRedis(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "redis" or name.startswith("redis."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, NoRedis())
for name in [n for n in sys.modules if n == "redis" or n.startswith("redis.")]:
    del sys.modules[name]

from s3s3.model import COPY, WorkItem
from s3s3.queue.contract import Mode
from s3s3.queue.messages import parse_entry, parse_message

assert parse_message(b"photos/cat.jpg").items == (WorkItem(COPY, "photos/cat.jpg"),)
event = b'{"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "a+b"}}}]}'
assert [(i.op, i.key) for i in parse_message(event).items] == [("delete", "a b")]
assert parse_entry({b"key": b"k", b"op": b"copy"}).items == (WorkItem(COPY, "k"),)
assert Mode("stream") is Mode.STREAM
try:
    import redis  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("the blocker let redis in")
loaded = sorted(n for n in sys.modules if n == "redis" or n.startswith("redis."))
assert not loaded, loaded
print("parsed without redis")
"""


def test_the_parser_imports_and_parses_without_redis():
    # The message parser is pure: s3s3.queue.messages, and everything it imports (the
    # s3s3.queue package included), must work where redis is not installed.
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_REDIS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "parsed without redis"
