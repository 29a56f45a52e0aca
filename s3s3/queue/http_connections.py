"""The connections the HTTP intake serves, and which of them are in the middle of a request,
so that a stop closes the idle ones at once and waits a grace period for the others.

Bookkeeping only: the intake's server adds a connection when it accepts it and removes it
when it is done; its handler marks the connection busy from the request line to the answer.
Thread-safe.
"""

from __future__ import annotations

import socket
import threading
import time


class Connections:
    """The connections being served, and which of them are in the middle of a request, so
    that a stop closes the idle ones at once and waits for the others."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.busy: dict[socket.socket, bool] = {}
        self.stopping = False

    def add(self, conn: socket.socket) -> None:
        with self.cond:
            self.busy[conn] = False

    def remove(self, conn: socket.socket) -> None:
        with self.cond:
            self.busy.pop(conn, None)
            self.cond.notify_all()

    def mark(self, conn: socket.socket, busy: bool) -> None:
        with self.cond:
            if conn in self.busy:
                self.busy[conn] = busy

    def close_idle(self) -> None:
        with self.cond:
            self.stopping = True
            idle = [c for c, busy in self.busy.items() if not busy]
        for conn in idle:
            wake(conn)

    def wait_empty(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while self.busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            rest = list(self.busy)
        for conn in rest:
            wake(conn)
        return not rest


def wake(conn: socket.socket) -> None:
    """End the reads of a connection another thread serves: its handler sees the end of the
    stream and returns. The plain socket's shutdown, also under TLS: the TLS layer's own
    would tear down state the serving thread is using."""
    try:
        socket.socket.shutdown(conn, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its thread


__all__ = ["Connections", "wake"]
