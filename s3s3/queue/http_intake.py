"""The HTTP intake: where Ceph RGW, MinIO (webhook target) and AWS SNS POST S3 event
notifications, each body answered 200 only once its records are in the stream.

    POST /<token>                          Ceph RGW (push-endpoint = http://host:port/<token>)
    POST /any/path + Authorization: Bearer <token>        MinIO's webhook auth_token

It is the stdlib's :class:`http.server.ThreadingHTTPServer`, not a web framework: it adds no
dependency, and each request is one parse and one XADD, which a thread per connection serves
at a few hundred POSTs a second with room to spare. The load that matters is the bad case: an
RGW persistent topic retries a failed push in a tight loop (about 500 POSTs a second against
an endpoint answering 500 or 503), so every refusal here is cheap: no body is read that need
not be, and repeated identical refusals are logged once per :data:`QUIET_S`, not once each.

The answers (each with ``Content-Length`` and a small JSON body; HTTP/1.1 keep-alive, which
RGW's libcurl uses):

    200  {"queued": n, "skipped": m}   the records are in the stream (or were for another
                                       bucket, or change no object: skipped, counted)
    400  {"error": "..."}              the body is not an event document: the parser says why
    401  (WWW-Authenticate: Bearer)    no token at all;  403: a wrong token
    405  (Allow: POST)                 not a POST
    411                                no Content-Length (chunked bodies are not taken)
    413                                Content-Length over [http] max_body (the body is not read)
    415                                Content-Type not application/json or text/plain
    503  (Retry-After: 1)              Redis cannot take the entries now: the sender retries
    500                                a bug here, logged with its traceback; serving goes on

Refusals that precede the body either read and drop it (so the connection stays usable) or,
when it is too large or of unknown length, close the connection. At most ``max_connections``
connections are served at once; more wait in the listen backlog. The token never appears in
a log line, an answer or a repr: paths are logged as ``/***``.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from s3s3.config import HttpConfig
from s3s3.errors import MessageError, QueueUnavailable, RedisFatal
from s3s3.queue.announce import Announcer
from s3s3.queue.http_connections import Connections
from s3s3.queue.tally import Tally
from s3s3.queue.throttle import LogThrottle

log = logging.getLogger("s3s3.intake")

VIA = "http"
#: What a path is logged as: it may be the token, or a near miss of it.
MASKED_PATH = "/***"
#: The media types senders use: RGW and MinIO send application/json, AWS SNS text/plain.
CONTENT_TYPES = frozenset({"application/json", "text/plain"})
#: A refusal repeated (same status, client and reason) within this many seconds is counted
#: but not logged again, so a sender retrying in a tight loop cannot flood the log.
QUIET_S = 5.0
#: How long ``serve`` waits, after a stop, for requests in hand (shorter than the 10 s
#: ``s3s3intake`` gives its threads, so the intake returns on its own).
GRACE_S = 8.0
#: How long the accept loop waits for a free connection slot before looking again (and
#: at whether it was told to stop).
SLOT_WAIT_S = 0.25


class _Server(ThreadingHTTPServer):
    """The listening socket and the thread per connection, bounded by connection slots."""

    daemon_threads = True
    block_on_close = False  # serve() waits for requests in hand itself, with a deadline
    allow_reuse_port = False  # a second intake on the same port must fail, not share it
    request_queue_size = socket.SOMAXCONN

    def __init__(self, intake: HttpIntake, address: tuple[str, int], family: int) -> None:
        self.intake = intake
        self.address_family = family
        self.slots = threading.BoundedSemaphore(intake.cfg.max_connections)
        self.connections = Connections()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own looks up the host's FQDN, which can stall on DNS; nothing here
        # uses the name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def get_request(self) -> tuple[Any, Any]:
        # A free slot before accept(): beyond max_connections, clients wait in the backlog.
        # OSError is what the accept loop expects when there is nothing to take now.
        if not self.slots.acquire(timeout=SLOT_WAIT_S):
            raise OSError("every connection slot is taken")
        try:
            conn, address = self.socket.accept()
            conn.settimeout(self.intake.cfg.timeout_s)
            if self.intake.tls is not None:
                # The handshake happens in the connection's thread (finish_request): a slow
                # or broken client must not hold up accept().
                conn = self.intake.tls.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                )
        except BaseException:
            self.slots.release()
            raise
        self.connections.add(conn)
        return conn, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                self.intake.quiet.log(
                    ("tls", client_address[0], type(exc).__name__),
                    "HTTP intake: TLS handshake with %s failed: %s",
                    _client(client_address),
                    exc,
                )
                return
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        # Called exactly once for every request get_request returned.
        try:
            super().shutdown_request(request)
        finally:
            self.connections.remove(request)
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Instead of socketserver's traceback on stderr.
        self.intake.quiet.log(
            ("error", client_address[0]),
            "HTTP intake: connection from %s failed",
            _client(client_address),
            exc_info=True,
        )


def _client(address: Any) -> str:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return str(address)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


@dataclass
class _Refusal:
    """An answer other than 200, decided before or after reading the body."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False  # the connection cannot serve another request


class _Handler(BaseHTTPRequestHandler):
    """One connection: its requests, one after the other (keep-alive)."""

    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "s3s3intake"
    sys_version = ""  # the Server header names no Python version
    wbufsize = -1  # headers and body leave in one write, not two small ones
    disable_nagle_algorithm = True
    body_read = False

    # ------------------------------------------------------------------ request framing

    def parse_request(self) -> bool:
        # The request line is in: this connection is busy until its answer is out.
        self.server.connections.mark(self.connection, True)
        self.body_read = False
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self.server.connections.mark(self.connection, False)
            if self.server.connections.stopping:
                self.close_connection = True

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError) as exc:
            # The client went away mid-answer; there is no one to tell.
            log.debug("HTTP intake: connection from %s ended: %s", self.who(), exc)

    def handle_expect_100(self) -> bool:
        # Refuse before the client sends a body it need not send.
        refusal = self.check_request()
        if refusal is not None:
            refusal.close = True  # the client may send its body anyway: do not read it
            self.refuse(refusal)
            return False
        ok = super().handle_expect_100()
        self.wfile.flush()  # the buffered writer holds the 100 Continue otherwise
        return ok

    # ------------------------------------------------------------------ methods

    def do_POST(self) -> None:
        try:
            refusal = self.check_request()
            if refusal is None:
                body = self.read_body()
                refusal = body if isinstance(body, _Refusal) else self.take(body)
            if refusal is not None:
                self.refuse(refusal)
        except Exception:  # the outermost loop of a request: a bug, answered 500
            self.fail()

    def do_other(self) -> None:
        refusal = self.check_request()  # not a POST: always a refusal
        if refusal is not None:
            self.refuse(refusal)

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_other
    do_TRACE = do_CONNECT = do_other

    # ------------------------------------------------------------------ the checks

    def check_request(self) -> _Refusal | None:
        """The refusal of a request that must not be read further, if it is one."""
        intake = self.server.intake
        if self.command != "POST":
            return _Refusal(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"method {self.command} not allowed: event notifications are POSTed",
                headers=(("Allow", "POST"),),
            )
        presented = intake.authenticate(self.path, self.headers.get("Authorization"))
        if presented is None:
            return _Refusal(
                HTTPStatus.UNAUTHORIZED,
                "no token: POST to /<token> or send 'Authorization: Bearer <token>'",
                headers=(("WWW-Authenticate", 'Bearer realm="s3s3intake"'),),
            )
        if not presented:
            return _Refusal(HTTPStatus.FORBIDDEN, "wrong token")
        given = self.headers.get("Content-Type")
        if given is None:
            return _Refusal(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "no Content-Type: send application/json or text/plain",
            )
        # The media type without its parameters (charset=UTF-8 from SNS); read here rather
        # than with email's get_content_type(), which takes anything without a "/" for
        # text/plain.
        ctype = given.split(";", 1)[0].strip().lower()
        if ctype not in CONTENT_TYPES:
            return _Refusal(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type {_short(ctype)} not taken: send application/json or text/plain",
            )
        if "Transfer-Encoding" in self.headers:
            return _Refusal(
                HTTPStatus.LENGTH_REQUIRED,
                "Transfer-Encoding is not taken: send the body with a Content-Length",
                close=True,
            )
        try:
            length = self.content_length()
        except ValueError as exc:
            return _Refusal(HTTPStatus.BAD_REQUEST, str(exc), close=True)
        if length is None:
            return _Refusal(HTTPStatus.LENGTH_REQUIRED, "no Content-Length", close=True)
        if length > intake.cfg.max_body:
            return _Refusal(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes is over the limit of {intake.cfg.max_body} bytes "
                "([http] max_body)",
                close=True,
            )
        return None

    def content_length(self) -> int | None:
        """The Content-Length, None without one; ValueError when it is not one number."""
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return None
        text = values[0].strip()
        if len({v.strip() for v in values}) > 1 or not text.isdigit() or not text.isascii():
            raise ValueError(f"Content-Length {_short(', '.join(values))} is not one whole number")
        return int(text)

    def read_body(self) -> bytes | _Refusal:
        length = self.content_length() or 0  # checked by check_request
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            return _Refusal(
                HTTPStatus.REQUEST_TIMEOUT,
                f"body not received within {self.server.intake.cfg.timeout_s:g} s",
                close=True,
            )
        self.body_read = True
        if len(body) < length:
            return _Refusal(
                HTTPStatus.BAD_REQUEST,
                f"body ended after {len(body)} of {length} bytes",
                close=True,
            )
        return body

    def drop_body(self) -> bool:
        """Read and drop the body of a refused request, so the connection can serve the
        next one; False when it cannot be (too large, unknown length, not arriving)."""
        if self.body_read:
            return True
        if "Transfer-Encoding" in self.headers:
            return False
        try:
            length = self.content_length()
        except ValueError:
            return False
        if not length:
            return True
        if length > self.server.intake.cfg.max_body:
            return False
        try:
            return len(self.rfile.read(length)) == length
        except OSError:
            return False

    # ------------------------------------------------------------------ the work

    def take(self, body: bytes) -> _Refusal | None:
        """Queue the records of ``body`` and answer 200, or say why not."""
        intake = self.server.intake
        try:
            parsed = intake.announcer.parse(body)
        except MessageError as exc:
            intake.tally.add("records", outcome="bad", intake=VIA)
            return _Refusal(HTTPStatus.BAD_REQUEST, str(exc))
        try:
            announced = intake.announcer.announce(parsed)
        except QueueUnavailable as exc:
            return _Refusal(
                HTTPStatus.SERVICE_UNAVAILABLE, str(exc), headers=(("Retry-After", "1"),)
            )
        except RedisFatal as exc:
            self.refuse(
                _Refusal(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "Redis refuses s3s3; the intake stops",
                    headers=(("Retry-After", "1"),),
                    close=True,
                )
            )
            intake.fatal(exc)  # serve() raises it, now that the sender has its answer
            return None
        self.answer(HTTPStatus.OK, {"queued": announced.queued, "skipped": announced.skipped})
        log.debug(
            "HTTP intake: POST %s from %s: %d queued, %d skipped (%s, %d bytes)",
            MASKED_PATH,
            self.who(),
            announced.queued,
            announced.skipped,
            parsed.format,
            len(body),
        )
        return None

    def refuse(self, refusal: _Refusal) -> None:
        intake = self.server.intake
        close = refusal.close or not self.drop_body()
        reason = intake.mask(refusal.reason)
        self.answer(refusal.status, {"error": reason}, headers=refusal.headers, close=close)
        intake.quiet.log(
            (refusal.status, self.client_address[0], reason),
            "HTTP intake: %d for %s %s from %s: %s",
            refusal.status,
            intake.mask(str(self.command or "-")),
            MASKED_PATH,
            self.who(),
            reason,
        )

    def fail(self) -> None:
        intake = self.server.intake
        intake.quiet.log(
            (500, "bug"),
            "HTTP intake: 500 for %s %s from %s: unexpected error",
            self.command,
            MASKED_PATH,
            self.who(),
            exc_info=True,
            level=logging.ERROR,
        )
        try:
            self.answer(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "internal error in the intake (logged)"},
                close=True,
            )
        except OSError:
            self.close_connection = True

    def answer(
        self,
        status: int,
        payload: dict[str, Any],
        *,
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        body = json.dumps(payload, ensure_ascii=True).encode("ascii") + b"\n"
        # Counted before it is written: a sender reading the answer finds it counted.
        self.server.intake.tally.add("requests", intake=VIA, status=str(int(status)))
        if close or self.server.connections.stopping:
            self.close_connection = True
        if self.request_version == "HTTP/0.9":
            # What http.server assumes until it has read a version (a request line it
            # refuses): answered with a status line and headers all the same.
            self.request_version = "HTTP/1.0"
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    # ------------------------------------------------------------------ BaseHTTPRequestHandler

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The framing errors http.server finds itself (a bad request line, headers too long,
        # an unknown method) get the same JSON answer, count and log line as ours.
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.refuse(_Refusal(code, message or phrase, close=True))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # take() and refuse() log each answer, without the path

    def log_message(self, format: str, *args: Any) -> None:
        # What http.server still logs (a timed-out idle connection): at DEBUG, masked.
        log.debug("HTTP intake: %s: %s", self.who(), self.server.intake.mask(format % args))

    def version_string(self) -> str:
        return self.server_version

    def who(self) -> str:
        return _client(self.client_address)


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


class HttpIntake:
    """Serves ``cfg`` ([http]) and hands each POSTed body to ``announcer``.

    :meth:`open` binds the socket, :meth:`serve` answers until its ``stop`` is set.
    """

    def __init__(self, cfg: HttpConfig, announcer: Announcer, *, tally: Tally) -> None:
        self.cfg = cfg
        self.announcer = announcer
        self.tally = tally
        self.tls: ssl.SSLContext | None = None
        self.server: _Server | None = None
        self.fatal_error: RedisFatal | None = None
        self.fatal_seen = threading.Event()
        #: Logs refusals, each like one within :data:`QUIET_S` only counted.
        self.quiet = LogThrottle(QUIET_S, log)
        self.token_path = ("/" + cfg.token).encode("utf-8")
        self.token = cfg.token.encode("utf-8")

    def __repr__(self) -> str:
        return f"HttpIntake({self.describe()})"

    # ------------------------------------------------------------------ Push

    @property
    def host(self) -> str:
        """The host as it goes into a URL (an IPv6 address in brackets)."""
        return self.cfg.host

    @property
    def port(self) -> int:
        """The port bound (once open), else the configured one."""
        if self.server is not None:
            return int(self.server.server_address[1])
        return self.cfg.port

    @property
    def url(self) -> str:
        """``scheme://host:port``, without the token."""
        return f"{self.cfg.scheme}://{self.host}:{self.port}"

    def problem(self) -> str | None:
        return self.announcer.problem()

    def describe(self) -> str:
        return f"HTTP intake at {self.url}{MASKED_PATH}"

    def open(self) -> None:
        """Bind and listen now; :class:`OSError` when the address is in use or the TLS
        certificate or key cannot be loaded."""
        if self.server is not None:
            return
        if self.cfg.tls_cert and self.cfg.tls_key:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                context.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
            except (OSError, ValueError) as exc:
                raise OSError(
                    f"[http] tls_cert {self.cfg.tls_cert!r} and tls_key {self.cfg.tls_key!r} "
                    f"cannot be loaded: {exc}"
                ) from None
            self.tls = context
        bind_host = self.cfg.host.strip("[]")
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        try:
            self.server = _Server(self, (bind_host, self.cfg.port), family)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {self.cfg.host}:{self.cfg.port}: {exc.strerror}"
            ) from None

    def serve(self, stop: threading.Event) -> None:
        """Answer POSTs until ``stop`` is set; then stop accepting, let the requests in hand
        finish (at most :data:`GRACE_S`), close. Raises :class:`RedisFatal` after answering
        the request that met it."""
        self.open()
        server = self.server
        assert server is not None
        loop = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="s3s3-http-accept",
            daemon=True,
        )
        loop.start()
        try:
            while not stop.is_set() and not self.fatal_seen.is_set():
                stop.wait(0.2)
        finally:
            server.shutdown()  # the accept loop ends; connections keep going
            server.server_close()  # new connections are refused from here
            server.connections.close_idle()
            if not server.connections.wait_empty(GRACE_S):
                log.warning(
                    "HTTP intake: connections still busy %g s after the stop were cut", GRACE_S
                )
            loop.join(1.0)
            self.server = None
        if self.fatal_error is not None:
            raise self.fatal_error

    # ------------------------------------------------------------------ for the handler

    def authenticate(self, path: str, authorization: str | None) -> bool | None:
        """True for the right token (the whole path, or a Bearer header); None when none
        was presented; False for a wrong one."""
        path_only = path.split("?", 1)[0]
        if hmac.compare_digest(path_only.encode("utf-8", "surrogateescape"), self.token_path):
            return True
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(
                credentials.strip().encode("utf-8", "surrogateescape"), self.token
            )
        if path_only in ("", "/"):
            return None
        return False

    def mask(self, text: str) -> str:
        return text.replace(self.cfg.token, "***")

    def fatal(self, exc: RedisFatal) -> None:
        if self.fatal_error is None:
            self.fatal_error = exc
        self.fatal_seen.set()


__all__ = ["HttpIntake"]
