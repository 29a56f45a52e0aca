"""The HTTP endpoint operators and Prometheus read: ``/metrics``, ``/healthz``, ``/readyz``.

``/metrics`` is the registry in Prometheus's text format (OpenMetrics when the scraper asks
for it). ``/healthz`` answers 200 while the process serves requests at all. ``/readyz``
answers 200 when the process can do its work and 503 otherwise, with a JSON body naming
every reason (Redis unreachable, a destination down). stdlib ``http.server`` in threads of
its own: a scrape never waits on a copy, and a stuck client holds one thread only.

The address is ``[metrics] listen`` (``s3s3intake``: ``[metrics] intake``): a port, a
``HOST:PORT``, or a ``HOST:PORT-PORT`` range whose first free port is taken, so that several
listeners on one host can share one INI; port 0 takes any free port. Which port was taken
is logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from s3s3.errors import ConfigError

log = logging.getLogger("s3s3.metrics")

#: What ``/readyz`` asks: the reasons the process cannot do its work now (none: ready).
Readiness = Callable[[], Sequence[str]]


class MetricsServer:
    """Serves ``registry`` and the health of the process on ``address`` (host, first and
    last port: the first free one is taken); :meth:`start` binds (raising :class:`ConfigError` when no port of
    the range is free), :meth:`stop` closes."""

    def __init__(
        self,
        registry: CollectorRegistry,
        address: tuple[str, int, int],
        *,
        readiness: Readiness = lambda: (),
        what: str = "s3s3",
    ) -> None:
        self.registry = registry
        self.host = address[0]
        self.ports = tuple(range(address[1], address[2] + 1))
        self.readiness = readiness
        self.what = what
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        handler = _handler(self)
        last: OSError | None = None
        for port in self.ports:
            try:
                self._server = ThreadingHTTPServer((self.host, port), handler)
                break
            except OSError as exc:  # taken: try the next port of the range
                last = exc
        if self._server is None:
            span = f"{self.ports[0]}" + (f"-{self.ports[-1]}" if len(self.ports) > 1 else "")
            raise ConfigError(
                f"[metrics]: no port of {self.host}:{span} is free to serve metrics on ({last})"
            )
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self.what}-metrics", daemon=True
        )
        self._thread.start()
        log.info(
            "%s serves /metrics, /healthz and /readyz on http://%s:%d",
            self.what,
            self.host if ":" not in self.host else f"[{self.host}]",
            self.port,
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None


def _handler(owner: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "s3s3-metrics"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                try:
                    body = encoder(owner.registry)
                except Exception:  # a collector's bug: say so, and keep serving
                    log.exception("collecting the metrics failed")
                    self._send(500, "text/plain; charset=utf-8", b"collecting failed\n")
                    return
                self._send(200, content_type, body)
            elif path == "/healthz":
                self._json(200, {"status": "alive"})
            elif path == "/readyz":
                try:
                    reasons = list(owner.readiness())
                except Exception as exc:  # the check itself failed: not ready, and why
                    reasons = [f"the readiness check failed: {type(exc).__name__}"]
                if reasons:
                    self._json(503, {"ready": False, "reasons": reasons})
                else:
                    self._json(200, {"ready": True, "reasons": []})
            else:
                self._json(404, {"error": "no such path; try /metrics, /healthz, /readyz"})

        def _json(self, status: int, body: dict) -> None:
            self._send(status, "application/json", json.dumps(body).encode() + b"\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics: " + format, *args)

    return Handler


__all__ = ["MetricsServer", "Readiness"]
