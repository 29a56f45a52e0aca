"""Turning one work message into work items: pure parsing, no I/O.

A message is the data of one pub/sub message, one MinIO list entry, or the ``message``
field of one stream entry. Three formats are understood:

``key``
    The 2015 format: the whole message is one source key name, UTF-8, taken exactly as
    sent (no stripping: S3 keys may begin or end with spaces).
``s3-event``
    An S3 event notification, ``{"Records": [...]}``, as AWS, MinIO and Ceph RGW send it.
``minio-access``
    MinIO's Redis target in ``access`` format: ``[{"Event": [records], "EventTime": ...}]``.

Detection rule (the README repeats it): a message is an event document only when its first
byte is ``{`` or ``[`` *and* the whole message parses as JSON. Such a document must have one
of the shapes above, otherwise it is reported as an error. Everything else is a plain key:
``[draft] notes.txt`` or ``{id}/photo.jpg`` fail to parse as JSON and are therefore keys,
exactly as a 2015 user publishing them would expect. The one ambiguity left is a key that
is itself a JSON object or array (``{}``, ``[1]``); :func:`encode_key_message` (used by
``s3s3publish``) sends such a key wrapped in a minimal event, so it arrives intact.

Keys in events: AWS and MinIO URL-encode them with ``+`` for space (decoded here with
``unquote_plus``); Ceph RGW (checked on 16.2.15) sends them raw, so a ``+`` or ``%`` in a
Ceph key is literal. ``key_encoding="auto"`` (the default) therefore decodes unless the
record's ``eventSource`` is ``ceph:s3``; ``"url"`` and ``"raw"`` force one behaviour.

Event names: ``ObjectCreated:*`` copies; ``ObjectRemoved:*``, ``LifecycleExpiration:*``
(AWS) and ``ObjectLifecycle:Expiration:*`` (Ceph) delete; an ``s3:`` prefix is ignored.
Other events (reads, ACL, tagging, restores, the AWS ``s3:TestEvent``) change no object and
are skipped, as are records for a bucket other than the source bucket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import quote_plus, unquote_plus

from ..errors import MessageError

COPY = "copy"
DELETE = "delete"
OPS = (COPY, DELETE)

#: S3 limits a key to 1,024 bytes of UTF-8.
MAX_KEY_BYTES = 1024
#: Far above any real event notification (AWS documents ~1-2 KiB per record).
MAX_MESSAGE_BYTES = 256 * 1024

KEY_ENCODINGS = ("auto", "url", "raw")
#: Event sources that put the key in a record unencoded.
RAW_KEY_SOURCES = frozenset({"ceph:s3"})

_PREVIEW_BYTES = 60


@dataclass(frozen=True)
class WorkItem:
    """One thing to do: bring ``key`` at the destinations in line with the source."""

    op: str  # COPY | DELETE
    key: str
    bucket: str | None = None  # the bucket an event named, when it named one
    event: str | None = None  # the event name, for logs


@dataclass(frozen=True)
class Skipped:
    """A record understood but deliberately not acted on, with the reason."""

    reason: str
    key: str | None = None
    bucket: str | None = None
    event: str | None = None


@dataclass(frozen=True)
class Parsed:
    """What one message asks for."""

    format: str  # "key" | "entry" | "s3-event" | "minio-access" | "test-event"
    items: tuple[WorkItem, ...]
    skipped: tuple[Skipped, ...] = ()


def preview(data: bytes | str) -> str:
    """A short, printable rendering of a message for log lines."""
    raw = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else bytes(data)
    shown = repr(raw[:_PREVIEW_BYTES])
    return shown + (f"... ({len(raw)} bytes)" if len(raw) > _PREVIEW_BYTES else "")


def validate_key(key: str) -> str:
    """Return ``key`` if S3 can hold it; raise :class:`MessageError` saying why not."""
    if not key:
        raise MessageError("empty key")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise MessageError(f"key of {size:,} bytes is over the {MAX_KEY_BYTES:,}-byte S3 limit "
                           f"(starts {preview(key)})")
    return key


def looks_like_event(data: bytes | str) -> bool:
    """True when the detection rule reads ``data`` as an event document, not as a key."""
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else data
    if not text or text[0] not in "{[":
        return False
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, (dict, list))


def encode_key_message(key: str, *, op: str = COPY) -> bytes:
    """The pub/sub message that announces ``key``: the key itself when that is unambiguous.

    A delete, or a key the detection rule would read as JSON, is sent as a one-record
    S3 event instead (no bucket, so any listener accepts it).
    """
    validate_key(key)
    if op not in OPS:
        raise MessageError(f"unknown op {op!r} (expected copy or delete)")
    if op == COPY and not looks_like_event(key):
        return key.encode("utf-8")
    name = "ObjectCreated:Put" if op == COPY else "ObjectRemoved:Delete"
    record = {"eventName": name, "eventSource": "s3s3", "s3": {"object": {"key": quote_plus(key)}}}
    return json.dumps({"Records": [record]}, separators=(",", ":")).encode("utf-8")


def parse_message(data: bytes | str, *, source_bucket: str | None = None,
                  key_encoding: str = "auto") -> Parsed:
    """Parse one message; raise :class:`MessageError` naming what is wrong with it.

    ``source_bucket``, when given, turns records for any other bucket into ``skipped``.
    """
    if key_encoding not in KEY_ENCODINGS:
        raise ValueError(f"key_encoding must be one of {KEY_ENCODINGS}, not {key_encoding!r}")
    if isinstance(data, str):
        text = data
        size = len(data.encode("utf-8", "surrogatepass"))
    else:
        size = len(data)
        text = None
    if size == 0:
        raise MessageError("empty message")
    if size > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {size:,} bytes is over the {MAX_MESSAGE_BYTES:,}-byte "
                           f"limit (starts {preview(data)})")
    if text is None:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"message is not UTF-8 (byte {exc.start}: "
                               f"{bytes(data)[exc.start:exc.start + 1]!r}; "
                               f"starts {preview(data)})") from None
    if text[0] in "{[":
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None  # not JSON: a key that happens to start with a bracket
        if isinstance(doc, (dict, list)):
            return _parse_document(doc, source_bucket=source_bucket, key_encoding=key_encoding)
    if size > MAX_KEY_BYTES:
        raise MessageError(f"key of {size:,} bytes is over the {MAX_KEY_BYTES:,}-byte S3 limit "
                           f"(starts {preview(text)})")
    return Parsed("key", (WorkItem(COPY, text),))


def parse_entry(fields: Mapping[Any, Any], *, source_bucket: str | None = None,
                key_encoding: str = "auto") -> Parsed:
    """Parse the fields of one stream entry.

    ``key`` (+ optional ``op``) is a key announced by :func:`~s3s3.sources.stream.add_entries`
    and is never format-detected; ``message`` holds a raw message (from the bridge or the
    MinIO list) and is parsed with :func:`parse_message`.
    """
    key = _field(fields, "key")
    if key is not None:
        try:
            text = key.decode("utf-8") if isinstance(key, (bytes, bytearray)) else str(key)
        except UnicodeDecodeError:
            raise MessageError(f"'key' field is not UTF-8 (starts {preview(key)})") from None
        op = _field(fields, "op")
        op = (op.decode("utf-8", "replace") if isinstance(op, (bytes, bytearray))
              else op) or COPY
        if op not in OPS:
            raise MessageError(f"'op' field is {op!r}; expected 'copy' or 'delete'")
        return Parsed("entry", (WorkItem(op, validate_key(text)),))
    message = _field(fields, "message")
    if message is not None:
        return parse_message(message, source_bucket=source_bucket, key_encoding=key_encoding)
    names = sorted(_text(k) for k in fields)
    raise MessageError("stream entry has neither a 'key' nor a 'message' field (fields: "
                       + (", ".join(names) if names else "none") + ")")


# --------------------------------------------------------------------------- internals


def _field(fields: Mapping[Any, Any], name: str):
    value = fields.get(name.encode("ascii"))
    return fields.get(name) if value is None else value


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _describe(doc: Any) -> str:
    if isinstance(doc, dict):
        keys = sorted(str(k) for k in doc)[:6]
        return "an object with keys " + (", ".join(repr(k) for k in keys) if keys else "none")
    if isinstance(doc, list):
        if not doc:
            return "an empty list"
        return f"a list whose first element is {_describe_value(doc[0])}"
    return _describe_value(doc)


def _describe_value(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


_SHAPES = ("expected an S3 event notification {\"Records\": [...]} or a MinIO access list "
           "[{\"Event\": [...], \"EventTime\": ...}]")


def _parse_document(doc: Any, *, source_bucket: str | None, key_encoding: str) -> Parsed:
    if isinstance(doc, dict):
        if "Records" in doc:
            records = doc["Records"]
            if not isinstance(records, list):
                raise MessageError(f"JSON of the wrong shape: 'Records' is "
                                   f"{_describe_value(records)}, not a list")
            if not records:
                raise MessageError("S3 event with an empty 'Records' list")
            return _parse_records(records, "s3-event", "Records", source_bucket, key_encoding)
        event = doc.get("Event")
        if isinstance(event, str) and event.endswith("TestEvent"):
            return Parsed("test-event", (), (Skipped(f"{event} (sent when notifications are "
                                                     "configured)", bucket=doc.get("Bucket"),
                                                     event=event),))
        raise MessageError(f"JSON of unknown shape: {_describe(doc)}; {_SHAPES}")
    if isinstance(doc, list) and doc and all(isinstance(e, dict) and "Event" in e for e in doc):
        records: list = []
        for i, element in enumerate(doc):
            events = element["Event"]
            if not isinstance(events, list):
                raise MessageError(f"JSON of the wrong shape: element {i} 'Event' is "
                                   f"{_describe_value(events)}, not a list")
            records.extend(events)
        if not records:
            raise MessageError("MinIO access entry with no events")
        return _parse_records(records, "minio-access", "Event", source_bucket, key_encoding)
    raise MessageError(f"JSON of unknown shape: {_describe(doc)}; {_SHAPES}")


def _parse_records(records: list, fmt: str, where: str, source_bucket: str | None,
                   key_encoding: str) -> Parsed:
    items: list[WorkItem] = []
    skipped: list[Skipped] = []
    for i, record in enumerate(records):
        result = _parse_record(record, f"{where}[{i}]", source_bucket, key_encoding)
        (items if isinstance(result, WorkItem) else skipped).append(result)
    return Parsed(fmt, tuple(items), tuple(skipped))


def _get(record: dict, path: str, what: str):
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise MessageError(f"{what}: missing '{path}'")
        value = value[part]
    return value


def _op_for(event: str) -> str | None:
    name = event[3:] if event.startswith("s3:") else event
    if name.startswith("ObjectCreated:"):
        return COPY
    if name == "ObjectLifecycle:Expiration:AbortMultipartUpload":
        return None  # an unfinished upload, not an object
    if name.startswith(("ObjectRemoved:", "LifecycleExpiration:", "ObjectLifecycle:Expiration:")):
        return DELETE
    return None


def _parse_record(record: Any, what: str, source_bucket: str | None,
                  key_encoding: str) -> WorkItem | Skipped:
    if not isinstance(record, dict):
        raise MessageError(f"JSON of the wrong shape: {what} is {_describe_value(record)}, "
                           "not an object")
    event = _get(record, "eventName", what)
    if not isinstance(event, str):
        raise MessageError(f"{what}: 'eventName' is {_describe_value(event)}, not a string")
    raw_key = _get(record, "s3.object.key", what)
    if not isinstance(raw_key, str) or not raw_key:
        raise MessageError(f"{what}: 's3.object.key' is "
                           f"{'empty' if raw_key == '' else _describe_value(raw_key)}")
    bucket = record.get("s3", {}).get("bucket", {})
    bucket = bucket.get("name") if isinstance(bucket, dict) else None
    if bucket is not None and not isinstance(bucket, str):
        raise MessageError(f"{what}: 's3.bucket.name' is {_describe_value(bucket)}, not a string")
    source = record.get("eventSource")
    # s3s3's own wrapped keys (encode_key_message) are always URL-encoded.
    raw = source != "s3s3" and (key_encoding == "raw"
                                or (key_encoding == "auto" and source in RAW_KEY_SOURCES))
    if raw:
        key = raw_key
    else:
        try:
            key = unquote_plus(raw_key, errors="strict")
        except UnicodeDecodeError:
            raise MessageError(f"{what}: 's3.object.key' {raw_key[:80]!r} does not decode to "
                               "UTF-8") from None
    try:
        validate_key(key)
    except MessageError as exc:
        raise MessageError(f"{what}: {exc}") from None
    op = _op_for(event)
    if op is None:
        return Skipped(f"event {event} changes no object", key=key, bucket=bucket, event=event)
    if source_bucket is not None and bucket is not None and bucket != source_bucket:
        return Skipped(f"bucket {bucket!r} is not the source bucket {source_bucket!r}",
                       key=key, bucket=bucket, event=event)
    return WorkItem(op, key, bucket=bucket, event=event)
