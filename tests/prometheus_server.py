"""A real Prometheus server for tests (Debian's ``prometheus``): scrapes targets every
second as job ``s3s3listen``, evaluating rule files when given, and answers its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from test_listener_support import wait_until

from servers._common import free_port


def get(url: str) -> tuple[int, bytes]:
    """GET ``url``: the status and the body, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Prometheus:
    """A Prometheus of the test's own, in ``tmp``: scrapes ``targets`` every second and
    evaluates ``rules`` (copied beside its configuration) as often."""

    def __init__(self, tmp: Path, targets: list[str], *, rules: Path | None = None) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        assert Path(binary).exists(), "prometheus is missing: run servers/install-debian.sh"
        self.port = free_port()
        rule_files = ""
        if rules is not None:
            shutil.copy(rules, tmp / rules.name)
            rule_files = f"rule_files: [{json.dumps(str(tmp / rules.name))}]\n"
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            + rule_files
            + "scrape_configs:\n  - job_name: s3s3listen\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self.log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_until(self._ready, 60, interval_s=0.2, what="Prometheus to answer /-/ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, "prometheus exited"
        try:
            return get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200
        except OSError:
            return False

    def api(self, path: str, **params: str):
        """The ``data`` of ``/api/v1/PATH?params``, which must succeed."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = get(url)
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (params, answer)
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        """The first sample of ``expr`` now, or None when it has none."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
