"""A small HTTP proxy for tests: forwards to an S3 server, and misbehaves on request.

Faults: answer 5xx (``fail_status``, with the S3 error code ``fail_code``: SlowDown, say)
for the next N requests, or for good for the requests a predicate picks
(``fail_if``), stall chosen requests (``delay_if``), corrupt GET bodies, replace PUT ETags,
or refuse connections (``stop``). It also counts requests by method, and records each
(method, path, and headers in ``sent``), so a test can show that a run downloaded nothing,
how many requests one key sent, or which byte range a GET asked for; ``before`` is a hook
called at each request.
"""

from __future__ import annotations

import collections
import http.client
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHUNK = 256 * 1024
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
}


class FaultProxy:
    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname, parts.port or 80)
        self.fail_next = 0
        self.fail_status = 503
        self.fail_code = "ServiceUnavailable"  # the S3 error code of a failed answer
        self.fail_methods: set[str] | None = None  # None: any method
        # Fails every request it answers True for (method, path), for as long as it is set.
        self.fail_if: Callable[[str, str], bool] | None = None
        # Seconds to stall a request it answers a number for (method, path) before reading
        # its body: a slow destination (the sender blocks once the socket buffers fill).
        self.delay_if: Callable[[str, str], float] | None = None
        self.corrupt_get_body = False
        self.fake_put_etag: str | None = None
        self.counts: collections.Counter = collections.Counter()
        #: (monotonic time, method, path) of every request, in arrival order.
        self.requests: list[tuple[float, str, str]] = []
        #: (method, path, headers with lower-case names) of every request, in arrival order.
        self.sent: list[tuple[str, str, dict[str, str]]] = []
        #: Called with (method, path) before a request is answered, outside the lock: a
        #: test's hook to act at a given request (kill a client, count, wait).
        self.before: Callable[[str, str], None] | None = None
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = _free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _handle(self):
                with proxy.lock:
                    proxy.counts[self.command] += 1
                    proxy.requests.append((time.monotonic(), self.command, self.path))
                    proxy.sent.append(
                        (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                    )
                    fail = proxy.fail_next > 0 and (
                        proxy.fail_methods is None or self.command in proxy.fail_methods
                    )
                    if fail:
                        proxy.fail_next -= 1
                    elif proxy.fail_if is not None:
                        fail = proxy.fail_if(self.command, self.path)
                    delay = (
                        0.0 if proxy.delay_if is None else proxy.delay_if(self.command, self.path)
                    )
                if delay:
                    time.sleep(delay)
                length = int(self.headers.get("Content-Length") or 0)
                if proxy.before is not None:
                    proxy.before(self.command, self.path)
                if fail:
                    self._drain(length)
                    body = (
                        f"<Error><Code>{proxy.fail_code}</Code><Message>fault proxy"
                        "</Message></Error>"
                    ).encode()
                    self.send_response(proxy.fail_status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in HOP_HEADERS and k.lower() != "expect"
                }
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers.items():
                    conn.putheader(k, v)
                conn.endheaders()
                left = length
                while left > 0:
                    data = self.rfile.read(min(CHUNK, left))
                    if not data:
                        break
                    conn.send(data)
                    left -= len(data)
                resp = conn.getresponse()
                self.send_response(resp.status, resp.reason)
                corrupt = (
                    proxy.corrupt_get_body and self.command == "GET" and resp.status in (200, 206)
                )
                whole = None
                if resp.getheader("Content-Length") is None and self.command != "HEAD":
                    # A chunked answer (RGW lists that way): re-frame it with a length,
                    # since the chunk framing is a hop-by-hop matter this proxy drops.
                    whole = resp.read()
                    self.send_header("Content-Length", str(len(whole)))
                for k, v in resp.getheaders():
                    if k.lower() in HOP_HEADERS:
                        continue
                    if k.lower() == "etag" and self.command == "PUT" and proxy.fake_put_etag:
                        v = f'"{proxy.fake_put_etag}"'
                    self.send_header(k, v)
                self.end_headers()
                if whole is not None:
                    self.wfile.write(whole)
                    conn.close()
                    return
                first = True
                while True:
                    data = resp.read(CHUNK)
                    if not data:
                        break
                    if corrupt and first:
                        data = bytes([data[0] ^ 0xFF]) + data[1:]
                    first = False
                    self.wfile.write(data)
                conn.close()

            def _drain(self, length):
                while length > 0:
                    data = self.rfile.read(min(CHUNK, length))
                    if not data:
                        break
                    length -= len(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused (the destination is 'down')."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that hung up (a test ending, a broken-off upload) is not news.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
