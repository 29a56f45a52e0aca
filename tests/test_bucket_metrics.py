"""``s3s3bucket``'s metrics: node_exporter's textfile format and a real Pushgateway.

A real ``s3s3bucket`` subprocess (moto as the S3: no compatibility is claimed) leaves its run
in ``--metrics-file``; the file parses with prometheus_client's own parser and holds the
run's counts. A failed run keeps the last success's time, so a stale job shows as a stale
timestamp. A reader never sees half a file while the file is rewritten over and over, and
Debian's ``prometheus-pushgateway`` receives the push.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.request

import pytest
from conftest import raw_client, unique_bucket
from prometheus_client.parser import text_string_to_metric_families
from test_bucket_script import s3s3bucket, write_ini
from test_listener_support import wait_until

from s3s3.bucketjob.summary import DestinationSummary, JobSummary
from s3s3.metrics import bucketjob
from servers._common import free_port


def read(path) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def series(got: dict, name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def job(moto_servers, tmp_path, redis_url):
    a, b = moto_servers
    src, dst = unique_bucket("bms"), unique_bucket("bmd")
    raw_client(a).create_bucket(Bucket=src)
    raw_client(b).create_bucket(Bucket=dst)
    for i in range(5):
        raw_client(a).put_object(Bucket=src, Key=f"k{i} ü", Body=b"x" * (100 + i))
    ini = write_ini(
        tmp_path / "s3s3.ini",
        (a["endpoint_url"], src),
        [("destination", b["endpoint_url"], dst)],
        lock_dir=tmp_path,
        redis_url=redis_url,
    )
    with ini.open("a") as f:
        f.write("\n[metrics]\nperiod = 30m\n")
    return ini, src, dst


def test_a_run_leaves_its_counts_and_a_failed_run_keeps_the_last_success(job, tmp_path):
    ini, src, dst = job
    path = tmp_path / "s3s3bucket.prom"
    before = time.time()
    result = s3s3bucket("--config", str(ini), "--metrics-file", str(path))
    assert result.returncode == 0, result.stderr
    got = read(path)
    assert series(got, "s3s3bucket_last_run_success", source=src) == 1
    assert series(got, "s3s3bucket_last_run_exit_status", source=src) == 0
    assert series(got, "s3s3bucket_expected_period_seconds", source=src) == 1800
    for outcome, n in (("listed", 5), ("copied", 5), ("failed", 0), ("deleted", 0)):
        assert (
            series(
                got, "s3s3bucket_objects", source=src, destination="destination", outcome=outcome
            )
            == n
        )
    assert series(got, "s3s3bucket_bytes_written", source=src, destination="destination") == sum(
        100 + i for i in range(5)
    )
    start = series(got, "s3s3bucket_last_run_start_timestamp_seconds", source=src)
    end = series(got, "s3s3bucket_last_run_end_timestamp_seconds", source=src)
    success = series(got, bucketjob.LAST_SUCCESS, source=src)
    assert before <= start <= end == success <= time.time()

    # The destination bucket goes away: the next run fails, and says when it last succeeded.
    ini.write_text(ini.read_text().replace(f"bucket_name = {dst}", "bucket_name = no-such-bkt"))
    result = s3s3bucket("--config", str(ini), "--metrics-file", str(path))
    assert result.returncode != 0
    got = read(path)
    assert series(got, "s3s3bucket_last_run_success", source=src) == 0
    assert series(got, "s3s3bucket_last_run_exit_status", source=src) == result.returncode
    assert series(got, bucketjob.LAST_SUCCESS, source=src) == success
    assert series(got, "s3s3bucket_last_run_end_timestamp_seconds", source=src) > success


def test_a_configuration_error_is_a_run_too(tmp_path):
    path = tmp_path / "s3s3bucket.prom"
    bad = tmp_path / "bad.ini"
    bad.write_text("[source]\nbucket_name = b\n")  # no destination
    result = s3s3bucket("--config", str(bad), "--metrics-file", str(path))
    assert result.returncode == 2
    got = read(path)
    assert series(got, "s3s3bucket_last_run_success", source="unknown") == 0
    assert series(got, "s3s3bucket_last_run_exit_status", source="unknown") == 2
    assert not any(name == bucketjob.LAST_SUCCESS for name, _ in got)


def test_a_reader_never_sees_half_a_file(tmp_path):
    path = tmp_path / "s3s3bucket.prom"
    summary = JobSummary(
        source="source",
        bucket="b",
        destinations=[DestinationSummary(name=f"d{i}", bucket="x", copied=i) for i in range(50)],
    )
    stop = threading.Event()
    reads: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            families = {f.name for f in text_string_to_metric_families(text)}
            reads.append(len(families))
            # The last families written are there whenever the first are.
            if "s3s3bucket_bytes_written" not in families:
                problems.append(text[-200:])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(300):
            now = time.time()
            bucketjob.write_textfile(path, bucketjob.Run("b", now - 1, now, n % 3, summary))
    finally:
        stop.set()
        thread.join()
    assert len(reads) > 50 and not problems, problems[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s3s3bucket.prom"]  # no temp left


@pytest.mark.skipif(
    shutil.which("prometheus-pushgateway") is None,
    reason="Debian's prometheus-pushgateway is not installed",
)
def test_the_pushgateway_receives_the_run(job, tmp_path):
    ini, src, _ = job
    port = free_port()
    gateway = subprocess.Popen(
        [
            "prometheus-pushgateway",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={tmp_path / 'pgw'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_until(answers, 30, interval_s=0.2, what="the Pushgateway to start")
        result = s3s3bucket("--config", str(ini), "--pushgateway", url)
        assert result.returncode == 0, result.stderr
        with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
            text = answer.read().decode()
        pushed = {
            (s.name, s.labels.get("job"), s.labels.get("source")): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }
        assert pushed[("s3s3bucket_last_run_success", "s3s3bucket", src)] == 1
        assert pushed[("s3s3bucket_last_run_exit_status", "s3s3bucket", src)] == 0
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)


def test_an_unreachable_pushgateway_does_not_change_the_outcome(job, tmp_path):
    ini, _, _ = job
    result = s3s3bucket("--config", str(ini), "--pushgateway", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stderr
    assert "pushing metrics to http://127.0.0.1:" in result.stderr
