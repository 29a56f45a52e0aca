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
byte is ``{`` or ``[``, its brackets nest at most :data:`MAX_JSON_DEPTH` (32) levels deep
*and* the whole message parses as JSON. Such a document must have one of the shapes above,
otherwise it is reported as an error. Everything else is a plain key: ``[draft] notes.txt``
or ``{id}/photo.jpg`` fail to parse as JSON, and ``[[[...`` nests deeper than any event, so
they are keys, exactly as a 2015 user publishing them would expect. The depth is counted by
a cheap scan (brackets outside strings) *before* parsing, so the JSON decoder never
recurses deeply; a real event nests 5 or 6 levels. The one ambiguity left is a key that is
itself a JSON object or array (``{}``, ``[1]``); :func:`encode_key_message` (used by
``s3s3publish``) sends such a key wrapped in a minimal event, so it arrives intact.

The contract, for any input whatsoever (fuzzed: ``fuzz/fuzz_messages.py``):
:func:`parse_message` and :func:`parse_entry` return a :class:`Parsed` or raise
:class:`MessageError`; :func:`validate_key` and :func:`encode_key_message` return or raise
:class:`MessageError`; :func:`looks_like_event` raises nothing. (The one exception is
``ValueError`` for an unknown ``key_encoding`` argument: a programming error, not input.)
Error texts quote input only through :func:`preview` or similar cuts, so a hostile message
cannot flood the log. Numbers in a document are never converted (their value is never
used), so a 200,000-digit integer costs nothing and reads the same on every Python.

Keys: S3 keys are UTF-8, at most 1,024 bytes. A key that does not encode as strict UTF-8 (a
lone surrogate, which a JSON ``\\ud800`` escape or a ``str`` message can hold) is a bad
message, rejected at once: no store could hold it. Control characters, NUL included, are
passed on: S3 allows any UTF-8, and whether a store takes such a key is the store's
business (moto and AWS do; a store that refuses it fails that one copy).

Keys in events: AWS and MinIO URL-encode them with ``+`` for space (decoded here with
``unquote_plus``); Ceph RGW (checked on 16.2.15) sends them raw, so a ``+`` or ``%`` in a
Ceph key is literal. ``key_encoding="auto"`` (the default) therefore decodes unless the
record's ``eventSource`` is ``ceph:s3``; ``"url"`` and ``"raw"`` force one behaviour.

Order: a record's ``s3.object.sequencer`` becomes :attr:`WorkItem.sequence`, a number that
grows with later operations on the key (:func:`sequence_of`): AWS and MinIO send a hex
number; Ceph RGW sends the hex bytes of its clock (seconds, then nanoseconds, little-endian),
decoded here to nanoseconds. ``eventTime`` becomes :attr:`WorkItem.event_time` (seconds since
the epoch). Either is left out, not an error, when it does not read as such.

An SNS notification (``{"Type": "Notification", "Message": "..."}``, AWS's HTTP push) is
unwrapped once; a subscription confirmation is skipped with its ``SubscribeURL`` in the reason,
for the operator to confirm by hand.

Stream entries written by the push intakes (:func:`entry_fields`) carry the key, the op and
what the record said (bucket, event, sequence, time) as fields of their own, and a ``via``
field, which marks the item :attr:`~s3s3.model.WorkItem.compare`: a store that pushes
redelivers, so the destination is compared before a copy.

Event names: ``ObjectCreated:*`` copies; ``ObjectRemoved:*``, ``LifecycleExpiration:*``
(AWS) and ``ObjectLifecycle:Expiration:*`` (Ceph) delete; an ``s3:`` prefix is ignored.
Other events (reads, ACL, tagging, restores, the AWS ``s3:TestEvent``) change no object and
are skipped, as are records for a bucket other than the source bucket.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from s3s3.errors import MessageError
from s3s3.model import COPY, DELETE, MAX_MESSAGE_BYTES, OPS, RANGE, RangeWork, WorkItem

#: S3 limits a key to 1,024 bytes of UTF-8.
MAX_KEY_BYTES = 1024
#: Deepest bracket nesting read as JSON. A real event nests 5 levels (the document, Records,
#: a record, s3, object; a MinIO access list 6); deeper text is not an event, and is never
#: handed to the JSON decoder, whose recursion a 100,000-deep message would exhaust.
MAX_JSON_DEPTH = 32

KEY_ENCODINGS = ("auto", "url", "raw")
#: Event sources that put the key in a record unencoded.
RAW_KEY_SOURCES = frozenset({"ceph:s3"})

#: What a message may be: the data of a pub/sub message or a list entry, or a stream field.
Message = bytes | bytearray | memoryview | str

_PREVIEW_BYTES = 60
_SHORT_CHARS = 40


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

    format: str  # "key" | "entry" | "range" | "s3-event" | "minio-access" | "test-event"
    items: tuple[WorkItem, ...]
    skipped: tuple[Skipped, ...] = ()
    ranges: tuple[RangeWork, ...] = ()  # a range entry's work (format "range")


def preview(data: object) -> str:
    """A short, printable rendering of a message for log lines."""
    if isinstance(data, str):
        raw = data.encode("utf-8", "backslashreplace")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    else:
        raw = repr(data).encode("utf-8", "backslashreplace")
    shown = repr(raw[:_PREVIEW_BYTES])
    return shown + (f"... ({len(raw)} bytes)" if len(raw) > _PREVIEW_BYTES else "")


def validate_key(key: str) -> str:
    """Return ``key`` if S3 can hold it; raise :class:`MessageError` saying why not."""
    if not isinstance(key, str):
        raise MessageError(f"a key must be a str, not {type(key).__name__}")
    if not key:
        raise MessageError("empty key")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise MessageError(
            f"key is not UTF-8: a lone surrogate at character {exc.start} (starts {preview(key)})"
        ) from None
    if size > MAX_KEY_BYTES:
        raise MessageError(
            f"key of {size:,} bytes is over the {MAX_KEY_BYTES:,}-byte S3 limit "
            f"(starts {preview(key)})"
        )
    return key


def unparsable(exc: BaseException, data: object) -> str:
    """The log text for a message whose parsing raised ``exc``, which is not a MessageError.

    The contract above says this cannot happen; the intakes still treat it as a bad message
    (never as the end of their thread), and this is what they log and dead-letter.
    """
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    return (
        f"cannot be parsed ({type(exc).__name__}: {text}; a parser bug, please report it) "
        f"(starts {preview(data)})"
    )


def nests_deeper_than(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether brackets outside JSON strings nest deeper than ``limit`` anywhere in ``text``.

    Over the part of ``text`` that is valid JSON this is exactly the decoder's nesting, so a
    text for which this is false cannot make the decoder recurse more than ``limit`` levels
    (it stops at the first invalid character).
    """
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case, without a scan
    depth = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def looks_like_event(data: object) -> bool:
    """True when the detection rule reads ``data`` as an event document, not as a key."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        text = bytes(data).decode("utf-8", "replace")
    elif isinstance(data, str):
        text = data
    else:
        return False
    if not text or text[0] not in "{[" or nests_deeper_than(text):
        return False
    return isinstance(_decode_json(text), (dict, list))


def encode_key_message(key: str, *, op: str = COPY) -> bytes:
    """The pub/sub message that announces ``key``: the key itself when that is unambiguous.

    A delete, or a key the detection rule would read as JSON, is sent as a one-record
    S3 event instead (no bucket, so any listener accepts it).
    """
    validate_key(key)
    if op not in OPS:
        raise MessageError(f"unknown op {_short(op)} (expected copy or delete)")
    if op == COPY and not looks_like_event(key):
        return key.encode("utf-8")
    name = "ObjectCreated:Put" if op == COPY else "ObjectRemoved:Delete"
    record = {"eventName": name, "eventSource": "s3s3", "s3": {"object": {"key": quote_plus(key)}}}
    return json.dumps({"Records": [record]}, separators=(",", ":")).encode("utf-8")


def parse_message(
    data: Message, *, source_bucket: str | None = None, key_encoding: str = "auto"
) -> Parsed:
    """Parse one message; raise :class:`MessageError` naming what is wrong with it.

    ``source_bucket``, when given, turns records for any other bucket into ``skipped``.
    """
    if key_encoding not in KEY_ENCODINGS:
        raise ValueError(f"key_encoding must be one of {KEY_ENCODINGS}, not {key_encoding!r}")
    raw: bytes | None = None  # the bytes of a message that is not a str yet
    if isinstance(data, str):
        text = data
        size = len(data.encode("utf-8", "surrogatepass"))
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        size = len(raw)
        text = ""
    else:
        raise MessageError(f"a message must be bytes or str, not {type(data).__name__}")
    if size == 0:
        raise MessageError("empty message")
    if size > MAX_MESSAGE_BYTES:
        raise MessageError(
            f"message of {size:,} bytes is over the {MAX_MESSAGE_BYTES:,}-byte "
            f"limit (starts {preview(data)})"
        )
    if raw is not None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(
                f"message is not UTF-8 (byte {exc.start}: "
                f"{raw[exc.start : exc.start + 1]!r}; "
                f"starts {preview(raw)})"
            ) from None
    if text[0] in "{[":
        if nests_deeper_than(text):
            if size > MAX_KEY_BYTES:
                raise MessageError(
                    f"message nests brackets deeper than {MAX_JSON_DEPTH} "
                    f"levels, so it is no event, and at {size:,} bytes it is "
                    f"over the {MAX_KEY_BYTES:,}-byte limit of a key (starts "
                    f"{preview(text)})"
                )
        else:
            doc = _decode_json(text)  # None: a key that happens to start with a bracket
            if isinstance(doc, (dict, list)):
                return _parse_document(doc, source_bucket=source_bucket, key_encoding=key_encoding)
    return Parsed("key", (WorkItem(COPY, validate_key(text)),))


def parse_entry(
    fields: Mapping[Any, Any], *, source_bucket: str | None = None, key_encoding: str = "auto"
) -> Parsed:
    """Parse the fields of one stream entry.

    ``key`` (+ optional ``op``) is a key announced by :func:`~s3s3.queue.producer.add_entries`
    and is never format-detected; ``message`` holds a raw message (from the bridge or the
    MinIO list) and is parsed with :func:`parse_message`; ``op = range`` without a ``key``
    is a range of a ranged reconcile (:func:`range_entry_fields`), whose work comes back in
    :attr:`Parsed.ranges`.
    """
    if not isinstance(fields, Mapping):
        raise MessageError(f"stream entry must be a mapping of fields, not {type(fields).__name__}")
    key = _field(fields, "key")
    if key is None and _field(fields, "message") is None:
        op = _field(fields, "op")
        if op is not None and _field_text(op, "op") == RANGE:
            return Parsed("range", (), ranges=(parse_range_fields(fields),))
    if key is not None:
        text = _field_text(key, "key")
        op = _field(fields, "op")
        op = (_field_text(op, "op") if op is not None else "") or COPY
        if op not in OPS:
            raise MessageError(f"'op' field is {_short(op)}; expected 'copy' or 'delete'")
        item = WorkItem(op, validate_key(text), **_entry_extras(fields))
        if source_bucket is not None and item.bucket is not None and item.bucket != source_bucket:
            return Parsed("entry", (), (_other_bucket(item.bucket, source_bucket, item),))
        return Parsed("entry", (item,))
    message = _field(fields, "message")
    if message is not None:
        if not isinstance(message, (bytes, bytearray, memoryview, str)):
            raise MessageError(
                f"'message' field must be bytes or str, not {type(message).__name__}"
            )
        return parse_message(message, source_bucket=source_bucket, key_encoding=key_encoding)
    names = sorted(as_text(k) for k in fields)
    raise MessageError(
        "stream entry has neither a 'key' nor a 'message' field (fields: "
        + (", ".join(names) if names else "none")
        + ")"
    )


def entry_fields(item: WorkItem, *, via: str) -> dict[str, str]:
    """The stream entry a push intake writes for ``item``; :func:`parse_entry` reads it back.

    ``via`` names the intake (``http``, ``amqp``, ``swift``) and marks the item as one whose
    sender redelivers.
    """
    fields = {"key": item.key, "op": item.op, "via": via}
    if item.bucket is not None:
        fields["bucket"] = item.bucket
    if item.event is not None:
        fields["event"] = item.event
    if item.sequence is not None:
        fields["seq"] = str(item.sequence)
    if item.event_time is not None:
        fields["time"] = repr(item.event_time)
    if item.version_id is not None:
        fields["ver"] = item.version_id
    return fields


#: The longest run id read: s3s3bucket makes ids of 29 characters.
_MAX_RUN_ID = 64
_RUN_ID = re.compile(r"^[0-9A-Za-z_.-]+$")
#: The most ranges a run is split into (``s3s3bucket --ranges``).
MAX_RANGES = 10_000


def range_entry_fields(work: RangeWork) -> dict[str, str]:
    """The stream entry for one range of a ranged reconcile; :func:`parse_entry` reads it
    back. It has no ``key`` field, so that a listener that does not know ranges (before
    s3s3 had them) dead-letters it as a bad message rather than copying anything."""
    fields = {"op": RANGE, "run": work.run_id, "index": str(work.index)}
    if work.start_after is not None:
        fields["after"] = work.start_after
    if work.end is not None:
        fields["end"] = work.end
    fields["options"] = json.dumps(
        {
            "prefix": work.prefix,
            "include": list(work.include),
            "exclude": list(work.exclude),
            "size_only": work.size_only,
            "verify_md5": work.verify_md5,
            "destinations": list(work.destinations),
        },
        separators=(",", ":"),
    )
    return fields


def parse_range_fields(fields: Mapping[Any, Any]) -> RangeWork:
    """The :class:`RangeWork` of a range entry; :class:`MessageError` says what is wrong."""
    run = _field(fields, "run")
    if run is None:
        raise MessageError("range entry has no 'run' field")
    run_id = _field_text(run, "run")
    if not run_id or len(run_id) > _MAX_RUN_ID or not _RUN_ID.match(run_id):
        raise MessageError(f"'run' field is {_short(run_id)}; expected a run id")
    index_field = _field(fields, "index")
    index_text = "" if index_field is None else _field_text(index_field, "index")
    if not index_text.isascii() or not index_text.isdigit() or int(index_text) >= MAX_RANGES:
        raise MessageError(
            f"'index' field is {_short(index_text)}; expected a whole number below {MAX_RANGES}"
        )
    bounds: list[str | None] = []
    for name in ("after", "end"):
        value = _field(fields, name)
        bounds.append(None if value is None else _bound(_field_text(value, name), name))
    start_after, end = bounds
    if start_after is not None and end is not None and not start_after < end:
        raise MessageError(
            f"empty range: 'after' {_short(start_after)} is not below 'end' {_short(end)}"
        )
    options_field = _field(fields, "options")
    options: Any = {}
    if options_field is not None:
        text = _field_text(options_field, "options")
        if len(text) > MAX_MESSAGE_BYTES or nests_deeper_than(text):
            raise MessageError("'options' field is too large")
        options = _decode_json(text)
        if not isinstance(options, dict):
            raise MessageError(f"'options' field is not a JSON object (starts {preview(text)})")
    return RangeWork(
        run_id=run_id,
        index=int(index_text),
        start_after=start_after,
        end=end,
        prefix=_option_text(options, "prefix"),
        include=_option_texts(options, "include"),
        exclude=_option_texts(options, "exclude"),
        size_only=_option_flag(options, "size_only"),
        verify_md5=_option_flag(options, "verify_md5"),
        destinations=_option_texts(options, "destinations"),
    )


def _bound(text: str, name: str) -> str:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise MessageError(f"'{name}' field is not UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise MessageError(f"'{name}' field of {size:,} bytes is longer than any key")
    return text


def _option_text(options: dict, name: str) -> str:
    value = options.get(name, "")
    if not isinstance(value, str):
        raise MessageError(f"range option {name!r} is {_describe_value(value)}; expected a string")
    return value


def _option_texts(options: dict, name: str) -> tuple[str, ...]:
    value = options.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MessageError(f"range option {name!r} is {_describe_value(value)}; expected strings")
    return tuple(value)


def _option_flag(options: dict, name: str) -> bool:
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise MessageError(
            f"range option {name!r} is {_describe_value(value)}; expected true or false"
        )
    return value


#: The longest sequencer read: AWS documents no length; theirs and MinIO's are 16-20 digits.
_MAX_SEQUENCER = 64
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


def sequence_of(sequencer: str, *, source: str | None = None) -> int | None:
    """The order ``sequencer`` gives among one key's events, or None when it reads as none.

    AWS compares sequencers as hex numbers (shorter ones padded with zeros), and MinIO sends
    the event's Unix time in hex nanoseconds: both are the hex number. Ceph RGW (16.2)
    hex-encodes the bytes of its clock, 4 bytes of seconds then 4 of nanoseconds, each
    little-endian, which as a plain hex number would not grow with time.
    """
    text = sequencer.strip()
    if not text or len(text) > _MAX_SEQUENCER or not _HEX.match(text):
        return None
    if source in RAW_KEY_SOURCES and len(text) == 16:
        raw = bytes.fromhex(text)
        seconds = int.from_bytes(raw[:4], "little")
        nanos = int.from_bytes(raw[4:], "little")
        if nanos >= 1_000_000_000:
            return None
        return seconds * 1_000_000_000 + nanos
    return int(text, 16)


_ISO_TIME = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\.\d{1,9})?"
    r"(Z|[+-]\d\d:?\d\d)?$"
)


def event_time_of(text: str) -> float | None:
    """Seconds since the epoch for an ISO 8601 ``eventTime`` (UTC when no offset is given),
    or None when it reads as no time (Python 3.10's ``fromisoformat`` reads neither ``Z`` nor
    MinIO's three digits of fraction in every form, hence this)."""
    match = _ISO_TIME.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    try:
        value = float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    except (OverflowError, ValueError):
        return None
    if match.group(7):
        value += float(match.group(7))
    offset = match.group(8)
    if offset and offset != "Z":
        digits = offset[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:])
        value -= (1 if offset[0] == "+" else -1) * minutes * 60
    return value


# --------------------------------------------------------------------------- internals


def _entry_extras(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """The optional fields of a push intake's entry (see :func:`entry_fields`)."""
    extras: dict[str, Any] = {}
    for name, attr in (("bucket", "bucket"), ("event", "event")):
        value = _field(fields, name)
        if value is not None:
            extras[attr] = _field_text(value, name)
    seq = _field(fields, "seq")
    if seq is not None:
        text = _field_text(seq, "seq")
        if not text.isdigit() or not text.isascii() or len(text) > 80:
            raise MessageError(f"'seq' field is {_short(text)}; expected a whole number")
        extras["sequence"] = int(text)
    when = _field(fields, "time")
    if when is not None:
        text = _field_text(when, "time")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or len(text) > 40:
            raise MessageError(f"'time' field is {_short(text)}; expected seconds since the epoch")
        extras["event_time"] = value
    version = _field(fields, "ver")
    if version is not None:
        text = _field_text(version, "ver")
        if not text or len(text) > MAX_VERSION_ID:
            raise MessageError(f"'ver' field is {_short(text)}; expected a version id")
        extras["version_id"] = text
    if _field(fields, "via") is not None:
        extras["compare"] = True
    return extras


def _other_bucket(bucket: str, source_bucket: str, item: WorkItem) -> Skipped:
    return Skipped(
        f"bucket {_short(bucket)} is not the source bucket {source_bucket!r}",
        key=item.key,
        bucket=bucket,
        event=item.event,
    )


#: A JSON string (skipped whole, escapes included; unterminated runs to the end) or a bracket.
_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


class _Number:
    """A JSON number, kept as text: the parser never uses a number's value."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


_INT = _Number("int")
_FLOAT = _Number("float")


def _decode_json(text: str) -> Any:
    """The JSON document ``text`` holds, or None when it is not JSON.

    Call it only on text that :func:`nests_deeper_than` passed.
    """
    try:
        return json.loads(
            text,
            parse_int=lambda _s: _INT,
            parse_float=lambda _s: _FLOAT,
            parse_constant=lambda _s: _FLOAT,
        )
    except (ValueError, RecursionError):
        # RecursionError cannot happen below the depth limit; kept so that a decoder
        # change can only make a message "not JSON", never crash the caller.
        return None


def _short(value: Any) -> str:
    """``repr(value)``, cut to a length fit for an error message."""
    if isinstance(value, str) and len(value) > _SHORT_CHARS:
        return f"{value[:_SHORT_CHARS]!r}... ({len(value):,} characters)"
    shown = repr(value)
    return shown if len(shown) <= 2 * _SHORT_CHARS else shown[: 2 * _SHORT_CHARS] + "..."


def _field(fields: Mapping[Any, Any], name: str):
    value = fields.get(name.encode("ascii"))
    return fields.get(name) if value is None else value


def _field_text(value: Any, name: str) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError(f"'{name}' field is not UTF-8 (starts {preview(value)})") from None
    if isinstance(value, str):
        return value
    raise MessageError(f"'{name}' field must be bytes or str, not {type(value).__name__}")


def as_text(value: object) -> str:
    """A field name, field value or id as text (bytes decoded, undecodable bytes replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _describe(doc: Any) -> str:
    if isinstance(doc, dict):
        keys = sorted(str(k) for k in doc)[:6]
        return "an object with keys " + (", ".join(_short(k) for k in keys) if keys else "none")
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
    if isinstance(value, _Number):
        return value.kind
    return "null" if value is None else type(value).__name__


_SHAPES = (
    'expected an S3 event notification {"Records": [...]} or a MinIO access list '
    '[{"Event": [...], "EventTime": ...}]'
)


def _parse_document(
    doc: Any, *, source_bucket: str | None, key_encoding: str, enveloped: bool = False
) -> Parsed:
    if isinstance(doc, dict):
        if "Records" in doc:
            records = doc["Records"]
            if not isinstance(records, list):
                raise MessageError(
                    f"JSON of the wrong shape: 'Records' is {_describe_value(records)}, not a list"
                )
            if not records:
                raise MessageError("S3 event with an empty 'Records' list")
            return _parse_records(records, "s3-event", "Records", source_bucket, key_encoding)
        kind = doc.get("Type")
        if kind == "Notification" and isinstance(doc.get("Message"), str) and not enveloped:
            inner = doc["Message"]
            if not inner.startswith(("{", "[")) or nests_deeper_than(inner):
                raise MessageError(
                    f"SNS notification whose 'Message' is no event (starts {preview(inner)})"
                )
            return _parse_document(
                _decode_json(inner),
                source_bucket=source_bucket,
                key_encoding=key_encoding,
                enveloped=True,
            )
        if kind == "SubscriptionConfirmation":
            url = doc.get("SubscribeURL")
            topic = doc.get("TopicArn")
            return Parsed(
                "test-event",
                (),
                (
                    Skipped(
                        "SNS subscription confirmation for topic "
                        f"{_short(topic)}: confirm it by opening its SubscribeURL "
                        f"{_short(url) if not isinstance(url, str) else url[:300]}",
                        event="SubscriptionConfirmation",
                    ),
                ),
            )
        event = doc.get("Event")
        if isinstance(event, str) and event.endswith("TestEvent"):
            bucket = doc.get("Bucket")
            return Parsed(
                "test-event",
                (),
                (
                    Skipped(
                        f"{event[:80]} (sent when notifications are configured)",
                        bucket=bucket if isinstance(bucket, str) else None,
                        event=event,
                    ),
                ),
            )
        raise MessageError(f"JSON of unknown shape: {_describe(doc)}; {_SHAPES}")
    if isinstance(doc, list) and doc and all(isinstance(e, dict) and "Event" in e for e in doc):
        flat: list = []
        for i, element in enumerate(doc):
            events = element["Event"]
            if not isinstance(events, list):
                raise MessageError(
                    f"JSON of the wrong shape: element {i} 'Event' is "
                    f"{_describe_value(events)}, not a list"
                )
            flat.extend(events)
        if not flat:
            raise MessageError("MinIO access entry with no events")
        return _parse_records(flat, "minio-access", "Event", source_bucket, key_encoding)
    raise MessageError(f"JSON of unknown shape: {_describe(doc)}; {_SHAPES}")


def _parse_records(
    records: list, fmt: str, where: str, source_bucket: str | None, key_encoding: str
) -> Parsed:
    items: list[WorkItem] = []
    skipped: list[Skipped] = []
    for i, record in enumerate(records):
        result = _parse_record(record, f"{where}[{i}]", source_bucket, key_encoding)
        if isinstance(result, WorkItem):
            items.append(result)
        else:
            skipped.append(result)
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


def _parse_record(
    record: Any, what: str, source_bucket: str | None, key_encoding: str
) -> WorkItem | Skipped:
    if not isinstance(record, dict):
        raise MessageError(
            f"JSON of the wrong shape: {what} is {_describe_value(record)}, not an object"
        )
    event = _get(record, "eventName", what)
    if not isinstance(event, str):
        raise MessageError(f"{what}: 'eventName' is {_describe_value(event)}, not a string")
    raw_key = _get(record, "s3.object.key", what)
    if not isinstance(raw_key, str) or not raw_key:
        raise MessageError(
            f"{what}: 's3.object.key' is {'empty' if raw_key == '' else _describe_value(raw_key)}"
        )
    bucket = record["s3"].get("bucket")  # _get checked that "s3" is an object
    if bucket is not None and not isinstance(bucket, dict):
        raise MessageError(f"{what}: 's3.bucket' is {_describe_value(bucket)}, not an object")
    bucket = bucket.get("name") if bucket is not None else None
    if bucket is not None and not isinstance(bucket, str):
        raise MessageError(f"{what}: 's3.bucket.name' is {_describe_value(bucket)}, not a string")
    source = record.get("eventSource")
    if source is not None and not isinstance(source, str):
        raise MessageError(f"{what}: 'eventSource' is {_describe_value(source)}, not a string")
    # s3s3's own wrapped keys (encode_key_message) are always URL-encoded.
    raw = source != "s3s3" and (
        key_encoding == "raw" or (key_encoding == "auto" and source in RAW_KEY_SOURCES)
    )
    if raw:
        key = raw_key
    else:
        try:
            key = unquote_plus(raw_key, errors="strict")
        except UnicodeDecodeError:
            raise MessageError(
                f"{what}: 's3.object.key' {_short(raw_key)} does not decode to UTF-8"
            ) from None
    try:
        validate_key(key)
    except MessageError as exc:
        raise MessageError(f"{what}: {exc}") from None
    op = _op_for(event)
    if op is None:
        return Skipped(f"event {event[:80]} changes no object", key=key, bucket=bucket, event=event)
    item = WorkItem(op, key, bucket=bucket, event=event, **_record_order(record, source, what))
    if source_bucket is not None and bucket is not None and bucket != source_bucket:
        return _other_bucket(bucket, source_bucket, item)
    return item


#: The longest version id read: AWS's are 32 characters, Ceph's 32, Swift's 16-20.
MAX_VERSION_ID = 1024


def _record_order(record: dict, source: str | None, what: str) -> dict[str, Any]:
    """``sequence``, ``event_time`` and ``version_id`` of a record, where it gives them
    (an empty ``versionId``, as Ceph sends for an unversioned bucket, gives none)."""
    extras: dict[str, Any] = {}
    version = record["s3"]["object"].get("versionId")
    if version is not None:
        if not isinstance(version, str) or len(version) > MAX_VERSION_ID:
            raise MessageError(
                f"{what}: 's3.object.versionId' is {_describe_value(version)}, not a version id"
            )
        if version:
            extras["version_id"] = version
    sequencer = record["s3"]["object"].get("sequencer")
    if sequencer is not None:
        if not isinstance(sequencer, str):
            raise MessageError(
                f"{what}: 's3.object.sequencer' is {_describe_value(sequencer)}, not a string"
            )
        sequence = sequence_of(sequencer, source=source)
        if sequence is not None:
            extras["sequence"] = sequence
    when = record.get("eventTime")
    if when is not None:
        if not isinstance(when, str):
            raise MessageError(f"{what}: 'eventTime' is {_describe_value(when)}, not a string")
        event_time = event_time_of(when)
        if event_time is not None:
            extras["event_time"] = event_time
    return extras
