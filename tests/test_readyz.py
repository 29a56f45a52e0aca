"""``s3s3listen``'s ``/readyz`` and ``/healthz``, as an orchestrator's probes read them.

``/readyz`` turns 503 naming the reason when Redis stops (a private Redis the test stops)
and when a destination goes down (moto behind the suite's fault proxy, answering 503), and
200 again once each is back; ``/healthz`` stays 200 throughout. moto is the S3 here: nothing
about S3 compatibility is claimed.
"""

from __future__ import annotations

import json

from conftest import raw_client
from faultproxy import FaultProxy
from test_listener_support import (  # noqa: F401  (fixtures)
    ListenerProcess,
    PrivateRedis,
    names,
    wait_until,
)
from test_metrics import announce, get, metrics_ini, samples

from servers._common import free_port


def test_readyz_says_why_while_redis_is_down_and_while_a_destination_is_down(
    tmp_path, moto_servers, names
):
    server = PrivateRedis(tmp_path / "redis").start()
    proxy = FaultProxy(moto_servers[1]["endpoint_url"]).start()
    port = free_port()
    ini, src, dst = metrics_ini(
        tmp_path, moto_servers, names, server.url, listen=str(port), dst_url=proxy.url
    )
    listener = ListenerProcess(ini, tmp_path / "listen.log").start()
    base = f"http://127.0.0.1:{port}"

    def ready() -> tuple[int, dict]:
        status, body = get(base + "/readyz")
        return status, json.loads(body)

    try:
        assert get(base + "/healthz") == (200, b'{"status": "alive"}\n')
        wait_until(lambda: ready()[0] == 200, 20, what="ready")
        assert ready()[1] == {"ready": True, "reasons": []}

        server.stop()
        wait_until(lambda: ready()[0] == 503, 30, interval_s=0.2, what="503 with Redis down")
        [reason] = ready()[1]["reasons"]
        assert "Redis at redis://127.0.0.1:" in reason and "unreachable" in reason, reason
        assert get(base + "/healthz")[0] == 200  # alive, though not ready
        metrics = samples(get(base + "/metrics")[1].decode())
        assert metrics[("s3s3_redis_up", ())] == 0
        server.start()
        wait_until(lambda: ready()[0] == 200, 30, interval_s=0.2, what="ready with Redis back")

        raw_client(moto_servers[0]).put_object(Bucket=src, Key="k", Body=b"v" * 100)
        proxy.fail_if = lambda method, path: True  # every request: 503
        announce(server.url, names, ["k"])
        wait_until(lambda: ready()[0] == 503, 30, interval_s=0.2, what="503, destination down")
        [reason] = ready()[1]["reasons"]
        assert reason.startswith("destination 'dest1' down for "), reason
        metrics = samples(get(base + "/metrics")[1].decode())
        assert metrics[("s3s3_endpoint_up", (("endpoint", "dest1"), ("role", "destination")))] == 0
        assert (
            metrics[("s3s3_copy_errors_total", (("endpoint", "dest1"), ("retryable", "true")))] >= 1
        )
        proxy.fail_if = None
        wait_until(lambda: ready()[0] == 200, 60, interval_s=0.2, what="ready, destination back")
        wait_until(
            lambda: (
                samples(get(base + "/metrics")[1].decode()).get(
                    ("s3s3_objects_total", (("destination", "dest1"), ("outcome", "copied")))
                )
                == 1
            ),
            30,
            what="the held key copied",
        )
    finally:
        listener.stop()
        proxy.stop()
        server.stop()
