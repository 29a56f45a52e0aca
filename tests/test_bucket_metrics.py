"""``s3s3bucket``'s metrics: node_exporter's textfile format and a real Pushgateway.

A real ``s3s3bucket`` subprocess (moto as the S3: no compatibility is claimed) leaves its run
in ``--metrics-file``; the file parses with prometheus_client's own parser and holds the
run's counts. A failed run, and a run that cannot read its configuration, keep the last
success's time, so a stale job shows as a stale timestamp; ``--supervisord`` leaves each
tick's run. A reader never sees half a file while the file is rewritten over and over.
Debian's ``prometheus-pushgateway`` (with basic auth, as operators put it behind one)
receives the push, keeps the last success across a failed push-only run, and a push that
fails is logged without its password and leaves the exit status alone.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import raw_client, unique_bucket
from prometheus_client.parser import text_string_to_metric_families
from test_bucket_script import Listener, closed_port_url, endpoint_section, s3s3bucket, write_ini
from test_listener_support import wait_until

from s3s3.bucketjob.summary import DestinationSummary, JobSummary
from s3s3.config import load
from s3s3.errors import ConfigError
from s3s3.metrics import bucketjob
from servers._common import free_port

PUSHGATEWAY = "/usr/bin/prometheus-pushgateway"  # Debian's prometheus-pushgateway
USER, PASSWORD = "s3s3", "pgw-Secr3t-9x"


def parse(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def read(path: Path) -> dict[tuple[str, tuple], float]:
    return parse(path.read_text())


def series(got: dict, name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


def objects(got: dict, src: str, outcome: str, destination: str = "destination") -> float:
    return series(got, "s3s3bucket_objects", source=src, destination=destination, outcome=outcome)


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


def break_destination(ini: Path, dst: str) -> None:
    """The destination bucket goes away (a bucket nobody created)."""
    ini.write_text(ini.read_text().replace(f"bucket_name = {dst}", "bucket_name = no-such-bkt"))


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
    for outcome, n in (("listed", 5), ("copied", 5), ("skipped", 0), ("failed", 0)):
        assert objects(got, src, outcome) == n, outcome
    assert objects(got, src, "deleted") == 0
    assert series(got, "s3s3bucket_bytes_written", source=src, destination="destination") == sum(
        100 + i for i in range(5)
    )
    start = series(got, "s3s3bucket_last_run_start_timestamp_seconds", source=src)
    end = series(got, "s3s3bucket_last_run_end_timestamp_seconds", source=src)
    duration = series(got, "s3s3bucket_last_run_duration_seconds", source=src)
    success = series(got, bucketjob.LAST_SUCCESS, source=src)
    assert before <= start <= end == success <= time.time()
    assert duration == pytest.approx(end - start)

    # A second run finds everything in step: skipped, nothing written.
    result = s3s3bucket("--config", str(ini), "--metrics-file", str(path))
    assert result.returncode == 0, result.stderr
    got = read(path)
    assert (objects(got, src, "copied"), objects(got, src, "skipped")) == (0, 5)
    assert series(got, "s3s3bucket_bytes_written", source=src, destination="destination") == 0
    success = series(got, bucketjob.LAST_SUCCESS, source=src)

    # The destination bucket goes away: the next run is a fatal error, and says when the
    # job last succeeded.
    break_destination(ini, dst)
    result = s3s3bucket("--config", str(ini), "--metrics-file", str(path))
    assert result.returncode == 2, result.stderr
    got = read(path)
    assert series(got, "s3s3bucket_last_run_success", source=src) == 0
    assert series(got, "s3s3bucket_last_run_exit_status", source=src) == 2
    assert not any(name == "s3s3bucket_objects" for name, _ in got)  # it copied nothing
    assert series(got, bucketjob.LAST_SUCCESS, source=src) == success
    assert series(got, "s3s3bucket_last_run_end_timestamp_seconds", source=src) > success


def test_a_run_that_cannot_read_its_configuration_keeps_the_source_and_last_success(job, tmp_path):
    ini, src, _ = job
    path = tmp_path / "s3s3bucket.prom"
    assert s3s3bucket("--config", str(ini), "--metrics-file", str(path)).returncode == 0
    success = series(read(path), bucketjob.LAST_SUCCESS, source=src)

    ini.write_text(ini.read_text().replace("lock = local", "lock = sometimes"))
    result = s3s3bucket("--config", str(ini), "--metrics-file", str(path))
    assert result.returncode == 2
    got = read(path)
    # Still this job's series (the label the file had), failed, with the last success kept.
    assert {dict(labels)["source"] for _, labels in got} == {src}
    assert series(got, "s3s3bucket_last_run_success", source=src) == 0
    assert series(got, "s3s3bucket_last_run_exit_status", source=src) == 2
    assert series(got, bucketjob.LAST_SUCCESS, source=src) == success
    assert not any(name == "s3s3bucket_objects" for name, _ in got)  # it did nothing


def test_a_configuration_error_with_no_file_before_is_a_run_too(tmp_path):
    path = tmp_path / "s3s3bucket.prom"
    bad = tmp_path / "bad.ini"
    bad.write_text("[source]\nbucket_name = b\n")  # no destination
    result = s3s3bucket("--config", str(bad), "--metrics-file", str(path))
    assert result.returncode == 2
    got = read(path)
    assert series(got, "s3s3bucket_last_run_success", source="unknown") == 0
    assert series(got, "s3s3bucket_last_run_exit_status", source="unknown") == 2
    assert not any(name == bucketjob.LAST_SUCCESS for name, _ in got)


def test_each_supervisord_tick_leaves_its_run(job, tmp_path):
    ini, src, dst = job
    path = tmp_path / "s3s3bucket.prom"
    with ini.open("a") as f:
        f.write(f"textfile = {path}\n")  # [metrics] is the INI's last section
    listener = Listener(ini, tmp_path)
    try:
        assert listener.read(6) == b"READY\n"
        listener.send("TICK_60", "when:1700000000")
        assert listener.read(11) == b"RESULT 2\nOK"
        got = read(path)
        assert series(got, "s3s3bucket_last_run_success", source=src) == 1
        assert objects(got, src, "copied") == 5
        success = series(got, bucketjob.LAST_SUCCESS, source=src)

        # A second destination that does not answer (the INI is read again each tick):
        # the run happens and fails there, exit status 1.
        assert listener.read(6) == b"READY\n"
        with ini.open("a") as f:
            f.write(
                "\n"
                + endpoint_section(
                    "dest2", closed_port_url(), "nowhere", max_attempts=1, connect_timeout=1
                )
            )
        listener.send("TICK_60", "when:1700000060")
        assert listener.read(11) == b"RESULT 2\nOK"
        got = read(path)
        assert series(got, "s3s3bucket_last_run_success", source=src) == 0
        assert series(got, "s3s3bucket_last_run_exit_status", source=src) == 1
        assert series(got, bucketjob.LAST_SUCCESS, source=src) == success
        assert (objects(got, src, "skipped"), objects(got, src, "failed")) == (5, 0)
        assert objects(got, src, "failed", destination="dest2") == 5
        assert objects(got, src, "copied", destination="dest2") == 0

        # A run that cannot happen (its destination bucket is gone): supervisord hears FAIL,
        # the file says exit status 2.
        assert listener.read(6) == b"READY\n"
        break_destination(ini, dst)
        listener.send("TICK_60", "when:1700000120")
        assert listener.read(13) == b"RESULT 4\nFAIL"
        got = read(path)
        assert series(got, "s3s3bucket_last_run_success", source=src) == 0
        assert series(got, "s3s3bucket_last_run_exit_status", source=src) == 2
        assert series(got, bucketjob.LAST_SUCCESS, source=src) == success
        assert listener.read(6) == b"READY\n"
    finally:
        listener.proc.kill()
        listener.proc.wait()
        for stream in (listener.proc.stdin, listener.proc.stdout, listener.proc.stderr):
            stream.close()


def test_a_reader_never_sees_half_a_file(tmp_path):
    path = tmp_path / "s3s3bucket.prom"
    summary = JobSummary(
        source="source",
        bucket="b",
        destinations=[
            DestinationSummary(name=f"d{i}", bucket="x", copied=i, bytes_copied=i * 1000)
            for i in range(50)
        ],
    )
    stop = threading.Event()
    reads: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue  # before the first write only: a rename never leaves a gap
            try:
                got = parse(text)
            except Exception as exc:  # recorded, so the thread goes on reading
                problems.append(f"{exc!r}: {text[-200:]!r}")
                continue
            reads.append(len(got))
            # The last series written (the last destination's bytes) are there every time.
            last = ("s3s3bucket_bytes_written", (("destination", "d49"), ("source", "b")))
            if got.get(last) != 49000:
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
    assert not problems, problems[:1]
    assert len(reads) > 50
    assert len(set(reads)) <= 2  # with or without the last success: never a part
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s3s3bucket.prom"]  # no temp left


def test_a_file_that_cannot_be_written_is_logged_and_the_exit_status_stays(job, tmp_path):
    ini, _, _ = job
    path = tmp_path / "s3s3bucket.prom"
    path.mkdir()  # the rename over it fails, even for root
    (path / "keep").write_text("")
    result = s3s3bucket("--config", str(ini), "--metrics-file", str(path))
    assert result.returncode == 0, result.stderr
    assert f"writing the metrics file {path} failed" in result.stderr
    assert [p.name for p in tmp_path.glob("s3s3bucket.prom*")] == ["s3s3bucket.prom"]  # no temp


# --------------------------------------------------------------------------- Pushgateway


def bcrypt(password: str) -> str:
    """A bcrypt hash for the Pushgateway's web config, from glibc's libxcrypt."""
    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    hashed = lib.crypt(password.encode(), lib.crypt_gensalt(b"$2b$", 5, None, 0))
    assert hashed and hashed.startswith(b"$2b$05$"), hashed
    return hashed.decode()


class Pushgateway:
    """Debian's prometheus-pushgateway on a free loopback port, with basic auth."""

    def __init__(self, folder: Path) -> None:
        assert shutil.which(PUSHGATEWAY), f"{PUSHGATEWAY} (Debian's prometheus-pushgateway)"
        web = folder / "pgw-web.yml"
        web.write_text(f"basic_auth_users:\n  {USER}: {bcrypt(PASSWORD)}\n")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                PUSHGATEWAY,
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.config.file={web}",
                f"--persistence.file={folder / 'pgw'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth_url = f"http://{USER}:{PASSWORD}@127.0.0.1:{self.port}"
        wait_until(self.ready, 30, interval_s=0.2, what="the Pushgateway to start")

    def get(self, path: str, *, auth: bool = True) -> str:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"} if auth else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read().decode()

    def ready(self) -> bool:
        assert self.proc.poll() is None, "the Pushgateway exited"
        try:
            self.get("/-/ready")
        except OSError:
            return False
        return True

    def pushed(self) -> dict[tuple[str, str | None, str | None], float]:
        return {
            (s.name, s.labels.get("job"), s.labels.get("source")): s.value
            for f in text_string_to_metric_families(self.get("/metrics"))
            for s in f.samples
        }

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def gateway(tmp_path):
    pgw = Pushgateway(tmp_path)
    yield pgw
    pgw.stop()


def test_the_pushgateway_receives_the_run_and_keeps_the_last_success(job, gateway):
    ini, src, dst = job
    with pytest.raises(urllib.error.HTTPError, match="401"):  # the auth is really on
        gateway.get("/metrics", auth=False)

    result = s3s3bucket("--config", str(ini), "--pushgateway", gateway.auth_url)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stderr
    pushed = gateway.pushed()
    assert pushed[("s3s3bucket_last_run_success", "s3s3bucket", src)] == 1
    assert pushed[("s3s3bucket_last_run_exit_status", "s3s3bucket", src)] == 0
    assert pushed[("s3s3bucket_expected_period_seconds", "s3s3bucket", src)] == 1800
    assert pushed[("s3s3bucket_bytes_written", "s3s3bucket", src)] == sum(range(100, 105))
    success = pushed[(bucketjob.LAST_SUCCESS, "s3s3bucket", src)]
    end = pushed[("s3s3bucket_last_run_end_timestamp_seconds", "s3s3bucket", src)]
    assert success == end

    # Push only, no textfile: the failed run's push replaces the group, yet the last
    # success stays, read back from the Pushgateway. [metrics] job names the job label.
    break_destination(ini, dst)
    ini.write_text(ini.read_text() + f"job = s3s3bucket-{src}\npushgateway = {gateway.auth_url}\n")
    result = s3s3bucket("--config", str(ini))
    assert result.returncode == 2, result.stderr
    assert PASSWORD not in result.stderr
    pushed = gateway.pushed()
    job_label = f"s3s3bucket-{src}"
    assert pushed[("s3s3bucket_last_run_success", job_label, src)] == 0
    assert pushed[("s3s3bucket_last_run_exit_status", job_label, src)] == 2
    assert (bucketjob.LAST_SUCCESS, job_label, src) not in pushed  # another job's group

    ini.write_text(ini.read_text().replace(f"job = s3s3bucket-{src}\n", ""))
    result = s3s3bucket("--config", str(ini))
    assert result.returncode == 2, result.stderr
    pushed = gateway.pushed()
    assert pushed[("s3s3bucket_last_run_success", "s3s3bucket", src)] == 0
    assert pushed[(bucketjob.LAST_SUCCESS, "s3s3bucket", src)] == success
    assert pushed[("s3s3bucket_last_run_end_timestamp_seconds", "s3s3bucket", src)] > end


def test_a_refused_push_is_logged_without_its_password_and_the_exit_status_stays(
    job, gateway, tmp_path
):
    ini, src, _ = job
    wrong = f"http://{USER}:not-{PASSWORD}@127.0.0.1:{gateway.port}"
    path = tmp_path / "s3s3bucket.prom"
    result = s3s3bucket("--config", str(ini), "--pushgateway", wrong, "--metrics-file", str(path))
    assert result.returncode == 0, result.stderr
    assert f"pushing metrics to the Pushgateway http://{USER}:***@127.0.0.1:" in result.stderr
    assert "401" in result.stderr
    assert PASSWORD not in result.stderr
    assert series(read(path), "s3s3bucket_last_run_success", source=src) == 1  # file written
    assert not any(name.startswith("s3s3bucket_") for name, _, _ in gateway.pushed())


def test_an_unreachable_pushgateway_does_not_change_the_outcome(job):
    ini, _, _ = job
    url = f"http://127.0.0.1:{free_port()}"
    result = s3s3bucket("--config", str(ini), "--pushgateway", url)
    assert result.returncode == 0, result.stderr
    assert f"pushing metrics to the Pushgateway {url} failed" in result.stderr


# --------------------------------------------------------------------------- [metrics]

BASE = """
[source]
bucket_name = src
[dest]
bucket_name = dst
"""


def metrics_of(tmp_path, lines: str):
    path = tmp_path / "s3s3.ini"
    path.write_text(BASE + "[metrics]\n" + lines)
    return load(path, search_path=[], env={}).metrics


@pytest.mark.parametrize(
    "line, seconds", [("", 3600.0), ("period = 30m\n", 1800.0), ("period = 90\n", 90.0)]
)
def test_period(tmp_path, line, seconds):
    assert metrics_of(tmp_path, line).period_s == seconds


def test_a_bad_period_names_section_and_key(tmp_path):
    with pytest.raises(ConfigError, match="'soon' for 'period'") as err:
        metrics_of(tmp_path, "period = soon\n")
    assert "metrics" in str(err.value)


def test_a_pushgateway_url_may_carry_basic_auth_never_shown(tmp_path):
    m = metrics_of(tmp_path, f"pushgateway = http://{USER}:{PASSWORD}@gw:9091\n")
    assert m.pushgateway == f"http://{USER}:{PASSWORD}@gw:9091"
    assert PASSWORD not in repr(m)
    with pytest.raises(ConfigError, match="pushgateway") as err:
        metrics_of(tmp_path, f"pushgateway = ftp://{USER}:{PASSWORD}@gw:9091\n")
    assert PASSWORD not in str(err.value)


def test_gateway_splits_the_credentials_off():
    g = bucketjob.Gateway.parse("http://u%40x:p%3Aw@[::1]:9091/prefix")
    assert (g.url, g.username, g.password) == ("http://[::1]:9091/prefix", "u@x", "p:w")
    assert "p:w" not in repr(g)
    assert bucketjob.Gateway.parse("gw:9091") == bucketjob.Gateway("http://gw:9091")
