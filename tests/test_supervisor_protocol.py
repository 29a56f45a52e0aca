"""supervisord's event-listener protocol (s3s3.scripts.supervisor) on byte streams."""

from __future__ import annotations

import io
import logging

from s3s3.scripts.supervisor import Event, EventListener, encode_result, parse_header

HEADER = b"ver:3.0 server:supervisor serial:21 pool:s3s3bucket poolserial:10 eventname:%s len:%d\n"


def event_bytes(name: str, payload: bytes) -> bytes:
    return HEADER % (name.encode(), len(payload)) + payload


def test_parse_header():
    assert parse_header(
        "ver:3.0 server:supervisor serial:21 pool:listener poolserial:10 eventname:TICK_5 len:15\n"
    ) == {
        "ver": "3.0",
        "server": "supervisor",
        "serial": "21",
        "pool": "listener",
        "poolserial": "10",
        "eventname": "TICK_5",
        "len": "15",
    }


def test_a_listener_reads_events_one_after_another_with_their_payloads():
    stdin = io.BytesIO(
        event_bytes("TICK_60", b"when:1700000000")
        + event_bytes("PROCESS_STATE_RUNNING", b"processname:x groupname:x\nwith a newline")
        + event_bytes("TICK_5", b"")
    )
    listener = EventListener(stdin, io.BytesIO())
    first = listener.next_event()
    assert first == Event(parse_header((HEADER % (b"TICK_60", 15)).decode()), b"when:1700000000")
    assert first.name == "TICK_60"
    second = listener.next_event()
    assert second.name == "PROCESS_STATE_RUNNING"
    assert second.payload == b"processname:x groupname:x\nwith a newline"
    third = listener.next_event()
    assert (third.name, third.payload) == ("TICK_5", b"")
    assert listener.next_event() is None  # supervisord closed standard input


def test_an_event_cut_short_ends_the_listener(caplog):
    stdin = io.BytesIO(event_bytes("TICK_60", b"when:1700000000")[:-4])
    with caplog.at_level(logging.INFO, logger="s3s3.scripts.supervisor"):
        assert EventListener(stdin, io.BytesIO()).next_event() is None
    assert "closed standard input mid-event" in caplog.text


def test_the_listener_answers_ready_ok_and_fail_as_supervisord_reads_them():
    stdout = io.BytesIO()
    listener = EventListener(io.BytesIO(), stdout)
    listener.ready()
    listener.ok()
    listener.ready()
    listener.fail()
    assert stdout.getvalue() == b"READY\nRESULT 2\nOKREADY\nRESULT 4\nFAIL"
    assert encode_result(b"") == b"RESULT 0\n"
    assert encode_result("d\u00e9j\u00e0".encode()) == b"RESULT 6\nd\xc3\xa9j\xc3\xa0"


def test_an_event_without_a_name_or_length_is_an_empty_event():
    event = EventListener(io.BytesIO(b"ver:3.0 server:supervisor\n"), io.BytesIO()).next_event()
    assert event == Event({"ver": "3.0", "server": "supervisor"}, b"")
    assert event.name == ""
