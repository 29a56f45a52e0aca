"""The HTTP intake (s3s3.queue.http_intake) over real HTTP against a real Redis: what each
kind of bad request gets, the RGW, MinIO and SNS shapes, Redis going away and coming back,
TLS, keep-alive, connection limits and stopping, and ``s3s3intake`` as a subprocess.

The intake runs in the test process (so its log records are checked for the token) except
where ``s3s3intake`` itself is the subject; the listener that proves good events keep being
replicated is a real ``s3s3listen`` between two moto servers.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote_plus

import pytest
import redis
from conftest import ROOT, raw_client
from test_listener_support import (  # noqa: F401  (fixtures)
    PrivateRedis,
    listeners,
    names,
    put_keys,
    start_listener,
    stream_config,
    stream_ini,
    wait_until,
)

from s3s3 import config
from s3s3.config import HttpConfig, RedisConfig
from s3s3.errors import RedisFatal
from s3s3.queue.announce import Announcer
from s3s3.queue.http_intake import HttpIntake
from s3s3.queue.link import daemon_client
from s3s3.queue.messages import parse_entry
from s3s3.queue.tally import Tally
from servers._common import free_ports, make_self_signed_ca

#: One token for the whole module: every log record of every test is searched for it.
TOKEN = secrets.token_urlsafe(24)
JSON = {"Content-Type": "application/json"}


@pytest.fixture(autouse=True)
def token_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter()
    records = caplog.get_records("setup") + caplog.get_records("call")
    for record in records + caplog.records:
        text = formatter.format(record)
        assert TOKEN not in text, f"the token is in a log record: {text[:300]}"


# --------------------------------------------------------------------------- helpers


def http_cfg(**overrides) -> HttpConfig:
    fields = dict(token=TOKEN, host="127.0.0.1", port=free_ports(1)[0])
    fields.update(overrides)
    return HttpConfig(**fields)


class Served:
    """An HttpIntake serving in a thread of this process, feeding ``rcfg.stream``."""

    def __init__(
        self,
        cfg: HttpConfig,
        rcfg: RedisConfig,
        *,
        source_bucket: str = "src",
        announcer_class: type[Announcer] = Announcer,
    ) -> None:
        self.cfg = cfg
        self.rcfg = rcfg
        self.tally = Tally()
        self.client = daemon_client(rcfg, socket_timeout_s=2.0)
        announcer = announcer_class(
            self.client, rcfg, via="http", tally=self.tally, source_bucket=source_bucket
        )
        self.intake = HttpIntake(cfg, announcer, tally=self.tally)
        self.stop = threading.Event()
        self.raised: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="test-http-intake", daemon=True)

    def run(self) -> None:
        try:
            self.intake.serve(self.stop)
        except BaseException as exc:  # the test looks at what serve() raised
            self.raised = exc

    def __enter__(self) -> Served:
        self.intake.open()
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "serve() did not return after stop"
        self.client.close()

    @property
    def port(self) -> int:
        return self.intake.port

    def connection(self, timeout_s: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)

    def post(self, body, *, path: str = "/" + TOKEN, headers=None, method: str = "POST"):
        """One request on a connection of its own: (status, headers, decoded JSON body)."""
        conn = self.connection()
        try:
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
            conn.request(method, path, body=data, headers=JSON if headers is None else headers)
            return answer_of(conn.getresponse())
        finally:
            conn.close()

    def raw(self, data: bytes, *, timeout_s: float = 10.0):
        """Send ``data`` as it is on a fresh socket and read one answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock:
            sock.sendall(data)
            response = http.client.HTTPResponse(sock)
            response.begin()
            return answer_of(response)

    def requests(self, status: int) -> int:
        return self.tally.get("requests", intake="http", status=str(status))


def answer_of(response: http.client.HTTPResponse):
    raw = response.read()
    assert response.getheader("Content-Length") == str(len(raw)), "every answer has a length"
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw)


def rgw_event(bucket: str, key: str, *, name: str = "ObjectCreated:Put", seq: str = "") -> dict:
    """One Ceph RGW 16.2 notification (INTEROP.md): keys raw, sequencer of its clock."""
    return {
        "Records": [
            {
                "eventVersion": "2.2",
                "eventSource": "ceph:s3",
                "awsRegion": "",
                "eventTime": "2026-12-01T18:00:42.858865Z",
                "eventName": name,
                "userIdentity": {"principalId": "tester"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "n1",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}", "id": "x.1"},
                    "object": {
                        "key": key,
                        "size": 10,
                        "eTag": "3363ea1b4b3d8d2b1a4c1c2e6f0d7c1e",
                        "versionId": "",
                        "sequencer": seq or "4A0B0F6B7BA5D033",
                        "metadata": [],
                        "tags": [],
                    },
                },
                "eventId": "1764612042.858865.3363ea1b",
                "opaqueData": "",
            }
        ]
    }


def aws_record(bucket: str, key: str, *, source: str, name: str = "ObjectCreated:Put") -> dict:
    """One record as AWS and MinIO write it: the key URL-encoded, '+' for a space."""
    return {
        "eventVersion": "2.0",
        "eventSource": source,
        "awsRegion": "",
        "eventTime": "2026-12-01T18:00:42.858Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": 10,
                "eTag": "3363ea1b4b3d8d2b1a4c1c2e6f0d7c1e",
                "sequencer": "187C1B2A3D4E5F60",
            },
        },
    }


def minio_webhook(bucket: str, key: str) -> dict:
    """MinIO's webhook body: its own EventName and Key beside the Records."""
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/{key}",
        "Records": [aws_record(bucket, key, source="minio:s3", name="s3:ObjectCreated:Put")],
    }


def sns_envelope(bucket: str, key: str) -> dict:
    """An AWS SNS HTTP notification wrapping an S3 event."""
    inner = {"Records": [aws_record(bucket, key, source="aws:s3")]}
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:s3s3",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(inner),
        "Timestamp": "2026-12-01T18:00:43.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
    }


def ended(sock: socket.socket) -> bool:
    """Read what the server sends (a TLS alert, say) until it closes the connection."""
    while True:
        try:
            if not sock.recv(4096):
                return True
        except ConnectionResetError:
            return True


def stream_items(client: redis.Redis, stream: str):
    return [parse_entry(fields).items[0] for _, fields in client.xrange(stream)]


def body_at(info: dict, bucket: str, key: str) -> bytes | None:
    try:
        return raw_client(info).get_object(Bucket=bucket, Key=key)["Body"].read()
    except raw_client(info).exceptions.NoSuchKey:
        return None


# --------------------------------------------------------------------------- bad requests


def test_bad_requests_get_their_status_and_good_events_keep_being_replicated(
    tmp_path, moto_servers, make_bucket, names, listeners, redis_url
):
    a, b = moto_servers
    src = make_bucket(a, name="source").bucket
    dst = make_bucket(b, name="dest1").bucket
    good = ["first.txt", "a b+c.txt", "dir/x%2Fy", "ü/日本語", " spaced ", "last+1"]
    client = raw_client(a)
    for key in good:
        client.put_object(Bucket=src, Key=key, Body=f"bytes of {key}".encode())
    # Objects the bad requests name: none of them may be copied.
    put_keys(a, src, ["bad/no-token", "bad/wrong-path", "bad/wrong-bearer", "bad/type"])
    cfg = http_cfg(max_body=4096)
    ini = stream_ini(tmp_path, names, redis_url, source=(a, src), dests=[(b, dst)])
    settings = config.load(ini, search_path=())
    assert settings.redis.stream == names.stream
    r = redis.Redis.from_url(redis_url)
    start_listener(ini, tmp_path / "listen.log", listeners)

    posted: list[str] = []

    def post_good(served: Served) -> None:
        key = good[len(posted)]
        status, _, body = served.post(rgw_event(src, key))
        assert (status, body) == (200, {"queued": 1, "skipped": 0})
        posted.append(key)

    def length() -> int:
        return r.xlen(names.stream) if r.exists(names.stream) else 0

    big = 4097
    bad = [
        # (what, request, status, error text, header that must be there)
        (
            "no token",
            lambda s: s.post(rgw_event(src, "bad/no-token"), path="/"),
            401,
            "no token",
            ("www-authenticate", 'Bearer realm="s3s3intake"'),
        ),
        (
            "wrong token in the path",
            lambda s: s.post(rgw_event(src, "bad/wrong-path"), path="/" + "x" * 32),
            403,
            "wrong token",
            None,
        ),
        (
            "wrong bearer",
            lambda s: s.post(
                rgw_event(src, "bad/wrong-bearer"),
                path="/minio/events",
                headers={**JSON, "Authorization": "Bearer " + "y" * 32},
            ),
            403,
            "wrong token",
            None,
        ),
        (
            "GET",
            lambda s: s.post(None, method="GET", headers={}),
            405,
            "method GET not allowed",
            ("allow", "POST"),
        ),
        (
            "huge body, not sent: answered from the headers alone",
            lambda s: s.raw(
                f"POST /{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {big}\r\n\r\n".encode()
            ),
            413,
            f"body of {big} bytes is over the limit of 4096 bytes",
            ("connection", "close"),
        ),
        (
            "not JSON",
            lambda s: s.post(b"bad/plain text", headers={"Content-Type": "text/plain"}),
            400,
            "body is not an S3 event document",
            None,
        ),
        (
            "truncated JSON",
            lambda s: s.post(json.dumps(rgw_event(src, "bad/cut")).encode()[:-7]),
            400,
            "body is not an S3 event document",
            None,
        ),
        (
            "JSON of the wrong shape",
            lambda s: s.post({"records": [{"key": "bad/shape"}]}),
            400,
            "JSON of unknown shape",
            None,
        ),
        (
            "records missing fields",
            lambda s: s.post(
                {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": src}}}]}
            ),
            400,
            "missing 's3.object.key'",
            None,
        ),
        (
            "wrong content type",
            lambda s: s.post(
                rgw_event(src, "bad/type"), headers={"Content-Type": "application/xml"}
            ),
            415,
            "Content-Type 'application/xml' not taken",
            None,
        ),
        (
            "no Content-Type",
            lambda s: s.post(rgw_event(src, "bad/type"), headers={}),
            415,
            "no Content-Type",
            None,
        ),
        (
            "no Content-Length",
            lambda s: s.raw(
                f"POST /{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Connection: close\r\n\r\n".encode()
            ),
            411,
            "no Content-Length",
            None,
        ),
        (
            "chunked",
            lambda s: s.raw(
                f"POST /{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".encode()
            ),
            411,
            "Transfer-Encoding is not taken",
            ("connection", "close"),
        ),
        (
            "Content-Length not a number",
            lambda s: s.raw(
                f"POST /{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 12abc\r\n\r\n".encode()
            ),
            400,
            "Content-Length '12abc' is not one whole number",
            None,
        ),
    ]
    with Served(cfg, settings.redis, source_bucket=src) as served:
        post_good(served)
        for n, (what, request, status, error, header) in enumerate(bad):
            before = length()
            got, headers, body = request(served)
            assert (got, list(body)) == (status, ["error"]), what
            assert error in body["error"], (what, body)
            if header is not None:
                assert headers.get(header[0]) == header[1], (what, headers)
            assert length() == before, f"{what}: something was queued"
            if n % 3 == 2:
                post_good(served)  # good events between the bad ones
        # For another bucket: acknowledged, counted and skipped; nothing queued.
        before = length()
        status, _, body = served.post(rgw_event("another-bucket", "bad/other"))
        assert (status, body) == (200, {"queued": 0, "skipped": 1})
        assert length() == before
        while len(posted) < len(good):
            post_good(served)
        tally = served.tally
        assert served.requests(200) == len(good) + 1
        assert tally.get("records", intake="http", outcome="bad") == 4
        assert tally.get("records", intake="http", outcome="skipped") == 1
        assert tally.get("records", intake="http", outcome="queued") == len(good)
        for status in (401, 403, 405, 411, 413, 415):
            assert served.requests(status) >= 1, status

    wait_until(
        lambda: all(body_at(b, dst, k) == f"bytes of {k}".encode() for k in good),
        60,
        what="every good key at the destination with its bytes",
    )
    keys = {o["Key"] for o in raw_client(b).list_objects_v2(Bucket=dst).get("Contents", [])}
    assert keys == set(good)
    assert r.xlen(names.stream) == len(good)


def test_refusals_are_logged_once_each_naming_status_client_and_masked_path(
    caplog, names, redis_url
):
    with Served(http_cfg(), stream_config(names, redis_url)) as served:
        served.post(rgw_event("src", "k"), path="/" + TOKEN[:-1] + "Z")
        served.post({"hello": 1})
        status, _, body = served.post(rgw_event("src", "k"))
    assert (status, body) == (200, {"queued": 1, "skipped": 0})
    lines = [r.getMessage() for r in caplog.records if r.name == "s3s3.intake"]
    refused = [line for line in lines if "HTTP intake: 4" in line]
    assert len(refused) == 2, lines
    assert refused[0].startswith("HTTP intake: 403 for POST /*** from 127.0.0.1:")
    assert refused[0].endswith(": wrong token")
    assert refused[1].startswith("HTTP intake: 400 for POST /*** from 127.0.0.1:")
    accepted = [line for line in lines if "1 queued" in line]
    assert len(accepted) == 1 and "POST /*** from 127.0.0.1:" in accepted[0]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "1 queued" in r.getMessage())


def test_a_sender_retrying_a_refusal_in_a_tight_loop_is_logged_once(caplog, names, redis_url):
    with Served(http_cfg(), stream_config(names, redis_url)) as served:
        conn = served.connection()
        for _ in range(50):
            conn.request("POST", "/wrong-token-wrong-token", body=b"{}", headers=JSON)
            assert answer_of(conn.getresponse())[0] == 403
        conn.close()
        assert served.requests(403) == 50
    refused = [r for r in caplog.records if "403 for" in r.getMessage()]
    assert len(refused) == 1


# --------------------------------------------------------------------------- shapes


def test_rgw_minio_and_sns_shapes_reach_the_stream_with_the_exact_keys(names, redis_url):
    keys = ["a b+c.txt", "dir/x%2Fy", "ü/日本語", " lead and trail ", "100% +"]
    r = redis.Redis.from_url(redis_url)
    with Served(http_cfg(), stream_config(names, redis_url)) as served:
        for key in keys:  # Ceph RGW: the token as the path, keys raw
            assert served.post(rgw_event("src", key))[0] == 200
        deleted = rgw_event("src", "gone now", name="ObjectRemoved:Delete")
        assert served.post(deleted)[0] == 200
        for key in keys:  # MinIO's webhook: Authorization: Bearer on its own path
            status, _, body = served.post(
                minio_webhook("src", key),
                path="/minio/events",
                headers={**JSON, "Authorization": f"Bearer {TOKEN}"},
            )
            assert (status, body) == (200, {"queued": 1, "skipped": 0})
        for key in keys:  # AWS SNS: text/plain with a charset, the envelope unwrapped once
            status, _, body = served.post(
                json.dumps(sns_envelope("src", key)).encode(),
                headers={"Content-Type": "text/plain; charset=UTF-8"},
            )
            assert (status, body) == (200, {"queued": 1, "skipped": 0})
    items = stream_items(r, names.stream)
    assert [i.key for i in items] == keys + ["gone now"] + keys + keys
    assert [i.op for i in items] == ["copy"] * 5 + ["delete"] + ["copy"] * 10
    assert all(i.compare for i in items), "pushed entries are compared before a copy"
    assert all(i.bucket == "src" for i in items)
    assert items[0].sequence is not None and items[0].event_time is not None


# --------------------------------------------------------------------------- Redis


def test_redis_down_answers_503_and_the_retry_lands_once_it_is_back(tmp_path, names, caplog):
    caplog.set_level(logging.INFO, logger="s3s3.intake")
    private = PrivateRedis(tmp_path / "redis", persistent=True).start()
    try:
        event = rgw_event("src", "while down.txt")
        with Served(http_cfg(), stream_config(names, private.url)) as served:
            assert served.post(rgw_event("src", "before.txt"))[0] == 200
            private.stop()
            status, headers, body = served.post(event)
            assert status == 503
            assert headers["retry-after"] == "1"
            assert "cannot take entries" in body["error"] and TOKEN not in body["error"]
            assert served.tally.get("records", intake="http", outcome="unavailable") == 1
            assert served.post(event)[0] == 503  # a second refusal: counted, not logged again
            private.start()  # the same port
            status, _, body = served.post(event)  # what the sender's retry does
            assert (status, body) == (200, {"queued": 1, "skipped": 0})
        outage = [r.getMessage() for r in caplog.records if "refusing pushes" in r.getMessage()]
        assert len(outage) == 1 and outage[0].startswith("http intake: Redis at redis://")
        back = [r.getMessage() for r in caplog.records if "takes entries again" in r.getMessage()]
        assert len(back) == 1 and "after 2 refused pushes in" in back[0]
        keys = [i.key for i in stream_items(private.client(), names.stream)]
        assert keys == ["before.txt", "while down.txt"]
    finally:
        private.stop()


def test_redis_refusing_s3s3_answers_503_and_ends_serve_with_redis_fatal(tmp_path, names):
    private = PrivateRedis(tmp_path / "redis", password="the-right-password").start()
    try:
        rcfg = RedisConfig(
            url=private.url, password="a-wrong-password", mode="stream", stream=names.stream
        )
        served = Served(http_cfg(), rcfg).__enter__()
        try:
            status, headers, body = served.post(rgw_event("src", "k"))
            assert status == 503 and headers["connection"] == "close"
            assert "Redis refuses s3s3" in body["error"]
            served.thread.join(10)
            assert not served.thread.is_alive(), "serve() went on after RedisFatal"
            assert isinstance(served.raised, RedisFatal)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", served.port), timeout=2).close()
        finally:
            served.close()
    finally:
        private.stop()


# --------------------------------------------------------------------------- HTTP


def test_several_posts_share_one_keep_alive_connection(names, redis_url):
    with Served(http_cfg(max_body=4096), stream_config(names, redis_url)) as served:
        conn = served.connection()
        conn.request("POST", "/" + TOKEN, body=json.dumps(rgw_event("src", "k0")), headers=JSON)
        assert answer_of(conn.getresponse())[0] == 200
        first = conn.sock
        for i in range(1, 6):
            conn.request(
                "POST", "/" + TOKEN, body=json.dumps(rgw_event("src", f"k{i}")), headers=JSON
            )
            assert answer_of(conn.getresponse())[0] == 200
            assert conn.sock is first, "a new connection was made"
        # A refusal before the body reads and drops it: the connection goes on.
        conn.request("POST", "/nope", body=json.dumps(rgw_event("src", "x")), headers=JSON)
        assert answer_of(conn.getresponse())[0] == 403
        conn.request("POST", "/" + TOKEN, body=b"not json", headers=JSON)
        assert answer_of(conn.getresponse())[0] == 400
        conn.request("POST", "/" + TOKEN, body=json.dumps(rgw_event("src", "k6")), headers=JSON)
        assert answer_of(conn.getresponse())[0] == 200
        assert conn.sock is first
        # One over the limit is not read: that connection is closed.
        conn.request("POST", "/" + TOKEN, body=b"{" + b" " * 4096 + b"}", headers=JSON)
        status, headers, _ = answer_of(conn.getresponse())
        assert (status, headers["connection"]) == (413, "close")
        assert conn.sock is None
        conn.close()
        assert served.tally.get("records", intake="http", outcome="queued") == 7


def test_expect_100_continue_is_refused_before_the_body_or_continued(names, redis_url):
    body = json.dumps(rgw_event("src", "continued")).encode()
    with Served(http_cfg(), stream_config(names, redis_url)) as served:
        head = (
            "POST /{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
        )
        status, _, answer = served.raw(head.format(path="wrong").encode())
        assert (status, answer) == (403, {"error": "wrong token"})
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(head.format(path=TOKEN).encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
            sock.sendall(body)
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert answer_of(response)[::2] == (200, {"queued": 1, "skipped": 0})


def test_head_and_other_methods_get_405(names, redis_url):
    with Served(http_cfg(), stream_config(names, redis_url)) as served:
        conn = served.connection()
        conn.request("HEAD", "/" + TOKEN)
        response = conn.getresponse()
        assert response.status == 405 and response.getheader("Allow") == "POST"
        assert response.read() == b""
        for method in ("PUT", "DELETE", "OPTIONS"):
            conn.request(method, "/" + TOKEN, body=b"{}", headers=JSON)
            status, headers, _ = answer_of(conn.getresponse())
            assert (status, headers["allow"]) == (405, "POST"), method
        conn.close()
        status, _, body = served.raw(b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 501 and "Unsupported method" in body["error"]


def test_framing_errors_http_server_finds_get_json_and_never_echo_the_token(names, redis_url):
    with Served(http_cfg(), stream_config(names, redis_url)) as served:
        status, headers, body = served.raw(
            f"POST /{TOKEN} extra HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert (status, headers["connection"]) == (400, "close")
        assert body == {"error": "Bad request syntax ('POST /*** extra HTTP/1.1')"}
        status, _, body = served.raw(f"POST /{TOKEN} HTTP/2.0\r\nHost: x\r\n\r\n".encode())
        assert (status, body) == (505, {"error": "Invalid HTTP version (2.0)"})
        long_header = f"POST /{TOKEN} HTTP/1.1\r\nX-Long: {'a' * 70000}\r\n\r\n"
        status, _, body = served.raw(long_header.encode())
        assert (status, body) == (431, {"error": "Line too long"})
        status, headers, _ = served.post(
            rgw_event("src", "k"), path="/", headers={**JSON, "Authorization": "Basic eDp5"}
        )
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        for code in (400, 505, 431, 401):
            assert served.requests(code) == 1, code


def test_a_bug_answers_500_is_logged_with_its_traceback_and_serving_goes_on(
    caplog, names, redis_url
):
    class Buggy(Announcer):
        def parse(self, body):
            if b"boom" in body:
                raise RuntimeError("a bug in the parser")
            return super().parse(body)

    with Served(http_cfg(), stream_config(names, redis_url), announcer_class=Buggy) as served:
        status, headers, body = served.post(rgw_event("src", "boom"))
        assert (status, body) == (500, {"error": "internal error in the intake (logged)"})
        assert served.post(rgw_event("src", "fine"))[:3:2] == (200, {"queued": 1, "skipped": 0})
    bugs = [r for r in caplog.records if r.exc_info and r.levelno == logging.ERROR]
    assert len(bugs) == 1
    assert "a bug in the parser" in logging.Formatter().format(bugs[0])


def test_connections_beyond_max_connections_wait_for_a_free_slot(names, redis_url):
    body = json.dumps(rgw_event("src", "third")).encode()
    request = (
        f"POST /{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with Served(http_cfg(max_connections=2), stream_config(names, redis_url)) as served:
        idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(2)]
        wait_until(lambda: len(served.intake.server.connections.busy) == 2, 10, what="2 held")
        third = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        third.sendall(request)
        readable, _, _ = select.select([third], [], [], 0.5)
        assert readable == [], "a third connection was served beyond max_connections=2"
        idle[0].close()
        response = http.client.HTTPResponse(third)
        response.begin()
        assert answer_of(response)[0] == 200
        for sock in (idle[1], third):
            sock.close()


def test_a_slow_client_is_cut_after_the_timeout_and_others_are_served(names, redis_url):
    body = json.dumps(rgw_event("src", "slow")).encode()
    with Served(http_cfg(timeout_s=0.5), stream_config(names, redis_url)) as served:
        silent = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        slow = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        slow.sendall(
            (
                f"POST /{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[:10]
        )
        assert served.post(rgw_event("src", "quick"))[0] == 200
        assert silent.recv(100) == b"", "an idle connection outlived the timeout"
        response = http.client.HTTPResponse(slow)
        response.begin()
        status, _, answer = answer_of(response)
        assert status == 408 and "not received within 0.5 s" in answer["error"]
        silent.close()
        slow.close()
        assert served.tally.get("records", intake="http", outcome="queued") == 1


def test_stop_lets_the_request_in_hand_finish_and_closes_idle_connections(names, redis_url):
    r = redis.Redis.from_url(redis_url)
    body = json.dumps(rgw_event("src", "in hand")).encode()
    served = Served(http_cfg(), stream_config(names, redis_url)).__enter__()
    try:
        idle = served.connection()
        idle.request("POST", "/" + TOKEN, body=json.dumps(rgw_event("src", "a")), headers=JSON)
        assert answer_of(idle.getresponse())[0] == 200
        connections = served.intake.server.connections
        # The idle connection is marked idle just after its answer is out: until then the
        # busy count below could be its own, and the stop would cut the request in hand.
        wait_until(lambda: not any(connections.busy.values()), 10, what="the idle connection")
        busy = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        busy.sendall(
            (
                f"POST /{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[:20]
        )
        wait_until(lambda: sum(connections.busy.values()) == 1, 10, what="a request in hand")
        served.stop.set()
        assert idle.sock.recv(10) == b"", "the idle connection was not closed on stop"
        busy.sendall(body[20:])
        response = http.client.HTTPResponse(busy)
        response.begin()
        status, headers, answer = answer_of(response)
        assert (status, answer) == (200, {"queued": 1, "skipped": 0})
        assert headers["connection"] == "close"
        served.thread.join(10)
        assert not served.thread.is_alive() and served.raised is None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", served.port), timeout=2).close()
        busy.close()
        idle.close()
    finally:
        served.close()
    assert [i.key for i in stream_items(r, names.stream)] == ["a", "in hand"]


# --------------------------------------------------------------------------- TLS


def test_tls_serves_https_and_survives_a_plain_http_client(tmp_path, names, redis_url):
    ca, cert, key = make_self_signed_ca(tmp_path / "tls")
    cfg = http_cfg(tls_cert=str(cert), tls_key=str(key))
    context = ssl.create_default_context(cafile=str(ca))
    body = json.dumps(rgw_event("src", "over tls")).encode()
    with Served(cfg, stream_config(names, redis_url)) as served:
        assert served.intake.url == f"https://127.0.0.1:{served.port}"
        conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=context, timeout=10)
        conn.request("POST", "/" + TOKEN, body=body, headers=JSON)
        assert answer_of(conn.getresponse())[::2] == (200, {"queued": 1, "skipped": 0})
        plain = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("POST", "/" + TOKEN, body=body, headers=JSON)
            plain.getresponse()
        plain.close()
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01\x00\x05garbage")  # a broken ClientHello
            assert ended(sock), "the server kept a failed handshake open"
        conn.request("POST", "/" + TOKEN, body=body, headers=JSON)  # the same TLS connection
        assert answer_of(conn.getresponse())[0] == 200
        fresh = http.client.HTTPSConnection("127.0.0.1", served.port, context=context, timeout=10)
        fresh.request("POST", "/" + TOKEN, body=body, headers=JSON)
        assert answer_of(fresh.getresponse())[0] == 200
        fresh.close()
        conn.close()
        assert served.tally.get("records", intake="http", outcome="queued") == 3


# --------------------------------------------------------------------------- the object


def test_describe_repr_and_url_name_no_token_and_a_taken_port_is_an_oserror(names, redis_url):
    with Served(http_cfg(), stream_config(names, redis_url)) as served:
        intake = served.intake
        assert intake.describe() == f"HTTP intake at http://127.0.0.1:{served.port}/***"
        assert TOKEN not in repr(intake) and TOKEN not in intake.url
        second = HttpIntake(served.cfg, intake.announcer, tally=Tally())
        with pytest.raises(OSError) as caught:
            second.open()
        assert f"cannot listen on 127.0.0.1:{served.port}" in str(caught.value)
        assert TOKEN not in str(caught.value)


# --------------------------------------------------------------------------- s3s3intake


def intake_ini(path: Path, *, redis_url: str, stream: str, port: int) -> Path:
    path.write_text(
        "[source]\nbucket_name = src\nendpoint_url = http://127.0.0.1:9\n"
        "aws_access_key_id = a\naws_secret_access_key = b\n\n"
        "[dest1]\nbucket_name = dst\nendpoint_url = http://127.0.0.1:9\n"
        "aws_access_key_id = a\naws_secret_access_key = b\n\n"
        f"[pubsub]\nmode = stream\nurl = {redis_url}\nstream = {stream}\n\n"
        f"[http]\ntoken = {TOKEN}\nport = {port}\n"
    )
    return path


def run_intake(ini: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "s3s3.scripts.intake", "--config", str(ini), "-v"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(ROOT),
            env=env,
        )


def test_s3s3intake_takes_a_post_and_exits_0_on_sigterm(tmp_path, names, redis_url):
    port = free_ports(1)[0]
    ini = intake_ini(tmp_path / "s3s3.ini", redis_url=redis_url, stream=names.stream, port=port)
    log_path = tmp_path / "intake.log"
    proc = run_intake(ini, log_path)
    try:
        wait_until(
            lambda: "taking events from" in log_path.read_text() or proc.poll() is not None,
            30,
            what="s3s3intake serving",
        )
        assert proc.poll() is None, log_path.read_text()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST", "/" + TOKEN, body=json.dumps(rgw_event("src", "by s3s3intake")), headers=JSON
        )
        assert answer_of(conn.getresponse())[::2] == (200, {"queued": 1, "skipped": 0})
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = log_path.read_text()
    assert f"taking events from HTTP intake at http://127.0.0.1:{port}/***" in output
    assert TOKEN not in output
    r = redis.Redis.from_url(redis_url)
    assert [i.key for i in stream_items(r, names.stream)] == ["by s3s3intake"]


def test_s3s3intake_on_a_taken_port_exits_2_with_one_line_naming_it(tmp_path, names, redis_url):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        ini = intake_ini(tmp_path / "s3s3.ini", redis_url=redis_url, stream=names.stream, port=port)
        result = subprocess.run(
            [sys.executable, "-m", "s3s3.scripts.intake", "--config", str(ini)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in errors[0]
    assert TOKEN not in result.stderr
