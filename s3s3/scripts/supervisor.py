"""supervisord's event-listener protocol, as an event listener speaks it.

The listener writes ``READY\\n``; supervisord sends one header line of ``name:value``
tokens (``ver:3.0 server:supervisor serial:21 ... eventname:TICK_60 len:15``) and then
``len`` bytes of payload; the listener answers ``RESULT <n>\\n`` and ``n`` bytes, ``OK`` or
``FAIL`` (supervisord then sends the event again), and is ready again. This is what
``supervisor.childutils.listener`` does, on binary streams and without the dependency.

Standard output belongs to the protocol: the caller sees that nothing else writes there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)

READY = b"READY\n"
OK = b"OK"
FAIL = b"FAIL"


@dataclass(frozen=True)
class Event:
    """One event from supervisord: its header tokens and its payload."""

    headers: dict[str, str]
    payload: bytes = b""

    @property
    def name(self) -> str:
        """``eventname``: ``TICK_60``, ``PROCESS_STATE_RUNNING``..."""
        return self.headers.get("eventname", "")


def parse_header(line: str) -> dict[str, str]:
    """``ver:3.0 server:supervisor ... eventname:TICK_5 len:15`` as a dict."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def encode_result(data: bytes) -> bytes:
    """A listener's answer: ``RESULT <len>\\n`` and the data."""
    return b"RESULT %d\n%s" % (len(data), data)


class EventListener:
    """The listener's side of the protocol on binary ``stdin`` and ``stdout``."""

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO) -> None:
        self.stdin = stdin
        self.stdout = stdout

    def ready(self) -> None:
        """Tell supervisord that the next event may come."""
        self._write(READY)

    def next_event(self) -> Event | None:
        """Wait for the next event; None when supervisord closed standard input (it is
        gone, or stopping us), even in the middle of an event."""
        header = self.stdin.readline()
        if not header:
            log.info("supervisord closed standard input; exiting")
            return None
        headers = parse_header(header.decode("utf-8", "replace"))
        length = int(headers.get("len", "0"))
        payload = self.stdin.read(length) if length else b""
        if len(payload) < length:
            log.info("supervisord closed standard input mid-event; exiting")
            return None
        return Event(headers, payload)

    def ok(self) -> None:
        """The event was handled."""
        self._write(encode_result(OK))

    def fail(self) -> None:
        """The event could not be handled: supervisord sends it again."""
        self._write(encode_result(FAIL))

    def _write(self, data: bytes) -> None:
        self.stdout.write(data)
        self.stdout.flush()
